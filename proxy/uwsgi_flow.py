"""Which requests reach which line of a uWSGI routing table: a walk over every branch.

uWSGI runs the table top to bottom, jumps only forward (`goto`) and stops at the first action
that ends the routing (`continue`, `last`, `break`, a redirect...; and `cache:` on a hit). So
the requests that reach a line are a disjunction of conjunctions of the conditions met on
the way: a `Path` is one conjunction, a set of `(Atom, holds)` literals. The walk keeps the
paths at each line, sends a `goto`'s matching paths to its label and merges them there
(`A and c` with `A and not c` is `A`), and records where each `cache:`, `cachestore:` and
exit is reached from. uwsgi_import.py makes sidecache rules of those records. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from proxy.uwsgi_routes import Effect, Route
from proxy.uwsgi_terms import Literal, Subject, field_condition, other, satisfiable

Path = frozenset[Literal]
MAX_PATHS = 64  # branches kept at one line; past this the table is not read (a clear error)


class TooManyBranches(ValueError):
    """The table branches more than a translation can follow; the CLI says so."""


@dataclass(frozen=True, slots=True)
class Reach:
    """A line and the paths that reach it, its own condition met."""

    route: Route
    paths: tuple[Path, ...]


@dataclass(slots=True)
class Flow:
    lookups: list[Reach] = field(default_factory=list)  # cache:
    stores: list[Reach] = field(default_factory=list)  # cachestore:
    exits: list[Reach] = field(default_factory=list)  # continue, last, break, redirect...
    jumps: list[Reach] = field(default_factory=list)  # goto: (followed)
    others: list[Reach] = field(default_factory=list)  # every other action reached
    unreached: list[Route] = field(default_factory=list)
    refused: list[Route] = field(default_factory=list)  # lines uWSGI would refuse


def follow(routes: tuple[Route, ...]) -> Flow:
    """Walk `routes` from the top with every request (one empty path)."""
    flow = Flow()
    current: list[Path] = [frozenset()]
    jumps: dict[int, list[Path]] = {}
    labels = {route.label: route.position for route in routes if route.label}
    for route in routes:
        current = simplify(current + jumps.pop(route.position, []))
        if route.label:
            continue
        if route.problem:  # uWSGI refuses to start with it: nothing to follow
            flow.refused.append(route)
            continue
        matched, missed = split(current, route)
        if _ends(route, labels) and not _said_by_field(route):
            # The requests it ends never reach a line below: a pass rule where it stands
            # says so (sidecache's rules are first-match), so the others go on as they came.
            missed = _unless(current, route)
        if not matched:
            flow.unreached.append(route)
            current = missed
            continue
        current = missed + _act(route, matched, labels, jumps, flow)
    return flow


def split(paths: list[Path], route: Route) -> tuple[list[Path], list[Path]]:
    """The paths on which `route`'s condition holds, and those on which it does not (a path
    that already says the opposite goes one way only)."""
    if route.condition is None:
        return list(paths), []
    holds: Literal = (route.condition, not route.negate)
    fails: Literal = (route.condition, route.negate)
    matched = [path | {holds} for path in paths if fails not in path]
    missed = [path | {fails} for path in paths if holds not in path]
    return matched, missed


def _unless(paths: list[Path], route: Route) -> list[Path]:
    """The paths that go on past an exit: all but those on which it surely holds."""
    if route.condition is None:
        return []
    return [path for path in paths if (route.condition, not route.negate) not in path]


def _said_by_field(route: Route) -> bool:
    """Whether the rules below can say the exit's condition failed, as a cookie or header
    test (`cookie.remember_token = "absent"` past `route-if-not = empty:... last:`), which
    reads better than a pass rule before them."""
    atom = route.condition
    if atom is None or atom.subject not in (Subject.COOKIE, Subject.HEADER):
        return False
    return field_condition(atom, route.negate) is not None


def _ends(route: Route, labels: dict[str, int]) -> bool:
    """Whether `route`'s action ends the routing (a goto that cannot jump does)."""
    if route.effect is Effect.GOTO:
        return _target(route, labels) is None
    return route.effect is Effect.EXIT


def _act(
    route: Route,
    matched: list[Path],
    labels: dict[str, int],
    jumps: dict[int, list[Path]],
    flow: Flow,
) -> list[Path]:
    """Record what `route` does on `matched`; return the paths that go on to the next line."""
    reach = Reach(route, tuple(matched))
    effect = route.effect
    if effect is Effect.GOTO:
        target = _target(route, labels)
        if target is None:  # uWSGI logs an error and ends the request (BREAK)
            flow.exits.append(reach)
        else:
            flow.jumps.append(reach)
            jumps.setdefault(target, []).extend(matched)
        return []
    if effect is Effect.EXIT:
        flow.exits.append(reach)
        return []
    if effect is Effect.LOOKUP:
        flow.lookups.append(reach)
    elif effect is Effect.STORE:
        flow.stores.append(reach)
    else:
        flow.others.append(reach)
    if effect is Effect.REWRITE:  # the path tested below is no longer the one sent
        marker = other(f"PATH_INFO was rewritten at line {route.option.line}", "", 0)
        return [path | {(marker, True)} for path in matched]
    return matched


def _target(route: Route, labels: dict[str, int]) -> int | None:
    """Where `goto:ARG` jumps: a label, else a position; None when it cannot jump (unknown,
    backwards, or a label built from the request, which only uWSGI can resolve)."""
    argument = route.argument
    if "$" in argument:
        return None
    target = labels.get(argument, int(argument) if argument.isdigit() else None)
    return target if target is not None and target > route.position else None


def simplify(paths: list[Path]) -> list[Path]:
    """The same disjunction, smaller: duplicates and paths implied by a shorter one go, and
    two paths that differ in one literal's truth merge. Order kept (the output follows it)."""
    paths = list(dict.fromkeys(paths))
    changed = True
    while changed:
        changed = False
        paths = [p for p in paths if not any(q < p for q in paths)]
        for i, first in enumerate(paths):
            for second in paths[i + 1 :]:
                merged = _merge(first, second)
                if merged is not None:
                    paths = [merged if p == first else p for p in paths if p != second]
                    changed = True
                    break
            if changed:
                break
    if len(paths) > MAX_PATHS:
        raise TooManyBranches(f"more than {MAX_PATHS} branches reach one line of the table")
    return paths


def _merge(first: Path, second: Path) -> Path | None:
    """`A and c` with `A and not c` is `A`."""
    if len(first) != len(second):
        return None
    only_first, only_second = first - second, second - first
    if len(only_first) != 1:
        return None
    [(atom, holds)] = only_first
    return first - only_first if only_second == {(atom, not holds)} else None


def consistent(path: Path) -> bool:
    """No atom both holds and fails on `path`, and its path tests can all hold."""
    contradiction = any((atom, not holds) in path for atom, holds in path)
    return not contradiction and satisfiable(list(path))
