"""What the access log costs per request: bench/profile_front.py with the log off, into
/dev/null and into a file, run in turn N times each (so a noisy neighbour hits all three
alike), pinned to one CPU; prints each run and the medians.

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


def one_run(cpu: str, options: list[str]) -> float:
    command = ["taskset", "-c", cpu, sys.executable, str(PROFILE), *options]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
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
        modes = {"off": [], "/dev/null": ["--access-log"], "file": ["--access-log", log]}
        results: dict[str, list[float]] = {mode: [] for mode in modes}
        for _ in range(args.runs):
            for mode, extra in modes.items():
                results[mode].append(one_run(args.cpu, [*options, *extra]))
                Path(log).unlink(missing_ok=True)
    off = statistics.median(results["off"])
    for mode, values in results.items():
        runs = " ".join(f"{v:.2f}" for v in values)
        median = statistics.median(values)
        more = f" ({median - off:+.2f} µs)" if mode != "off" else ""
        print(f"{mode:10} median {median:.2f} µs{more}   runs: {runs}")


if __name__ == "__main__":
    main()
