"""`sidecache import-uwsgi FILE.ini`: a uWSGI router-cache setup as a sidecache TOML config.

The ini is read as uWSGI reads it (uwsgi_ini.py), its routing table walked branch by branch
(uwsgi_routes.py, uwsgi_flow.py), and each `cache:` + `cachestore:` pair becomes a cache
rule under the conditions that lead to it (uwsgi_rules.py); `cache2` becomes `[caches.NAME]`
and `http-socket` the upstream (uwsgi_setup.py). Every line that has no sidecache
equivalent is quoted in a `# not translated: line N: ... — why` comment, where it was. The
output is meant to pass `sidecache check` as it is. Pure: text in, text out.
"""

from __future__ import annotations

from collections.abc import Iterable

from proxy.uwsgi_flow import Flow, Path, Reach, follow
from proxy.uwsgi_ini import IniOption, read_ini
from proxy.uwsgi_routes import Effect, is_other_table, is_route, kvlist, read_routes
from proxy.uwsgi_rules import (
    NOT_NEEDED,
    Block,
    CacheRule,
    Field,
    cache_rules,
    conditions,
    exit_paths,
    not_translated,
)
from proxy.uwsgi_setup import (
    HTTP_SOCKETS,
    OTHER_SOCKETS,
    Cache,
    read_cache2,
    read_old_cache,
    size_text,
    upstream,
)
from proxy.uwsgi_terms import toml_key, toml_string

HEADER = """\
# sidecache config imported from {source} ([{section}]) by `sidecache import-uwsgi`.
# Check it:  sidecache check THIS.toml      Run it:  sidecache --config THIS.toml
# Then take the cache routes out of the app's ini (uWSGI would cache behind sidecache too).
#
# uWSGI's router cache, with sidecache's safety rules on top:
# - a cache rule answers GET and HEAD only (uWSGI's cache: answered any method);
# - it stores the app's headers with the body, and never a response that sets a cookie
#   (uWSGI stored the body alone, sent it as text/html, CSRF tokens and all): such a page
#   is passed, with the visitor's own cookies, for the cache's hit_for_pass;
# - anonymous = true: a cache rule also passes whoever [identity] sees as logged in (a
#   remember cookie, Authorization, a Flask session with a user). Every cache rule passes
#   them anyway; written out, `sidecache check` and `sidecache explain` show it;
# - empty:${{cookie[NAME]}} is read as "no NAME cookie": one sent with no value is passed;
# - keys start with {{host}}, so one site's page never answers another's Host;
# - an entry lives for its rule's ttl (expires=), else its cache's (10s by default); uWSGI
#   kept one without expires= until it was evicted."""
APP_SETTING = "the app server's own setting: it stays in the app's ini"
KEEP = "not a cache route: keep it in the app's ini, where uWSGI still runs it"
SPECIAL = {
    Effect.REWRITE: "it rewrites PATH_INFO: keep it in the app's ini; sidecache tests the "
    "path the visitor sent, so the path tests of the routes below it are not translated",
    None: "an action this import does not know: read as going on to the next route",
}


class ImportProblem(ValueError):
    """The file cannot be imported at all (no such section); one line for the CLI."""


def import_uwsgi(text: str, source: str, section: str = "uwsgi") -> str:
    """The sidecache TOML for the uWSGI ini `text` (named `source` in comments)."""
    ini = read_ini(text, section)
    if not ini.found:
        found = ", ".join(f"[{name}]" for name in ini.sections) or "none"
        raise ImportProblem(f"{source}: no [{section}] section (sections: {found})")
    flow = follow(read_routes(ini.options))
    caches, cache_blocks = _caches(ini.options)
    rules, notes = cache_rules(flow, caches)
    emitted: list[CacheRule] = []
    blocks = [*notes, *_rule_blocks(rules, emitted)]  # fills `emitted`: the exits read it
    blocks += _exit_blocks(flow, [(rule.line, rule.path) for rule in emitted])
    blocks += _other_route_blocks(flow, ini.options)
    used = {rule.cache for rule in emitted}
    app = upstream(ini.options)
    out = [HEADER.format(source=source, section=section), ""]
    out += ["[server]", _line("listen", '["127.0.0.1:8080"]', "where visitors connect"), ""]
    out += ["[upstream]", _line("url", toml_string(app.url), app.comment), ""]
    out += _cache_tables(caches, used, cache_blocks)
    for block in sorted(blocks, key=lambda b: b.line):
        out += [*block.lines, *([""] if "[[rules]]" in block.lines else [])]
    out += _option_notes(ini.options, app.option)
    kept = [line for i, line in enumerate(out) if line or (i and out[i - 1])]
    return "\n".join(kept).rstrip("\n") + "\n"


def _line(key: str, value: str, comment: str = "") -> str:
    text = f"{key} = {value}"
    return f"{text:<36} # {comment}" if comment else text


# --------------------------------------------------------------------------- caches


def _caches(options: tuple[IniOption, ...]) -> tuple[dict[str, Cache], list[Block]]:
    """The ini's caches in uWSGI's order (the old-style `cache` first: it is made first)."""
    caches: dict[str, Cache] = {}
    blocks: list[Block] = []
    sizes = [o for o in options if o.name == "cache-blocksize"]
    old = [o for o in options if o.name == "cache"]
    for option in old[:-1] + sizes[:-1]:  # uWSGI keeps an option's last value
        blocks.append(not_translated(option.line, option.text, "a later line sets it again"))
    if sizes and not old:
        why = "the old-style cache's blocksize, and no `cache =` line makes that cache"
        blocks.append(not_translated(sizes[-1].line, sizes[-1].text, why))
    read = [(o, read_old_cache(o, sizes[-1] if sizes else None)) for o in old[-1:]]
    read += [(o, read_cache2(o)) for o in options if o.name == "cache2"]
    for option, cache in read:
        if isinstance(cache, str):
            blocks.append(not_translated(option.line, option.text, cache))
        elif cache.name in caches:
            blocks.append(not_translated(option.line, option.text, "a second cache so named"))
        else:
            caches[cache.name] = cache
    return caches, blocks


def _cache_tables(caches: dict[str, Cache], used: set[str], blocks: list[Block]) -> list[str]:
    out: list[str] = []
    for cache in caches.values():
        if cache.name not in used:
            why = "no cache route translated below uses it (the app's uwsgi.cache_* calls may)"
            for option in filter(None, (cache.option, cache.blocksize_option)):
                blocks.append(not_translated(option.line, option.text, why))
            continue
        blocksize = "bitmap: blocks x blocksize" if cache.bitmap else "blocksize"
        out += [f"# line {cache.option.line}: {cache.option.text}"]
        if cache.blocksize_option:
            out += [f"# line {cache.blocksize_option.line}: {cache.blocksize_option.text}"]
        out += [f"[caches.{toml_key(cache.name)}]", _line("items", str(cache.items))]
        out += [_line("item_size", size_text(cache.item_size), f"the largest item: {blocksize}")]
        total = size_text(cache.blocks * cache.blocksize)
        out += [_line("max_bytes", total, "blocks x blocksize: the memory uWSGI set aside")]
        out += [f"# not translated: {skipped}" for skipped in cache.skipped]
        out.append("")
    out += [line for block in blocks for line in block.lines]
    return out + ([""] if blocks else [])


# --------------------------------------------------------------------------- rules


def _rule_blocks(rules: list[CacheRule], emitted: list[CacheRule]) -> list[Block]:
    blocks: list[Block] = []
    names: dict[int, int] = {}
    for rule in rules:
        found = conditions(rule.path)
        quoted = _quoted(rule.lookup, rule.store)
        if isinstance(found, str):
            blocks.append(
                Block(rule.line, tuple(f"# not translated: {q[2:]} — {found}" for q in quoted))
            )
            continue
        emitted.append(rule)
        number = rule.lookup.route.option.line
        names[number] = names.get(number, 0) + 1
        name = f"line-{number}" + (f"-{names[number]}" if names[number] > 1 else "")
        blocks.append(Block(rule.line, (*quoted, *_cache_rule(rule, name, found))))
    return blocks


def _quoted(*reaches: Reach) -> list[str]:
    lines = [f"# line {r.route.option.line}: {r.route.option.text}" for r in reaches]
    return list(dict.fromkeys(lines))


def _cache_rule(rule: CacheRule, name: str, fields: list[Field]) -> list[str]:
    lines = ["[[rules]]", _line("name", toml_string(name))]
    lines += [_line(key, value, comment) for key, value, comment in fields]
    lines += [_line("anonymous", "true", "see the top of this file")]
    lines += [_line("action", '"cache"'), _line("cache", toml_string(rule.cache))]
    key_comment = "; ".join((f"key={kvlist(rule.lookup.route.argument)['key']}", *rule.key.notes))
    lines += [_line("key", toml_string(rule.key.template), key_comment)]
    if rule.key.cookies:
        cookies = "[" + ", ".join(toml_string(c) for c in rule.key.cookies) + "]"
        lines += [_line("keep_cookies", cookies, "the key reads them: fills must send them")]
    if rule.ttl:
        lines += [_line("ttl", f'"{rule.ttl}s"', f"expires={rule.ttl}")]
    for reach in (rule.lookup, rule.store):
        for option, value in kvlist(reach.route.argument).items():
            if option in NOT_NEEDED:
                lines.append(f"# {option}={value}: not needed, {NOT_NEEDED[option]}")
    return lines


def _exit_blocks(flow: Flow, emitted: list[tuple[int, Path]]) -> Iterable[Block]:
    """A pass rule for each way into an exit that a cache rule below could match."""
    for exit in flow.exits:
        option = exit.route.option
        ends = exit.route.action in ("continue", "last")
        what = "the app answers these requests uncached" if ends else f"uWSGI answers: {KEEP}"
        lines = [f"# line {option.line}: {option.text} — {what}"]
        for index, (path, needed) in enumerate(exit_paths(exit, emitted), 1):
            if not needed:
                continue
            found = conditions(path)
            if isinstance(found, str):
                lines[0] = (
                    f"# not translated: line {option.line}: {option.text} — {found}: the rules "
                    "below may also answer requests it ends"
                )
                continue
            name = f"line-{option.line}" + (f"-{index}" if len(exit.paths) > 1 else "")
            lines += ["[[rules]]", _line("name", toml_string(name))]
            lines += [_line(key, value, comment) for key, value, comment in found]
            lines += [_line("action", '"pass"')]
        if len(lines) == 1 and not lines[0].startswith("# not"):
            lines[0] += "; no cache rule below matches them"
        yield Block(option.line, tuple(lines))


def _other_route_blocks(flow: Flow, options: tuple[IniOption, ...]) -> Iterable[Block]:
    for reach in flow.jumps:
        option = reach.route.option
        said = f"# line {option.line}: {option.text} — a branch: the rules it leads to carry it"
        yield Block(option.line, (said,))
    for reach in flow.others:
        effect = reach.route.effect
        yield not_translated(reach, reach.route.option.text, SPECIAL.get(effect, KEEP))
    for route in flow.unreached:
        why = "no request reaches it: the routes above end or jump past it for every one"
        yield not_translated(route.option.line, route.option.text, why)
    for route in flow.refused:
        yield not_translated(route.option.line, route.option.text, route.problem)
    for option in options:
        if is_other_table(option):
            why = "another routing table (after the response, or on errors): sidecache has none"
            yield not_translated(option.line, option.text, why)


def _option_notes(options: tuple[IniOption, ...], chosen: IniOption | None) -> list[str]:
    """The app server's other settings: each quoted once, with why it is not translated."""
    lines: list[str] = []
    for option in options:
        if is_route(option) or is_other_table(option) or option is chosen:
            continue
        if option.name in ("cache", "cache2", "cache-blocksize"):
            continue
        if option.name in HTTP_SOCKETS:
            why = "sidecache's upstream is one address: the first one it can reach"
        elif option.name in OTHER_SOCKETS:
            why = "the uwsgi protocol, not HTTP: sidecache cannot be its client"
        elif option.name.startswith("cache-"):
            why = "an option of uWSGI's cache: sidecache's caches need none"
        else:
            why = APP_SETTING
        lines.append(f"# not translated: line {option.line}: {option.text} — {why}")
    return ["", "# The rest of the ini:", *lines] if lines else []
