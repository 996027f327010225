"""`sidecache explain URL`: the request an operator describes on the command line, and the
decision trace printed for it (trace.py). Pure: strings in, a `RequestView` and text out.

The request is made as the front makes one: an absolute URL's authority replaces Host
(`view.origin_form`), the framing says whether a body follows, and what the front would refuse
before any rule is read (`view.request_problem`) is an error here too. The key is shown whole:
it is the operator's own request (the access log and the live Sidecache-Trace header show no
key, for a key can hold a cookie's value).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from ipaddress import ip_address

from proxy.decide import Lookup, Pass
from proxy.explain import cache_line, rule_line
from proxy.fields import TOKEN
from proxy.forwarding import fill_request, pass_headers
from proxy.framing import request_framing
from proxy.reasons import PassReason
from proxy.settings import Settings
from proxy.trace import Trace, key_hash, pass_reason, traced_decide
from proxy.view import Headers, RequestView, origin_form, request_problem

_FORBIDDEN = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # in a field value: CTLs but HTAB


def request_view(
    settings: Settings,
    url: str,
    headers: Sequence[str] = (),
    cookies: Sequence[str] = (),
    method: str = "GET",
    peer: str = "127.0.0.1",
) -> RequestView:
    """The request `sidecache explain` describes; ValueError (one line) for what is not one.
    Without a Host (a path, no -H Host) it is the first listen address, as curl would send."""
    if not TOKEN.fullmatch(method):
        raise ValueError(f"bad method {method!r} (a token such as GET, HEAD or POST)")
    pairs = [_header(text) for text in headers]
    if cookies:
        pairs.append(("Cookie", "; ".join(_cookie(text) for text in cookies)))
    url = url.partition("#")[0]  # a fragment never leaves the browser
    if url.startswith("/") and not any(name.lower() == "host" for name, _ in pairs):
        pairs.insert(0, ("Host", _listen_host(settings)))
    target, fields = origin_form(url, tuple(pairs))
    if not target.startswith("/") or re.search(r"[\x00-\x20\x7f]", target):
        raise ValueError(
            f"bad URL {url!r}: write http://host/path?query or /path?query (no spaces)"
        )
    address = "" if peer == "unix" else _peer(peer)
    view = RequestView(method, target, fields, peer=address, trusted=settings.trust.trusts(address))
    _, _, view.has_body, problem = request_framing(view.version, view.header_map)
    problem = problem or request_problem(view)
    if problem is not None:
        raise ValueError(f"sidecache would answer {problem[0]} ({problem[1]}) to this request")
    return view


def _header(text: str) -> tuple[str, str]:
    name, colon, value = text.partition(":")
    if not colon or not TOKEN.fullmatch(name):
        raise ValueError(f"bad header {text!r} (write -H 'Name: value')")
    value = value.strip(" \t")
    if _FORBIDDEN.search(value):
        raise ValueError(f"bad header {name}: a value holds no line break or control character")
    return name, value


def _cookie(text: str) -> str:
    name, equals, value = text.partition("=")
    if not equals or not TOKEN.fullmatch(name) or _FORBIDDEN.search(value) or ";" in value:
        raise ValueError(f"bad cookie {text!r} (write --cookie 'name=value', no ';')")
    return f"{name}={value}"


def _peer(text: str) -> str:
    try:
        return str(ip_address(text))
    except ValueError:
        raise ValueError(f"bad peer {text!r} (an IP address, or unix)") from None


def _listen_host(settings: Settings) -> str:
    """What a client of the first listener sends as Host (localhost for a unix socket)."""
    first = settings.listen[0]
    return "localhost" if first.path else str(first)


def report(settings: Settings, view: RequestView) -> str:
    """The decision trace of `view` under `settings`, as `sidecache explain` prints it."""
    trace = traced_decide(view, settings.rules, settings.identity)
    lines = [f"request: {view.method} {view.target}", *_fields(view.headers)]
    lines += [_peer_line(view), *_identity(trace)]
    lines += _rules(settings, trace)
    decision = trace.decision
    if isinstance(decision, Lookup):
        lines += _lookup(settings, view, decision)
    else:
        lines += _pass(settings, view, trace, decision)
    return "\n".join(lines)


def _fields(headers: Headers) -> list[str]:
    return [f"  {name}: {value}" for name, value in headers]


def _peer_line(view: RequestView) -> str:
    peer = view.peer or "a unix-socket client"
    if view.trusted:
        return f"peer: {peer} (a trusted proxy: its X-Forwarded-* are believed)"
    return f"peer: {peer} (not a trusted proxy: its X-Forwarded-* are replaced)"


def _identity(trace: Trace) -> list[str]:
    identity = trace.identity
    lines = [f"visitor: {identity.visitor.value}: {identity.why}"]
    if identity.authorization:
        lines.append("  Authorization is sent: logged in, unless a rule allows it")
    return lines


def _rules(settings: Settings, trace: Trace) -> list[str]:
    if settings.mode == "shared":
        head = (
            "mode: shared (no rules: the origin's headers decide what is stored and for how "
            "long, RFC 9111; logged-in visitors still pass)"
        )
    else:
        head = "rules (first match wins; no match: pass):"
    lines = [head]
    lines += [
        f"  {step.rule.number}. {step.rule.label}: {_verdict(step.why)}" for step in trace.steps
    ]
    if not settings.rules:
        lines.append("  (none)")
    elif trace.steps[-1].mismatch is not None:
        lines.append("  no rule matched")
    return lines


def _verdict(why: str) -> str:
    return why if why == "matched" else f"no match: {why}"


def _lookup(settings: Settings, view: RequestView, lookup: Lookup) -> list[str]:
    rule = lookup.rule
    cache = settings.caches[rule.cache]
    lines = [
        f"decision: lookup in cache {rule.cache!r}: a hit answers from memory, a miss is "
        "filled from the app and stored if its answer may be",
        f"  rule: {rule_line(rule)}",
        f"  key: {_shown(lookup.key)}",
        f"  key-hash: {key_hash(lookup.key)} (what Sidecache-Trace shows instead of the key)",
        f"  cache: {cache_line(cache)}, coalesce_wait={cache.coalesce_wait:g}s, "
        f"hit_for_pass={cache.hit_for_pass:g}s",
    ]
    if "range" in view.header_map:
        lines.append("  Range: a usable entry answers it (206); else it goes to the app (range)")
    headers, _ = fill_request(settings, view, lookup)
    if rule.forward_all:
        lines.append("a fill (on a miss) forwards the request as it came (shared mode):")
    else:
        lines.append(
            "a fill (on a miss) sends what a new visitor would (no cookies, an allowlist):"
        )
    lines += _upstream("GET", view, headers)
    lines.append(
        "a fill whose answer is personal (Set-Cookie, private, no-store) is not stored and "
        f"makes the key hit-for-pass for {cache.hit_for_pass:g}s: the visitor's own request "
        "goes to the app, as a pass sends it"
    )
    return lines


def _pass(settings: Settings, view: RequestView, trace: Trace, decision: Pass) -> list[str]:
    lines = [f"decision: pass ({decision.reason.value}): {pass_reason(decision)}"]
    rule = decision.rule
    if rule is not None:
        lines.append(f"  rule: {rule_line(rule)}")
        if trace.steps[-1].mismatch is not None:  # decide's refused visitor
            lines.append("  (it would cache this page for an anonymous visitor)")
    if decision.reason in (PassReason.AUTHENTICATED, PassReason.FLASHES):
        lines.append(f"  visitor: {trace.identity.why}")
    lines.append("a pass forwards the request as it came (cookies and all), nothing stored:")
    lines += _upstream(view.method, view, pass_headers(view, settings.trust, settings.upstream))
    return lines


def _upstream(method: str, view: RequestView, headers: Headers) -> list[str]:
    """The request line and headers sent upstream, and the client's headers left out."""
    sent = {name.lower() for name, _ in headers}
    dropped = sorted({name for name, _ in view.headers if name.lower() not in sent}, key=str.lower)
    lines = [f"  {method} {view.target}", *_fields(headers)]
    if dropped:
        lines.append(f"  not sent: {', '.join(dropped)}")
    return lines


def _shown(key: str) -> str:
    """The key printable: its NUL separators as \\0, other control characters escaped."""
    return key.encode("unicode_escape", "backslashreplace").decode("ascii").replace("\\x00", "\\0")
