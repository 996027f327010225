"""sidecache: a caching reverse proxy that answers anonymous visitors from memory."""

__version__ = "0.1.0"


def build(module: str = "proxy.http1") -> str:
    """ "compiled" when `module` (by default the front, the hottest) runs as the optional mypyc
    build's C extension, else "pure Python". Looks the module up without importing it."""
    from importlib.util import find_spec

    spec = find_spec(module)
    origin = spec.origin if spec is not None else None
    return "pure Python" if origin is None or origin.endswith(".py") else "compiled"
