"""sidecache: a caching reverse proxy that answers anonymous visitors from memory."""

__version__ = "0.1.0"
