"""uWSGI's internal routing table, read from the ini's `route*` lines (core/routing.c).

    route[-host|-uri|-qs|-user-agent|-referer|-remote-addr|-remote-user] = REGEX ACTION:ARGS
    route-if = TEST:SUBJECT[;OPERAND] ACTION:ARGS      route-if-not = (the same, negated)
    route-run = ACTION:ARGS                             route-label = NAME

The condition ends at the first space, the action's name at the first colon. Every line,
labels included, has a position: `goto:NAME` jumps forward to a label, `goto:N` to position N.
What an action does to the walk through the table is its `Effect`. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from proxy.uwsgi_ini import IniOption, placeholder
from proxy.uwsgi_terms import ROUTE_SUBJECTS, UNTESTABLE, Atom, condition_atom, route_atom


class Effect(Enum):
    NEXT = "next"  # on to the next route (log, addheader...)
    EXIT = "exit"  # routing ends: the app answers (continue, last) or uWSGI does (break...)
    GOTO = "goto"
    LOOKUP = "lookup"  # cache: on a hit uWSGI answers; on a miss, the next route
    STORE = "store"  # cachestore: the response will be stored; the next route
    REWRITE = "rewrite"  # changes PATH_INFO for the routes after it


def _names(text: str) -> frozenset[str]:
    return frozenset(text.split())


# The actions that end the routing (their return value is CONTINUE or BREAK), from uWSGI's
# routers: core/routing.c and the router_* plugins.
EXITS = _names(
    "continue last break return redirect redirect-302 redirect-301 redirect-permanent "
    "rewrite-last static file fastfile http proxyhttp uwsgi proxyuwsgi rpc rpcret "
    "rpcblob rpcraw xslt ssi gridfs cgi cgihelper sendfile serve-static"
)
NEXT_ACTIONS = _names(
    "log logvar addvar addheader delheader remheader signal send send-crnl donotlog "
    "chdir setapp setuser sethome setfile setscriptname setprocname setmethod "
    "setmodifier1 setmodifier2 alarm flush fixcl forcecl harakiri clearheaders "
    "disableheaders basicauth basicauth-next ldapauth ldapauth-next cachevar cacheset "
    "cacheinc cachedec cachemul cachediv goon memcached memcached-continue "
    "cache-continue"
)
EFFECTS = {
    "goto": Effect.GOTO,
    "cache": Effect.LOOKUP,
    "cachestore": Effect.STORE,
    "cache-store": Effect.STORE,
    "rewrite": Effect.REWRITE,
    "setpathinfo": Effect.REWRITE,
}
ROUTE_OPTIONS = frozenset(
    {*ROUTE_SUBJECTS, *UNTESTABLE, "route-if", "route-if-not", "route-run", "route-label"}
)
OTHER_TABLES = ("final-route", "error-route", "response-route")


@dataclass(frozen=True, slots=True)
class Route:
    """One line of the routing table; `problem` says why uWSGI itself would refuse it."""

    option: IniOption
    position: int
    label: str = ""
    condition: Atom | None = None  # None: always (route-run)
    negate: bool = False
    action: str = ""
    argument: str = ""
    problem: str = ""

    @property
    def effect(self) -> Effect | None:
        """What the action does to the walk; None for an action this reader does not know."""
        if self.action in EFFECTS:
            return EFFECTS[self.action]
        if self.action in EXITS:
            return Effect.EXIT
        return Effect.NEXT if self.action in NEXT_ACTIONS else None


def is_route(option: IniOption) -> bool:
    return option.name in ROUTE_OPTIONS


def is_other_table(option: IniOption) -> bool:
    return option.name.startswith(OTHER_TABLES)


def read_routes(options: tuple[IniOption, ...]) -> tuple[Route, ...]:
    """The routing table, in order (positions count every route line, as uWSGI's do)."""
    table = [o for o in options if is_route(o)]
    return tuple(read_route(option, position) for position, option in enumerate(table))


def read_route(option: IniOption, position: int) -> Route:
    found = placeholder(option.value)
    if found:
        problem = f"{found} is a uWSGI placeholder, known only when uWSGI reads the file"
        return Route(option, position, problem=problem)
    if option.name == "route-label":
        return Route(option, position, label=option.value)
    if option.name == "route-run":
        return _with_action(Route(option, position), option.value)
    head, space, command = option.value.partition(" ")
    if not space:
        return Route(option, position, problem="no action after the condition")
    if option.name in ("route-if", "route-if-not"):
        test, colon, argument = head.partition(":")
        if not colon:
            return Route(option, position, problem="the condition needs TEST:SUBJECT")
        atom = condition_atom(test, argument, option.line)
        route = Route(option, position, condition=atom, negate=option.name == "route-if-not")
        return _with_action(route, command)
    atom = route_atom(option.name, head, option.line)
    return _with_action(Route(option, position, condition=atom), command)


def _with_action(route: Route, command: str) -> Route:
    name, colon, argument = command.partition(":")
    if not colon:
        return Route(route.option, route.position, problem="the action needs NAME:ARGS")
    return Route(
        route.option,
        route.position,
        condition=route.condition,
        negate=route.negate,
        action=name,
        argument=argument,
    )


def kvlist(argument: str) -> dict[str, str]:
    """`key=${REQUEST_URI},name=mycache` as uWSGI's kvlist parser reads it: `,` between
    items, the first `=` in each; a backslash keeps the next character as it is."""
    items: dict[str, str] = {}
    item, escaped = "", False
    for char in argument + ",":
        if escaped:
            item, escaped = item + char, False
        elif char == "\\":
            escaped = True
        elif char == ",":
            name, _, value = item.partition("=")
            if name:
                items[name] = value
            item = ""
        else:
            item += char
    return items
