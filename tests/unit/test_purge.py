"""Pin purge's decisions (purge.py: what a purge request names, which entries it matches, a
response's tags, the token) and the memory store's purge through its index
(store/purge_index.py): every entry matched goes, nothing else, the LRU order is untouched,
and the index stays bounded however many entries come and go."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import replace
from typing import Any, TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.purge import Purge, PurgeError, authorized, parse_purge, response_tags
from proxy.settings import TAG_HEADERS, CacheSettings
from proxy.store import CachedResponse, vary_marker
from proxy.store.memory import MemoryStore
from proxy.store.purge_index import REBUILD_FLOOR

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


# --- what a purge request names ------------------------------------------------------------

PARSED = [
    ({"url": "/about"}, Purge("url", target="/about")),
    ({"url": "/search?q=a%20b"}, Purge("url", target="/search?q=a%20b")),
    ({"url": "http://Example.COM/about"}, Purge("url", target="/about", host="example.com")),
    ({"url": "https://example.com:8443/"}, Purge("url", target="/", host="example.com:8443")),
    ({"url": "http://example.com"}, Purge("url", target="/", host="example.com")),
    ({"url": "http://example.com/?"}, Purge("url", target="/?", host="example.com")),
    ({"url": "http://example.com/a?x=1"}, Purge("url", target="/a?x=1", host="example.com")),
    ({"prefix": "/blog/"}, Purge("prefix", target="/blog/")),
    ({"prefix": "http://example.com"}, Purge("prefix", target="", host="example.com")),
    ({"prefix": "http://example.com/blog"}, Purge("prefix", target="/blog", host="example.com")),
    ({"tag": "product-42"}, Purge("tag", tag="product-42")),
]


@pytest.mark.parametrize(("args", "purge"), PARSED)
def test_a_purge_request_names_a_url_a_prefix_or_a_tag(args: dict[str, str], purge: Purge) -> None:
    assert parse_purge(args) == purge
    assert parse_purge(purge.args) == purge  # what a master hands its workers says the same


REFUSED = [
    ({}, "exactly one"),
    ({"url": "/a", "tag": "x"}, "exactly one"),
    ({"url": ""}, "url= is empty"),
    ({"tag": "a b"}, "one tag"),
    ({"tag": "a,b"}, "one tag"),
    ({"url": "about"}, "must be /path or http://host/path"),
    ({"url": "ftp://example.com/a"}, "must be /path or http://host/path"),
    ({"prefix": "http:///a"}, "must be /path or http://host/path"),
    ({"url": "http://user:pw@example.com/"}, "user information"),
    ({"path": "/a"}, "unknown parameter 'path'"),
    ({"url": "/" + "a" * 9000}, "longer than 8192"),
]


@pytest.mark.parametrize(("args", "problem"), REFUSED)
def test_a_purge_request_that_names_nothing_or_too_much_is_refused(
    args: dict[str, str], problem: str
) -> None:
    with pytest.raises(PurgeError, match=problem):
        parse_purge(args)


MATCHES = [
    # purge, (host, target, tags) of the entry, matched?
    (Purge("url", target="/about"), ("a.com", "/about", ()), True),
    (Purge("url", target="/about"), ("b.com", "/about", ()), True),  # a path: every host
    (Purge("url", target="/about"), ("a.com", "/about?x=1", ()), False),  # the query counts
    (Purge("url", target="/about"), ("a.com", "/about/", ()), False),
    (Purge("url", target="/about", host="a.com"), ("a.com", "/about", ()), True),
    (Purge("url", target="/about", host="a.com"), ("b.com", "/about", ()), False),
    (Purge("prefix", target="/blog/"), ("a.com", "/blog/2026/x", ()), True),
    (Purge("prefix", target="/blog/"), ("a.com", "/blog", ()), False),
    (Purge("prefix", target="/blog/", host="b.com"), ("a.com", "/blog/x", ()), False),
    (Purge("prefix", target="", host="a.com"), ("a.com", "/anything?at=all", ()), True),
    (Purge("tag", tag="news"), ("a.com", "/", ("front", "news")), True),
    (Purge("tag", tag="news"), ("a.com", "/", ("newsletter",)), False),
    (Purge("tag", tag="news"), ("a.com", "/news", ()), False),
    # entries whose key leaves part of the request out (keys.py place): any host, any query
    # of the path ("?*"), any target ("*")
    (Purge("url", target="/about", host="a.com"), ("*", "/about", ()), True),
    (Purge("url", target="/about?x=1"), ("a.com", "/about?*", ()), True),
    (Purge("url", target="/about"), ("a.com", "/about?*", ()), True),
    (Purge("url", target="/abou"), ("a.com", "/about?*", ()), False),
    (Purge("url", target="/about/"), ("a.com", "/about?*", ()), False),
    (Purge("url", target="/x", host="b.com"), ("*", "*", ()), True),
    (Purge("prefix", target="/ab"), ("a.com", "/about?*", ()), True),
    (Purge("prefix", target="/about?x"), ("a.com", "/about?*", ()), True),  # it answers ?xy
    (Purge("prefix", target="/about/"), ("a.com", "/about?*", ()), False),
    (Purge("prefix", target="/b"), ("a.com", "/about?*", ()), False),
    (Purge("prefix", target="/b"), ("a.com", "*", ()), True),
    (Purge("prefix", target="/b", host="b.com"), ("a.com", "*", ()), False),
]


@pytest.mark.parametrize(("purge", "place", "matched"), MATCHES)
def test_which_entries_a_purge_matches(
    purge: Purge, place: tuple[str, str, tuple[str, ...]], matched: bool
) -> None:
    assert purge.matches(*place) is matched


@pytest.mark.parametrize(
    ("headers", "tags"),
    [
        ((("Cache-Tag", "a, b,c"),), ("a", "b", "c")),
        ((("Surrogate-Key", "a  b\tc"),), ("a", "b", "c")),
        ((("xkey", "a"), ("XKey", "b a")), ("a", "b")),  # repeated lines, each tag once
        ((("Cache-Tag", " , "),), ()),
        ((("X-Tags", "a"), ("Content-Type", "text/html")), ()),
    ],
)
def test_a_responses_tags(headers: tuple[tuple[str, str], ...], tags: tuple[str, ...]) -> None:
    assert response_tags(headers, TAG_HEADERS) == tags


@pytest.mark.parametrize(
    ("token", "header", "ok"),
    [
        ("", None, True),  # no token: loopback or a unix socket only (config.py)
        ("s3cret-token-0123", "Bearer s3cret-token-0123", True),
        ("s3cret-token-0123", "bearer s3cret-token-0123", True),  # the scheme is caseless
        ("s3cret-token-0123", None, False),
        ("s3cret-token-0123", "Bearer s3cret-token-012", False),
        ("s3cret-token-0123", "Basic s3cret-token-0123", False),
        ("s3cret-token-0123", "s3cret-token-0123", False),
        ("s3cret-token-0123", "Bearer \udcff", False),  # a byte not UTF-8 (aiohttp's escape)
    ],
)
def test_the_admin_token(token: str, header: str | None, ok: bool) -> None:
    assert authorized(token, header) is ok


# --- the memory store's purge --------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def page(
    clock: Clock, host: str, target: str, tags: tuple[str, ...] = (), ttl: float = 60.0
) -> CachedResponse:
    body = f"{host}{target}".encode()
    return CachedResponse(
        200, "OK", (), body, clock.now, clock.now + ttl, host=host, target=target, tags=tags
    )


def filled(clock: Clock, items: int = 100) -> MemoryStore:
    store = MemoryStore(CacheSettings("c", items=items), clock)
    pages = {
        "a/": page(clock, "a.com", "/", ("front",)),
        "a/about": page(clock, "a.com", "/about"),
        "a/about gzip": page(clock, "a.com", "/about"),  # another encoding's entry
        "b/about": page(clock, "b.com", "/about"),
        "a/blog/1": page(clock, "a.com", "/blog/1", ("news", "post-1")),
        "a/blog/2": page(clock, "a.com", "/blog/2", ("news",)),
        "a/blogroll": page(clock, "a.com", "/blogroll"),
    }
    for key, entry in pages.items():
        assert run(store.put(key, entry))
    return store


def left(store: MemoryStore) -> set[str]:
    keys = ("a/", "a/about", "a/about gzip", "b/about", "a/blog/1", "a/blog/2", "a/blogroll")
    return {key for key in keys if store.get_now(key) is not None}


EVERYTHING = {"a/", "a/about", "a/about gzip", "b/about", "a/blog/1", "a/blog/2", "a/blogroll"}
PURGED = [
    ({"url": "/about"}, {"a/about", "a/about gzip", "b/about"}),
    ({"url": "http://a.com/about"}, {"a/about", "a/about gzip"}),
    ({"url": "http://c.com/about"}, set()),
    ({"prefix": "/blog/"}, {"a/blog/1", "a/blog/2"}),
    ({"prefix": "/blog"}, {"a/blog/1", "a/blog/2", "a/blogroll"}),
    ({"prefix": "http://b.com"}, {"b/about"}),
    ({"tag": "news"}, {"a/blog/1", "a/blog/2"}),
    ({"tag": "post-1"}, {"a/blog/1"}),
    ({"tag": "nothing"}, set()),
]


@pytest.mark.parametrize(("args", "gone"), PURGED)
def test_a_purge_removes_exactly_what_it_matches(args: dict[str, str], gone: set[str]) -> None:
    store = filled(Clock())
    removed = run(store.purge(parse_purge(args)))
    assert (removed, left(store)) == (len(gone), EVERYTHING - gone)


def test_a_purge_removes_a_vary_marker_and_its_variants() -> None:
    clock = Clock()
    store = MemoryStore(CacheSettings("c"), clock)
    variant = replace(page(clock, "a.com", "/i18n", ("lang",)), vary=("accept-language",))
    run(store.put("a/i18n", vary_marker(("accept-language",), variant)))
    run(store.put("a/i18n|en", variant))
    run(store.put("a/i18n|fr", variant))
    assert run(store.purge(parse_purge({"url": "/i18n"}))) == 3
    assert run(store.purge(parse_purge({"tag": "lang"}))) == 0  # nothing left to find


def test_a_purge_skips_what_expired_and_what_was_stored_again_elsewhere() -> None:
    clock = Clock()
    store = MemoryStore(CacheSettings("c"), clock)
    run(store.put("k1", page(clock, "a.com", "/old", ("t",), ttl=5)))
    run(store.put("k2", page(clock, "a.com", "/x", ("t",))))
    run(store.put("k2", page(clock, "a.com", "/y", ("u",))))  # the same key, now another page
    clock.now += 10  # k1 expired
    assert run(store.purge(parse_purge({"tag": "t"}))) == 0
    assert run(store.purge(parse_purge({"url": "/x"}))) == 0
    assert store.get_now("k2") is not None
    assert run(store.purge(parse_purge({"url": "/y"}))) == 1


def test_looking_at_candidates_leaves_the_lru_order_alone() -> None:
    """A purge that looks at an entry and keeps it (another host) does not make it the most
    recently used: the next eviction still takes the least recently used."""
    clock = Clock()
    store = MemoryStore(CacheSettings("c", items=2), clock)
    run(store.put("old", page(clock, "b.com", "/p")))
    run(store.put("new", page(clock, "c.com", "/other")))
    run(store.purge(parse_purge({"url": "http://a.com/p"})))  # looks at "old", keeps it
    run(store.put("third", page(clock, "c.com", "/third")))
    assert store.get_now("old") is None and store.get_now("new") is not None


def test_the_index_stays_bounded_as_entries_come_and_go() -> None:
    """20 000 pages through a cache of 100: the index holds a bounded multiple of the live
    entries (evicted ones are dropped at each rebuild), and still finds every live one."""
    clock = Clock()
    store = MemoryStore(CacheSettings("c", items=100), clock)
    for n in range(20_000):
        run(store.put(f"k{n}", page(clock, "a.com", f"/p{n}", (f"t{n % 7}",))))
    index = store._index
    indexed = sum(map(len, index.by_target.values()))
    assert indexed <= 3 * 100 + REBUILD_FLOOR + 1
    assert len(index.by_target) <= 3 * 100 + REBUILD_FLOOR + 1
    live_tagged = sum(1 for n in range(20_000) if n % 7 == 3 and store.get_now(f"k{n}"))
    assert run(store.purge(parse_purge({"tag": "t3"}))) == live_tagged > 0


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 30),  # key
            st.sampled_from(["a.com", "b.com"]),
            st.sampled_from(["/", "/a", "/a/b", "/ab", "/b?x=1"]),
            st.lists(st.sampled_from(["t1", "t2", "t3"]), max_size=2, unique=True),
        ),
        max_size=60,
    ),
    st.sampled_from(
        [
            {"url": "/a"},
            {"url": "http://a.com/a"},
            {"prefix": "/a"},
            {"prefix": "http://b.com/"},
            {"tag": "t1"},
            {"tag": "t3"},
        ]
    ),
    st.integers(3, 40),
)
def test_a_purge_through_the_index_removes_what_a_full_scan_would(
    puts: list[tuple[int, str, str, list[str]]], args: dict[str, str], items: int
) -> None:
    clock = Clock()
    store = MemoryStore(CacheSettings("c", items=items), clock)
    for key, host, target, tags in puts:
        run(store.put(f"k{key}", page(clock, host, target, tuple(tags))))
    purge = parse_purge(args)
    live = {f"k{k}": store.get_now(f"k{k}") for k in range(31)}
    expected = {
        key
        for key, entry in live.items()
        if entry is not None and purge.matches(entry.host, entry.target, entry.tags)
    }
    removed = run(store.purge(purge))
    after = {key for key in live if store.get_now(key) is not None}
    present = {key for key, entry in live.items() if entry is not None}
    assert removed == len(expected)
    assert after == present - expected


def test_an_entry_that_expires_during_a_purge_is_removed_not_an_error() -> None:
    """TLRUCache reads the clock again when it deletes: an entry live when the purge looked
    and expired when it deletes is gone all the same, and not counted."""
    clock = [0.0, 0.0]  # now, and how far each reading moves it

    def ticking() -> float:
        clock[0] += clock[1]
        return clock[0]

    store = MemoryStore(CacheSettings("default"), ticking)
    entry = CachedResponse(200, "OK", (), b"x", 0.0, 15.0, host="h", target="/a")
    assert run(store.put("k", entry))
    clock[1] = 10.0  # the purge's look at the entry sees 10, its delete 20
    assert run(store.purge(Purge("url", target="/a"))) == 0
    assert store.stats().items == 0
