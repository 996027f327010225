"""`sidecache import-uwsgi`, the real command: the Flask site's original uWSGI setup and its
variants (tests/data/uwsgi) become configs that `sidecache check` accepts, and a proxy
started with one caches what uWSGI's router cache cached, for whom it cached it."""

from __future__ import annotations

import base64
import re
import sys
from pathlib import Path

import pytest
from sidecache_e2e import fetch, free_port, run_sidecache, spawn, wait_for_port

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "uwsgi"
SEED = DATA / "flask-site.ini"
REMEMBER = {"Cookie": "remember_token=alice|0123456789abcdef"}
# A Flask session naming a user (base64 of {"_user_id":"alice"}): a login without "remember
# me". uWSGI's routes tested remember_token alone, and cached this visitor's page for all.
LOGGED_IN = {"Cookie": "session=" + base64.urlsafe_b64encode(b'{"_user_id":"alice"}').decode()}
LOGGED_IN["Cookie"] = LOGGED_IN["Cookie"].rstrip("=") + ".Z0.signature"


def imported(ini: Path, tmp_path: Path) -> tuple[str, Path]:
    """Run `sidecache import-uwsgi INI`, write its output to a file, `sidecache check` it."""
    result = run_sidecache("import-uwsgi", str(ini), cwd=tmp_path)
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    path = tmp_path / f"{ini.stem}.toml"
    path.write_text(result.stdout, encoding="utf-8")
    checked = run_sidecache("check", str(path), cwd=tmp_path)
    assert (checked.returncode, checked.stderr) == (0, ""), checked.stdout + checked.stderr
    return result.stdout, path


@pytest.mark.parametrize("ini", sorted(DATA.glob("*.ini")), ids=lambda path: path.stem)
def test_every_example_imports_and_passes_check(ini, tmp_path):
    text, _ = imported(ini, tmp_path)
    assert text.startswith(f"# sidecache config imported from {ini.name} ([uwsgi])")


async def test_the_seed_in_front_of_the_flask_site(client, start_sidecache, tmp_path):
    pytest.importorskip("flask_login", reason="the example app needs flask-login (test extras)")
    text, _ = imported(SEED, tmp_path)
    port = free_port()
    gunicorn = [sys.executable, "-m", "gunicorn", "--chdir", str(ROOT / "examples" / "flask-app")]
    app = await spawn(["-b", f"127.0.0.1:{port}", "-w", "1", "app:app"], "", command=gunicorn)
    try:
        await wait_for_port(port)
        proxy = await start_sidecache(upstream=f"http://127.0.0.1:{port}", config=text)
        about = [await fetch(client, "GET", proxy.base_url + "/about") for _ in range(2)]
        home = [await fetch(client, "GET", proxy.base_url + "/") for _ in range(2)]
        remembered = await fetch(client, "GET", proxy.base_url + "/about", headers=REMEMBER)
        session = await fetch(client, "GET", proxy.base_url + "/about", headers=LOGGED_IN)
        items = await fetch(client, "GET", proxy.base_url + "/items?page=1")
    finally:
        await app.stop()

    assert [reply.x_cache for reply in about] == ["MISS", "HIT"]
    assert b"Hello, visitor" in about[1].body
    assert [reply.x_cache for reply in home] == ["MISS", "HIT"]
    # a visitor with Flask-Login's remember-me cookie goes to the app, as under uWSGI
    assert remembered.x_cache == "PASS"
    assert remembered.cache_status == 'sidecache; fwd=bypass; detail="no-rule"'
    # a login without "remember me" is passed too ([identity]: uWSGI cached that page)
    assert session.x_cache == "PASS"
    assert session.cache_status == 'sidecache; fwd=bypass; detail="authenticated"'
    assert items.x_cache == "PASS"  # no route cached it


async def test_the_catch_all_variant_through_a_proxy(upstream, client, start_sidecache, tmp_path):
    # catch-all.ini: every page for visitors without remember_token, but /login and /admin/
    # (`route = ^/login last:` before the catch-all `cache:`): pass rules where they stood
    text, _ = imported(DATA / "catch-all.ini", tmp_path)
    proxy = await start_sidecache(upstream=upstream.url, config=text)
    base = proxy.base_url
    page = [await fetch(client, "GET", base + "/blog/post?id=1") for _ in range(2)]
    login = [await fetch(client, "GET", base + "/login") for _ in range(2)]
    admin = await fetch(client, "GET", base + "/admin/users")
    remembered = await fetch(client, "GET", base + "/blog/post?id=1", headers=REMEMBER)

    assert [reply.x_cache for reply in page] == ["MISS", "HIT"]
    assert [reply.x_cache for reply in login] == ["PASS", "PASS"]
    assert admin.x_cache == "PASS"
    assert remembered.x_cache == "PASS"
    # the access log names the pass rule made of `route = ^/login last:` (line 10)
    line = await proxy.wait_for_line('"GET /login HTTP/1.1"')
    assert re.search(r" PASS .* rule=line-10 ", line), line
    # what the app saw: the page once (then the hit), /login each time, the remembered visitor
    assert upstream.count("/blog/post?id=1") == 2
    assert upstream.count("/login") == 2


def test_an_unreadable_file_is_one_line_and_status_2(tmp_path):
    result = run_sidecache("import-uwsgi", str(tmp_path / "missing.ini"), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == (
        f"sidecache: import-uwsgi: cannot read {tmp_path / 'missing.ini'}: "
        "No such file or directory\n"
    )
