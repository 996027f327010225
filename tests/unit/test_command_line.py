"""Pin the command line's pure parts (issue 12): arguments.py, logs.py, the dev banner and
colour decision, and bind-error messages."""

from __future__ import annotations

import argparse
import errno
import io
import logging
import re
from pathlib import Path

import pytest

from proxy import logs
from proxy.arguments import COMMANDS, build_parser, parse_arguments
from proxy.dev import banner, wants_colour
from proxy.server import ListenError, listen_problem
from proxy.tomltable import ConfigError

README = Path(__file__).resolve().parents[2] / "README.md"


def command_parsers() -> dict[str, argparse.ArgumentParser]:
    [commands] = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(commands.choices)


def test_the_readme_command_line_lists_every_option_of_every_command() -> None:
    section = README.read_text().split("### Command line", 1)[1].split("\n## ", 1)[0]
    for name, parser in command_parsers().items():
        assert f"sidecache {name}" in section or f"sidecache [{name}]" in section, name
        for action in parser._actions:
            for flag in action.option_strings:
                if flag.startswith("--") and flag != "--help":
                    assert flag in section, f"{name} {flag} is not in the README"


@pytest.mark.parametrize(
    ("argv", "command", "config"),
    [
        pytest.param([], "run", None, id="no-command-is-run"),
        pytest.param(["--upstream", "http://a:1"], "run", None, id="flags-only-is-run"),
        pytest.param(["site.toml"], "run", "site.toml", id="a-file-is-run"),
        pytest.param(["run", "site.toml"], "run", "site.toml", id="run-file"),
        pytest.param(["dev", "site.toml"], "dev", "site.toml", id="dev-file"),
        pytest.param(["check", "-c", "site.toml"], "check", "site.toml", id="check-flag"),
        pytest.param(["run", "a.toml", "-c", "a.toml"], "run", "a.toml", id="same-file-twice"),
        pytest.param(["-c", "site.toml", "check"], "check", "site.toml", id="command-after-flags"),
        pytest.param(["-c", "site.toml", "run"], "run", "site.toml", id="run-after-flags"),
    ],
)
def test_commands_and_the_config_file(argv: list[str], command: str, config: str | None) -> None:
    # Point 3: the file named as an argument is the config, for every command.
    args = parse_arguments(argv)
    assert (args.command, args.config) == (command, config)


def test_two_different_files_are_a_config_error() -> None:
    with pytest.raises(ConfigError, match="two config files"):
        parse_arguments(["run", "a.toml", "--config", "b.toml"])


def test_every_command_has_a_help_of_its_own() -> None:
    assert set(command_parsers()) == set(COMMANDS)
    helps = [parser.format_help() for parser in command_parsers().values()]
    assert len(set(helps)) == len(helps)


@pytest.mark.parametrize(
    ("text", "level"),
    [("DEBUG", 10), ("info", 20), ("Warning", 30), ("ERROR", 40)],
)
def test_log_levels(text: str, level: int) -> None:
    assert logs.parse_level(text) == level


@pytest.mark.parametrize("text", ["LOUD", "", "5", "WARN"])
def test_unknown_log_levels_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="unknown level"):
        logs.parse_level(text)


def test_log_routing_level_on_each_line_access_log_whatever_the_level() -> None:
    # Point 15: errors to stderr, the access log on stdout even at WARNING.
    out, err = io.StringIO(), io.StringIO()
    root, access = logging.getLogger(), logging.getLogger("sidecache.access")
    saved = root.handlers[:], root.level, access.level
    try:
        logs.setup(logging.WARNING, out, err)
        logging.getLogger("sidecache").info("not shown at WARNING")
        logging.getLogger("sidecache.access").info("127.0.0.1 access")
        logging.getLogger("sidecache").warning("careful")
        logging.getLogger("sidecache.front").error("broken")
    finally:  # setup's levels must not leak into later tests (caplog reads them)
        root.handlers = saved[0]
        root.setLevel(saved[1])
        access.setLevel(saved[2])
    prefix = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} "
    assert re.fullmatch(prefix + r"INFO sidecache\.access 127\.0\.0\.1 access\n", out.getvalue())
    assert re.fullmatch(
        prefix + r"WARNING sidecache careful\n" + prefix + r"ERROR sidecache\.front broken\n",
        err.getvalue(),
    )


@pytest.mark.parametrize(
    ("environ", "terminal", "colour"),
    [
        ({}, True, True),
        ({}, False, False),  # point 20: a pipe or a file gets no escape codes
        ({"NO_COLOR": "1"}, True, False),
        ({"NO_COLOR": ""}, True, True),  # no-color.org: only a non-empty value counts
        ({"FORCE_COLOR": "1"}, False, True),
        ({"FORCE_COLOR": "1", "NO_COLOR": "1"}, False, False),
    ],
)
def test_colour_only_on_a_terminal(environ: dict[str, str], terminal: bool, colour: bool) -> None:
    assert wants_colour(environ, terminal) is colour


def test_the_dev_banner_offers_a_reload_only_with_a_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    with_file = banner(["http://127.0.0.1:8080"], "up", [], "s.toml", Path("s.toml"))
    without = banner(["http://127.0.0.1:8080"], "up", [], "<embedded default.toml>", None)
    assert with_file.endswith("save s.toml to reload it")
    assert without.endswith("no config file: restart to change it")


@pytest.mark.parametrize(
    ("cause", "reason"),
    [
        (OSError(errno.EADDRINUSE, "error while attempting to bind ..."), "address already in use"),
        (PermissionError(errno.EACCES, "denied"), "permission denied"),
        (OSError(-2, "Name or service not known"), "name or service not known"),
    ],
)
def test_bind_errors_name_address_listener_and_reason(cause: OSError, reason: str) -> None:
    message = listen_problem("127.0.0.1:80", "the public listener (--listen)", cause)
    assert message == f"cannot listen on 127.0.0.1:80 for the public listener (--listen): {reason}"


def test_a_listen_error_is_an_os_error_with_the_message_alone() -> None:
    error = ListenError("[::1]:8080", "the public listener", OSError(errno.EADDRINUSE, "x"))
    assert isinstance(error, OSError) and error.errno == errno.EADDRINUSE
    assert (
        str(error) == "cannot listen on [::1]:8080 for the public listener: address already in use"
    )
