"""The example Flask-Login site (examples/flask-app) under gunicorn, with sidecache in front
using config/uwsgi-flask.toml, the original uWSGI rules: /about is answered from cache for
anonymous visitors, a logged-in visitor (remember_token) always reaches the app and their page
is never shown to anyone else."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from sidecache_e2e import fetch, free_port, spawn, wait_for_port

ROOT = Path(__file__).resolve().parents[2]
pytest.importorskip("flask_login", reason="the example app needs flask-login (test extras)")
pytest.importorskip("flask_wtf", reason="the example app needs flask-wtf (test extras)")
TOKEN = re.compile(rb'name="csrf_token" value="([^"]+)"')


def cookie_pairs(set_cookies: list[str]) -> str:
    """A Cookie header value sending back what Set-Cookie set."""
    return "; ".join(value.split(";", 1)[0] for value in set_cookies)


async def test_the_example_app_behind_sidecache(client, start_sidecache, tmp_path):
    port = free_port()
    gunicorn = [sys.executable, "-m", "gunicorn", "--chdir", str(ROOT / "examples" / "flask-app")]
    app = await spawn(["-b", f"127.0.0.1:{port}", "-w", "1", "app:app"], "", command=gunicorn)
    try:
        await wait_for_port(port)
        config = (ROOT / "config" / "uwsgi-flask.toml").read_text(encoding="utf-8")
        proxy = await start_sidecache(upstream=f"http://127.0.0.1:{port}", config=config)
        base = proxy.base_url

        first = await fetch(client, "GET", base + "/about")
        second = await fetch(client, "GET", base + "/about")
        home = await fetch(client, "GET", base + "/")
        form = await fetch(client, "GET", base + "/login")  # CSRF: the form, then its token
        token = TOKEN.search(form.body)
        assert token is not None, form.body
        fields = {"csrf_token": token.group(1).decode(), "name": "alice", "password": "secret"}
        logged_in = await fetch(
            client,
            "POST",
            base + "/login",
            headers={"Cookie": cookie_pairs(form.set_cookies)},
            data={**fields, "remember": "y"},
        )
        cookies = cookie_pairs(logged_in.set_cookies)
        alice = await fetch(client, "GET", base + "/about", headers={"Cookie": cookies})
        anonymous = await fetch(client, "GET", base + "/about")
    finally:
        await app.stop()

    assert (first.x_cache, second.x_cache) == ("MISS", "HIT")
    assert b"Hello, visitor" in second.body
    assert home.x_cache == "PASS"  # only /about is cached by these rules
    assert logged_in.status == 302, logged_in.body
    assert "remember_token=" in cookies
    assert alice.x_cache == "PASS"
    assert b"Hello, alice" in alice.body
    assert anonymous.x_cache == "HIT"
    assert b"Hello, visitor" in anonymous.body and b"alice" not in anonymous.body
