"""The container image's own files, checked without Docker (scripts/docker-smoke runs the image):
its config file is the embedded default with a container's addresses, nothing in the image
overrides a mounted file, and the HEALTHCHECK script follows the admin address in force
(issue 12)."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import re
import sys
import tomllib
from pathlib import Path
from types import ModuleType

import pytest
from sidecache_e2e import Upstream, free_port, spawn, wait_ready

from proxy.config import load

ROOT = Path(__file__).resolve().parents[2]
IMAGE_CONFIG = ROOT / "deploy" / "docker" / "sidecache.toml"
HEALTHCHECK = ROOT / "deploy" / "docker" / "healthcheck.py"


def test_the_image_config_is_the_embedded_default_with_a_containers_addresses():
    image = tomllib.loads(IMAGE_CONFIG.read_text(encoding="utf-8"))
    default = tomllib.loads((ROOT / "proxy" / "default.toml").read_text(encoding="utf-8"))
    assert image["server"].pop("listen") == ["0.0.0.0:8080"]
    assert image.pop("admin") == {"listen": "127.0.0.1:9180"}
    default["server"].pop("listen")
    default.pop("admin", None)
    assert image == default
    load(str(IMAGE_CONFIG))  # valid as it stands


def test_the_image_sets_no_variable_that_overrides_a_mounted_file():
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    instructions = "\n".join(line for line in dockerfile.splitlines() if not line.startswith("#"))
    # What a running container sees: the ENV instructions (with their continuation lines). A
    # build ARG (SIDECACHE_COMPILE) ends with the build.
    environment = re.findall(r"^ENV .*?(?<!\\)$", instructions, flags=re.M | re.S)
    variables = set(re.findall(r"\b(SIDECACHE_[A-Z_]+)=", "\n".join(environment)))
    assert variables == {"SIDECACHE_CONFIG"}  # it names the file, whatever is mounted there
    assert "SIDECACHE_CONFIG=/etc/sidecache/sidecache.toml" in dockerfile
    assert "COPY deploy/docker/sidecache.toml /etc/sidecache/sidecache.toml" in dockerfile


@pytest.mark.parametrize("name", ["docker-compose.yml", "docker-compose.test.yml"])
def test_compose_files_have_no_obsolete_version_line(name):
    lines = (ROOT / name).read_text(encoding="utf-8").splitlines()
    assert not [line for line in lines if line.startswith("version:")]


def test_the_example_prometheus_scrapes_the_admin_address_compose_gives_sidecache():
    # The admin listener is loopback only, so Prometheus shares sidecache's network namespace
    # and scrapes the very address compose gives the admin listener.
    compose = (ROOT / "docker-compose.yml").read_text(encoding="utf-8")
    scrape = (ROOT / "examples" / "prometheus" / "prometheus.yml").read_text(encoding="utf-8")
    admin = re.search(r"^\s+SIDECACHE_ADMIN: (\S+)$", compose, flags=re.M)
    target = re.search(r'^\s+- targets: \["([^"]+)"\]$', scrape, flags=re.M)
    assert admin is not None and target is not None
    assert target.group(1) == admin.group(1)
    assert 'network_mode: "service:sidecache"' in compose
    assert "./examples/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in compose


async def healthcheck(env: dict[str, str]) -> tuple[int, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SIDECACHE_")}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(HEALTHCHECK),
        env=clean | env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 10)
    assert process.returncode is not None
    return process.returncode, (out + err).decode()


@pytest.mark.parametrize(
    ("admin_in_file", "environment", "expected"),
    [
        pytest.param("tcp", {}, "", id="the-files-admin-address"),
        pytest.param("unix", {}, "", id="the-files-unix-admin-socket"),
        pytest.param(
            "tcp",
            {"SIDECACHE_ADMIN": "127.0.0.1:{free}"},
            "admin listener 127.0.0.1:",
            id="env-wins",
        ),
        pytest.param(
            "tcp", {"SIDECACHE_ADMIN": ""}, "no admin listener is configured", id="admin-off"
        ),
    ],
)
async def test_the_healthcheck_follows_the_admin_address_in_force(
    tmp_path: Path, upstream: Upstream, admin_in_file: str, environment: dict[str, str], expected
):
    port = free_port()
    admin = f"127.0.0.1:{free_port()}" if admin_in_file == "tcp" else f"unix:{tmp_path}/a.sock"
    config = tmp_path / "sidecache.toml"
    config.write_text(
        f'[server]\nlisten = ["127.0.0.1:{port}"]\n[admin]\nlisten = "{admin}"\n'
        f'[upstream]\nurl = "{upstream.url}"\n',
        encoding="utf-8",
    )
    proc = await spawn(["--config", str(config)], f"http://127.0.0.1:{port}", cwd=tmp_path)
    try:
        await wait_ready(proc)
        env = {"SIDECACHE_CONFIG": str(config)}
        env |= {k: v.format(free=free_port()) for k, v in environment.items()}
        code, output = await healthcheck(env)
    finally:
        await proc.stop()

    assert (code, expected in output) == ((1, True) if expected else (0, True)), output


async def test_the_healthcheck_says_so_when_the_config_file_is_missing(tmp_path: Path):
    code, output = await healthcheck({"SIDECACHE_CONFIG": str(tmp_path / "none.toml")})
    assert code == 1
    assert "cannot read the config file" in output


def load_healthcheck() -> ModuleType:
    spec = importlib.util.spec_from_file_location("healthcheck", HEALTHCHECK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("argv", "environ", "file_admin", "expected"),
    [
        pytest.param([], {}, None, "127.0.0.1:9180", id="nothing-said-the-default"),
        pytest.param([], {}, "127.0.0.1:9999", "127.0.0.1:9999", id="the-file"),
        pytest.param([], {"SIDECACHE_ADMIN": "[::1]:1"}, "127.0.0.1:9999", "[::1]:1", id="env"),
        pytest.param(["--admin", ""], {"SIDECACHE_ADMIN": "x:1"}, None, "", id="flag-wins"),
        pytest.param(["--admin=127.0.0.1:7"], {}, "127.0.0.1:9", "127.0.0.1:7", id="flag-equals"),
        pytest.param(["--config", "{other}"], {}, "127.0.0.1:9", "127.0.0.1:8", id="config-flag"),
    ],
)
def test_the_admin_address_is_found_as_sidecache_finds_it(
    tmp_path: Path, argv: list[str], environ: dict[str, str], file_admin, expected
):
    healthcheck = load_healthcheck()
    config, other = tmp_path / "sidecache.toml", tmp_path / "other.toml"
    config.write_text(f'[admin]\nlisten = "{file_admin}"\n' if file_admin else "", "utf-8")
    other.write_text('[admin]\nlisten = "127.0.0.1:8"\n', encoding="utf-8")
    argv = [arg.format(other=other) for arg in argv]
    environ = {"SIDECACHE_CONFIG": str(config), **environ}
    assert healthcheck.admin_address(environ, argv) == expected
