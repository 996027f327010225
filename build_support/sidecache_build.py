"""setuptools' build backend, with one addition: `SIDECACHE_COMPILE=1` asks for the optional
accelerator, the hot modules compiled to C extensions by mypyc (setup.py lists them). The
build environment then also gets mypy and what type-checking the modules needs. Without the
variable the wheel is the pure-Python package, exactly as with setuptools alone.

Never compile an editable install: a compiled module shadows its .py file, so edits to it
would silently not run (scripts/_venv.sh unsets the variable for that reason).
"""

from __future__ import annotations

import os
from typing import Any

from setuptools import build_meta
from setuptools.build_meta import *  # noqa: F403  (the whole PEP 517 interface, unchanged)

# What mypyc needs to compile proxy/: itself, and the packages the modules import, for types.
COMPILE_REQUIRES = [
    "mypy>=1.10",
    "types-cachetools",
    "aiohttp>=3.9,<4",
    "cachetools>=5.3",
    "httptools>=0.6",
    "uvloop>=0.19",
]


def compiling() -> bool:
    return os.environ.get("SIDECACHE_COMPILE", "") == "1"


def get_requires_for_build_wheel(config_settings: Any = None) -> list[str]:
    if compiling():  # setuptools' own answer would run setup.py, which needs mypyc by then
        return list(COMPILE_REQUIRES)
    return list(build_meta.get_requires_for_build_wheel(config_settings))


def get_requires_for_build_editable(config_settings: Any = None) -> list[str]:
    if compiling():
        raise RuntimeError(
            "SIDECACHE_COMPILE=1 with an editable install: compiled modules would shadow the "
            "sources you edit. Compile a regular install (pip install .) instead."
        )
    return list(build_meta.get_requires_for_build_editable(config_settings))
