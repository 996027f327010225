"""Pin proxy.uwsgi_ini and proxy.uwsgi_routes: a uWSGI ini read as uWSGI reads it (core/ini.c),
its routing table as core/routing.c builds it."""

from __future__ import annotations

import pytest

from proxy.uwsgi_ini import IniOption, placeholder, read_ini
from proxy.uwsgi_routes import Effect, kvlist, read_routes
from proxy.uwsgi_terms import Subject


def pairs(text: str, section: str = "uwsgi") -> list[tuple[int, str, str]]:
    return [(o.line, o.key, o.value) for o in read_ini(text, section).options]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # uWSGI: every `route =` line is one more route: repeats are kept, in order
        pytest.param(
            "[uwsgi]\nroute = ^/a x:\nroute = ^/b y:\n",
            [(2, "route", "^/a x:"), (3, "route", "^/b y:")],
            id="repeated-keys-in-order",
        ),
        # core/ini.c: `;` and `#` start a comment only at the start of a line
        pytest.param(
            "[uwsgi]\n; a comment\n# another\nroute-if = equal:${PATH_INFO};/bad break:500\n",
            [(4, "route-if", "equal:${PATH_INFO};/bad break:500")],
            id="semicolon-inside-a-value-is-kept",
        ),
        pytest.param(
            "[uwsgi]\n   master = true  \r\n\tprocesses=4\n",
            [(2, "master", "true"), (3, "processes", "4")],
            id="spaces-tabs-and-cr-stripped",
        ),
        # the key ends at the first `=`; the value keeps the others
        pytest.param(
            "[uwsgi]\nroute = ^/$ cache:key=${REQUEST_URI},name=c\n",
            [(2, "route", "^/$ cache:key=${REQUEST_URI},name=c")],
            id="first-equals-splits",
        ),
        pytest.param("[uwsgi]\nmaster\n", [(2, "master", "")], id="a-flag-has-no-value"),
        # only the section asked for: lines before any section and other sections are not read
        pytest.param(
            "master = false\n[other]\nprocesses = 9\n[uwsgi]\nprocesses = 2\n[more]\nx = 1\n",
            [(5, "processes", "2")],
            id="other-sections-ignored",
        ),
        pytest.param("", [], id="empty-file"),
    ],
)
def test_read_ini(text: str, expected: list[tuple[int, str, str]]) -> None:
    assert pairs(text) == expected


def test_another_section_and_the_sections_found() -> None:
    ini = read_ini("[uwsgi]\na = 1\n[app]\nb = 2\n", "app")
    assert (ini.found, ini.sections, pairs("[uwsgi]\na = 1\n[app]\nb = 2\n", "app")) == (
        True,
        ("uwsgi", "app"),
        [(4, "b", "2")],
    )
    assert not read_ini("[app]\nb = 2\n").found


@pytest.mark.parametrize(
    ("value", "found"),
    [
        ("%(port)", "%(port)"),
        ("127.0.0.1:$(PORT)", "$(PORT)"),
        ("@(/etc/port)", "@(/etc/port)"),
        ("/var/log/%n.log", "%n"),  # a magic variable: the config file's name
        ("^/a%20b", "%2"),  # %2 is one too (a directory of the config file's path)
        ("^/$ cache:key=${REQUEST_URI}", None),  # a routing variable, not a placeholder
        ("$1", None),
    ],
)
def test_placeholders(value: str, found: str | None) -> None:
    assert placeholder(value) == found


def option(key: str, value: str, line: int = 1) -> IniOption:
    return IniOption(line, key, value, f"{key} = {value}")


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        # core/routing.c: the condition ends at the first space, the action's name at a colon
        pytest.param(
            "route",
            "^/about$ cache:key=${REQUEST_URI},name=c",
            (Subject.PATH, "regexp", "^/about$", False, "cache", "key=${REQUEST_URI},name=c"),
            id="route-searches-path-info",
        ),
        pytest.param(
            "route-if",
            "empty:${cookie[remember_token]} goto:cacheme",
            (Subject.COOKIE, "empty", "", False, "goto", "cacheme"),
            id="route-if-cookie",
        ),
        pytest.param(
            "route-if-not",
            "equal:${HTTP_X_REQUESTED_WITH};XMLHttpRequest continue:",
            (Subject.HEADER, "equal", "XMLHttpRequest", True, "continue", ""),
            id="route-if-not-negates-header-test",
        ),
        pytest.param(
            "route-if",
            "eq:${PATH_INFO};/bad break:500",
            (Subject.PATH, "equal", "/bad", False, "break", "500"),
            id="eq-is-equal",
        ),
        pytest.param(
            "route-user-agent",
            ".*curl.* redirect:http://x",
            (Subject.HEADER, "regexp", ".*curl.*", False, "redirect", "http://x"),
            id="route-user-agent",
        ),
        pytest.param(
            "route-remote-addr",
            "^10\\. last:",
            (Subject.OTHER, "", "route-remote-addr ^10\\.", False, "last", ""),
            id="remote-addr-has-no-sidecache-test",
        ),
        pytest.param(
            "route-if",
            "isfile:/var/www/down.html static:/var/www/down.html",
            (Subject.OTHER, "", "isfile:/var/www/down.html", False, "static", "/var/www/down.html"),
            id="isfile-has-no-sidecache-test",
        ),
        pytest.param(
            "route-if",
            "equal:${REQUEST_URI};/ last:",
            (Subject.OTHER, "", "equal:${REQUEST_URI};/", False, "last", ""),
            id="request-uri-has-no-sidecache-test",
        ),
    ],
)
def test_read_route(key: str, value: str, expected: tuple[object, ...]) -> None:
    [route] = read_routes((option(key, value),))
    assert route.condition is not None and not route.problem
    atom = route.condition
    assert (
        atom.subject,
        atom.test,
        atom.operand,
        route.negate,
        route.action,
        route.argument,
    ) == expected


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        ("route", "^/about$", "no action after the condition"),
        ("route", "^/about$ cache", "the action needs NAME:ARGS"),
        ("route-if", "empty goto:x", "the condition needs TEST:SUBJECT"),
        ("route", "^/%(page)$ cache:key=x", "%(page) is a uWSGI placeholder"),
    ],
)
def test_routes_uwsgi_refuses(key: str, value: str, problem: str) -> None:
    [route] = read_routes((option(key, value),))
    assert route.problem.startswith(problem)


def test_route_run_label_and_positions() -> None:
    # labels count as positions, as uWSGI numbers its rules (goto:N jumps to one)
    options = (
        option("master", "true", 1),
        option("route-run", "continue:", 2),
        option("route-label", "here", 3),
        option("route", "^/ cachestore:key=x", 4),
    )
    routes = read_routes(options)
    assert [(r.position, r.label, r.action, r.effect) for r in routes] == [
        (0, "", "continue", Effect.EXIT),
        (1, "here", "", None),
        (2, "", "cachestore", Effect.STORE),
    ]
    assert routes[0].condition is None


@pytest.mark.parametrize(
    ("argument", "expected"),
    [
        ("key=${REQUEST_URI},name=c", {"key": "${REQUEST_URI}", "name": "c"}),
        ("key=a\\,b,expires=60", {"key": "a,b", "expires": "60"}),  # \, keeps the comma
        ("key=a=b", {"key": "a=b"}),
        ("", {}),
    ],
)
def test_kvlist(argument: str, expected: dict[str, str]) -> None:
    assert kvlist(argument) == expected
