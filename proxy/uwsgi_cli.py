"""`sidecache import-uwsgi FILE.ini [--section NAME]`: read the file, print the TOML.

The I/O edge of uwsgi_import.py. The output is compiled with the same code `sidecache check`
runs before it is printed: a translation that would not load is this command's bug, said on
stderr (exit 1), never a file that fails later. Exit 2 when the file cannot be read or has
no such section.
"""

from __future__ import annotations

import argparse
import os
import sys
import tomllib
from pathlib import Path

from proxy.config import parse
from proxy.tomltable import ConfigError
from proxy.uwsgi_flow import TooManyBranches
from proxy.uwsgi_import import ImportProblem, import_uwsgi


def run_import(args: argparse.Namespace) -> int:
    try:
        text = Path(args.ini).read_text(encoding="utf-8")
    except OSError as exc:
        print(f"sidecache: import-uwsgi: cannot read {args.ini}: {exc.strerror}", file=sys.stderr)
        return 2
    except UnicodeDecodeError:
        print(f"sidecache: import-uwsgi: {args.ini} is not UTF-8 text", file=sys.stderr)
        return 2
    try:
        toml = import_uwsgi(text, Path(args.ini).name, args.section)
    except (ImportProblem, TooManyBranches) as exc:
        print(f"sidecache: import-uwsgi: {exc}", file=sys.stderr)
        return 2
    try:
        parse(tomllib.loads(toml), "<import-uwsgi output>")
    except (tomllib.TOMLDecodeError, ConfigError) as exc:
        print(
            f"sidecache: import-uwsgi: the translation does not load (a bug): {exc}",
            file=sys.stderr,
        )
        return 1
    try:
        sys.stdout.write(toml)
        sys.stdout.flush()
    except BrokenPipeError:  # `sidecache import-uwsgi site.ini | head`: the reader had enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0
