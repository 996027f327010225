"""What the access log costs per request: bench/profile_front.py with the log off, into
/dev/null, into a file and into a FIFO a `cat` drains (a pipe, as stdout is under systemd or
docker: pieces of PIPE_BUF after poll), run in turn N times each (so a noisy neighbour hits
them alike), pinned to one CPU; prints each run and the medians.

    .venv/bin/python bench/access_log_cost.py [--runs N] [--cpu C] [profile_front options]

e.g. `--runs 7 --requests 150000` (wrk's request) or `--runs 7 --requests 150000 --browser`.
Issue 14's target: the log on costs at most 1 µs per request more than off.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

PROFILE = Path(__file__).with_name("profile_front.py")
RESULT = re.compile(r"([\d.]+) µs CPU per request")


def one_run(cpu: str, options: list[str], fifo: str | None = None) -> float:
    command = ["taskset", "-c", cpu, sys.executable, str(PROFILE), *options]
    # The FIFO's reader first: opening a FIFO to write waits for one.
    reader = subprocess.Popen(["cat", fifo], stdout=subprocess.DEVNULL) if fifo else None
    try:
        out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    finally:
        if reader is not None:
            reader.wait(timeout=30)  # it ends when the writer closes the FIFO
    found = RESULT.search(out)
    if found is None:
        raise SystemExit(f"no result in: {out}")
    return float(found[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--cpu", default="0", help="taskset's CPU list")
    args, options = parser.parse_known_args()
    with tempfile.TemporaryDirectory() as directory:
        log = os.path.join(directory, "access.log")
        fifo = os.path.join(directory, "access.fifo")
        os.mkfifo(fifo)
        modes = {
            "off": [],
            "/dev/null": ["--access-log"],
            "file": ["--access-log", log],
            "fifo": ["--access-log", fifo],
        }
        results: dict[str, list[float]] = {mode: [] for mode in modes}
        for _ in range(args.runs):
            for mode, extra in modes.items():
                reader = fifo if mode == "fifo" else None
                results[mode].append(one_run(args.cpu, [*options, *extra], reader))
                Path(log).unlink(missing_ok=True)
    off = statistics.median(results["off"])
    for mode, values in results.items():
        runs = " ".join(f"{v:.2f}" for v in values)
        median = statistics.median(values)
        more = f" ({median - off:+.2f} µs)" if mode != "off" else ""
        print(f"{mode:10} median {median:.2f} µs{more}   runs: {runs}")


if __name__ == "__main__":
    main()
