"""Pin the layering: the pure core never imports the network stack (DESIGN.md, "Layers"):
neither aiohttp nor the Redis client."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
PURE_CORE = (
    "proxy.config",
    "proxy.decide",
    "proxy.planner",
    "proxy.fields",
    "proxy.rules",
    "proxy.keys",
    "proxy.identity",
    "proxy.policy",
    "proxy.framing",
    "proxy.freshness",
    "proxy.conditional",
    "proxy.vary",
    "proxy.invalidate",
    "proxy.ranges",
    "proxy.forwarding",
    "proxy.recorder",
    "proxy.encoding",
    "proxy.units",
    "proxy.tomltable",
    "proxy.view",
    "proxy.reasons",
    "proxy.settings",
    "proxy.trace",
    "proxy.trace_report",
    # `sidecache import-uwsgi`: the ini, the routing table, the translation
    "proxy.uwsgi_ini",
    "proxy.uwsgi_terms",
    "proxy.uwsgi_routes",
    "proxy.uwsgi_flow",
    "proxy.uwsgi_rules",
    "proxy.uwsgi_setup",
    "proxy.uwsgi_import",
    # the shared tier's decisions: its settings, its circuit breaker, its entry encoding
    "proxy.config_redis",
    "proxy.breaker",
    "proxy.store.codec",
    "proxy.counters",
    "proxy.metrics",
    "proxy.admin_rules",
)
# Each module in a fresh interpreter, so one module's imports cannot hide another's.
PROBE = """
import importlib, json, sys
result = {}
for name in sys.argv[1:]:
    before = set(sys.modules)
    importlib.import_module(name)
    network = ("aiohttp", "redis")
    result[name] = sorted(m for m in set(sys.modules) - before if m.split(".")[0] in network)
    for module in [m for m in sys.modules if m.startswith(("proxy", *network))]:
        del sys.modules[module]
print(json.dumps(result))
"""


@pytest.fixture(scope="module")
def imported() -> dict[str, list[str]]:
    """For each pure module, the aiohttp modules importing it pulled in (run once, in a child)."""
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *PURE_CORE],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    parsed: dict[str, list[str]] = json.loads(result.stdout)
    return parsed


@pytest.mark.parametrize("module", PURE_CORE)
def test_pure_module_does_not_import_aiohttp(imported: dict[str, list[str]], module: str) -> None:
    assert imported[module] == []


def test_importing_the_whole_core_together_does_not_import_aiohttp() -> None:
    code = (
        f"import sys\nimport {', '.join(PURE_CORE)}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('aiohttp', 'redis')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_probe_would_notice_aiohttp() -> None:
    # guard against a probe that can never fail: the demo site is an aiohttp.web app
    result = subprocess.run(
        [sys.executable, "-c", PROBE, "proxy.demo"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "aiohttp" in json.loads(result.stdout)["proxy.demo"]


def test_the_redis_client_is_imported_only_when_a_tier_is_configured() -> None:
    """redis-py adds ~50 ms to every start: a sidecache without [redis] (the default) must
    not pay it, so server.py and admin.py import the tier only when configured."""
    code = (
        "import sys\nimport proxy.cli, proxy.server, proxy.admin, proxy.lifecycle, proxy.worker\n"
        "from proxy.config import parse\nfrom proxy.server import Proxy\n"
        "Proxy(parse({}, 'x'))\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'redis'))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
