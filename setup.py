"""Only for the optional accelerator (pyproject.toml holds the metadata): with
SIDECACHE_COMPILE=1 the modules below are compiled by mypyc (see build_support/sidecache_build.py
and README, "Faster: the compiled build"). The pure-Python package is the same code and always
works; `sidecache --version` says which one runs."""

import os

from setuptools import setup

# The hit and pass paths: the front, the decision, the view, the store lookup, the wire
# format, the upstream connection. Modules that are monkeypatched or subclassed at run time
# stay pure.
COMPILED = [
    "proxy/accesslog.py",
    "proxy/hitforpass.py",
    "proxy/recorder.py",
    "proxy/encoding.py",
    "proxy/vary.py",
    "proxy/conditional.py",
    "proxy/coalescer.py",
    "proxy/entries.py",
    "proxy/upstream_pool.py",
    "proxy/passes.py",
    "proxy/reasons.py",
    "proxy/store/__init__.py",
    "proxy/relay.py",
    "proxy/settings.py",
    "proxy/exchange.py",
    "proxy/client_transport.py",
    "proxy/decide.py",
    "proxy/fields.py",
    "proxy/flow.py",
    "proxy/forwarding.py",
    "proxy/framing.py",
    "proxy/freshness.py",
    "proxy/front_request.py",
    "proxy/handler.py",
    "proxy/http1.py",
    "proxy/identity.py",
    "proxy/keys.py",
    "proxy/planner.py",
    "proxy/policy.py",
    "proxy/rules.py",
    "proxy/serving.py",
    "proxy/store/memory.py",
    "proxy/upstream_connection.py",
    "proxy/upstream_exchange.py",
    "proxy/view.py",
    "proxy/wire.py",
]

ext_modules = []
if os.environ.get("SIDECACHE_COMPILE", "") == "1":
    from mypyc.build import mypycify

    ext_modules = mypycify(COMPILED, opt_level="3")

setup(ext_modules=ext_modules)
