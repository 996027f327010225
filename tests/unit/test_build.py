"""Which build runs: the pure-Python package, or the optional compiled one (SIDECACHE_COMPILE=1,
mypyc; scripts/test-compiled runs the unit and integration tests against it)."""

from __future__ import annotations

import os

import proxy


def test_the_front_runs_as_the_build_under_test() -> None:
    # scripts/test-compiled sets SIDECACHE_EXPECT_BUILD=compiled; the README's test command
    # runs the sources as they are.
    expected = os.environ.get("SIDECACHE_EXPECT_BUILD", "pure Python")
    assert proxy.build() == expected
    assert proxy.build("proxy.handler") == expected


def test_modules_that_are_never_compiled_are_pure_in_every_build() -> None:
    # config.py and lifecycle.py are not in setup.py's list: monkeypatched, subclassed or cold.
    assert proxy.build("proxy.config") == "pure Python"
    assert proxy.build("proxy.lifecycle") == "pure Python"


def test_an_unknown_module_is_not_called_compiled() -> None:
    assert proxy.build("proxy.no_such_module") == "pure Python"
