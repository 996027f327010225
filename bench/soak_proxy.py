"""bench/soak's proxy process: sidecache's `Proxy`, built from a config file as proxy/cli.py
does, on uvloop, reporting on itself.

    python bench/soak_proxy.py CONFIG STATS [--every 5]

Prints "PORT n" (the first TCP listener) once listening. Every `--every` seconds (and once at the
end) it appends one JSON line to STATS: the wall time, `len(asyncio.all_tasks())` and the most
common task coroutines, Python's allocated blocks and gc-tracked objects, each cache's store
statistics, and the access-log outcome counts so far. The access log is counted here, not
written out: (CACHE, STATUS) pairs and per first path segment. Other log records (warnings,
errors, asyncio's "exception never retrieved") go to stderr, and are counted by level.
SIGTERM or SIGINT stops the proxy as the `sidecache` command does (requests in flight get
shutdown_timeout), then exits.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import signal
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from proxy.config import parse, read_toml  # noqa: E402
from proxy.server import Proxy  # noqa: E402


class AccessCounter(logging.Handler):
    """Counts access-log lines: CLIENT "METHOD TARGET HTTP/x.y" STATUS CACHE BYTES TIME ..."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.outcomes: Counter[str] = Counter()  # "HIT 200"
        self.by_route: Counter[str] = Counter()  # "/page HIT 200"
        self.details: Counter[str] = Counter()  # "ERROR upstream-timeout"
        self.lines = 0

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = record.getMessage()
            request, _, rest = line.partition('" ')
            parts = request.partition('"')[2].split(" ")
            target = parts[1] if len(parts) >= 3 else "?"
            fields = rest.split(" ")
            status, cache = fields[0], fields[1]
            detail = fields[-1].removeprefix("detail=")
        except Exception:  # a line we do not understand is counted as such
            self.outcomes["unparsed"] += 1
            return
        self.lines += 1
        self.outcomes[f"{cache} {status}"] += 1
        segment = "/" + target.split("?", 1)[0].split("/")[1] if target.startswith("/") else "?"
        if segment == "/bad":
            segment = target.split("?", 1)[0]
        self.by_route[f"{segment} {cache} {status}"] += 1
        if cache in ("ERROR", "PASS", "STALE") or detail not in ("-", "stored"):
            self.details[f"{cache} {detail}"] += 1


class LevelCounter(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.levels: Counter[str] = Counter()
        self.first: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.levels[record.levelname] += 1
        if len(self.first) < 20:
            self.first.append(f"{record.name} {record.levelname} {record.getMessage()[:300]}")


def snapshot(proxy: Proxy, access: AccessCounter, levels: LevelCounter) -> dict[str, object]:
    tasks = asyncio.all_tasks()
    names: Counter[str] = Counter()
    for task in tasks:
        coro = task.get_coro()
        names[getattr(coro, "__qualname__", type(coro).__name__)] += 1
    stores = {}
    for name, store in proxy.stores.items():
        s = store.stats()
        stores[name] = {
            "items": s.items,
            "bytes": s.bytes,
            "stores": s.stores,
            "evictions": s.evictions,
            "hits": s.hits,
            "misses": s.misses,
        }
    return {
        "t": time.time(),
        "tasks": len(tasks),
        "task_names": dict(names.most_common(6)),
        "blocks": sys.getallocatedblocks(),
        "gc_objects": len(gc.get_objects()),
        "stores": stores,
        "access_lines": access.lines,
        "outcomes": dict(access.outcomes),
        "by_route": dict(access.by_route),
        "details": dict(access.details),
        "log_levels": dict(levels.levels),
        "log_first": levels.first,
    }


async def main(config: str, stats_path: str, every: float) -> None:
    data, source = read_toml(config)
    settings = parse(data, source)
    access = AccessCounter()
    access_logger = logging.getLogger("sidecache.access")
    access_logger.setLevel(logging.INFO)
    access_logger.addHandler(access)
    access_logger.propagate = False
    levels = LevelCounter()
    logging.getLogger().addHandler(levels)

    proxy = Proxy(settings)
    await proxy.start()
    print(f"PORT {proxy.port}", flush=True)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    with open(stats_path, "a", encoding="utf-8") as out:  # noqa: ASYNC230 (a local file)

        def write() -> None:
            out.write(json.dumps(snapshot(proxy, access, levels)) + "\n")
            out.flush()

        write()
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), every)
            except TimeoutError:
                write()
        write()
        await proxy.stop()
        final = snapshot(proxy, access, levels)
        final["final"] = True
        out.write(json.dumps(final) + "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config")
    parser.add_argument("stats")
    parser.add_argument("--every", type=float, default=5.0)
    args = parser.parse_args()
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    try:
        import uvloop

        run = uvloop.run
    except ImportError:  # pragma: no cover
        run = asyncio.run  # type: ignore[assignment]
    run(main(args.config, args.stats, args.every))
