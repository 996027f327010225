"""The example site (examples/flask-app: Flask-Login, Flask-WTF's CSRFProtect, flashed messages)
under gunicorn, behind sidecache's embedded default rules (`sidecache --upstream URL`, no
config), visited by browsers: one cookie jar each, redirects followed, every form posted with the
CSRF token its page carried.

What reached the app is read from gunicorn's own access log (tests/e2e/browsing.py). The login
and message tests also run against gunicorn directly (`via="app"`): the control that shows the
site itself works, so a failure through sidecache is sidecache's.
"""

from __future__ import annotations

import base64
import json
import re
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from browsing import Browser, OpenBrowser, Page, Site, gunicorn_site, open_browsers
from sidecache_e2e import Sidecache

pytest.importorskip("flask_login", reason="the example app needs flask-login (test extras)")
pytest.importorskip("flask_wtf", reason="the example app needs flask-wtf (test extras)")

APP_DIR = Path(__file__).resolve().parents[2] / "examples" / "flask-app"
NAMES = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi")  # the app's users
ANY_NAME = re.compile(r"\b(?:" + "|".join(NAMES) + r")\b")
MESSAGES = (
    "Please log in to access this page.",
    "Bad credentials",
    "You have been logged out.",
    "Thanks, your message was sent.",
)
CACHED_PAGES = ("/", "/about", "/items?page=1", "/items?page=2", "/items?page=3")
ANALYTICS = {"_ga": "GA1.2.3"}  # a cookie the app never reads, set before the first request


# --------------------------------------------------------------------------- the app


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    """The example app under gunicorn (one sync worker), its access log in a file."""
    async with gunicorn_site(APP_DIR, "app:app", tmp_path, "/about") as found:
        yield found


async def front(via: str, site: Site, start_sidecache: Callable[..., Awaitable[Sidecache]]) -> str:
    """The base URL visitors use: sidecache on its embedded defaults (no config, only
    --upstream), or the app itself."""
    if via == "app":
        return site.url
    proxy = await start_sidecache(upstream=site.url)
    return proxy.base_url


# --------------------------------------------------------------------------- browsers


@pytest.fixture
async def browsers() -> AsyncIterator[OpenBrowser]:
    """browsers(base, **cookies): a new visitor, with these cookies set before any request."""
    async with open_browsers("csrf_token") as open_browser:
        yield open_browser


def session_payload(browser: Browser) -> dict[str, object] | None:
    """The Flask session a browser holds, read without the secret (as sidecache does)."""
    value = browser.cookie("session")
    if not value:
        return None
    data = value.lstrip(".").split(".", 1)[0]
    raw = base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
    payload = json.loads(zlib.decompress(raw) if value.startswith(".") else raw)
    assert isinstance(payload, dict)
    return payload


async def log_in(browser: Browser, name: str, *, remember: bool = False) -> list[Page]:
    """Open /login, post the form; the POST's response first, then the redirects, the landing
    page last. Asserts the POST was accepted (302)."""
    form = await browser.get("/login")
    fields = {"name": name, "password": "secret"}
    if remember:
        fields["remember"] = "y"  # a ticked checkbox; an unticked one is not sent at all
    chain = await browser.submit(form, fields)
    assert chain[0].status == 302, f"{name}'s login: {chain[0].describe()}\n{chain[0].text}"
    return chain


def assert_anonymous(page: Page) -> None:
    """A page as any anonymous visitor without messages of their own may see it."""
    assert page.status == 200, page.describe()
    assert page.greeting == "visitor", f"{page.describe()} greets {page.greeting!r}"
    assert page.messages == [], f"{page.describe()} shows {page.messages}"
    assert not ANY_NAME.search(page.text), f"{page.describe()} names a user:\n{page.text}"
    assert not any(message in page.text for message in MESSAGES), page.text


# --------------------------------------------------------------------------- the tests


@pytest.mark.parametrize("via", ["sidecache", "app"])
async def test_every_kind_of_visitor_can_log_in_and_send_a_form(
    via, site, start_sidecache, browsers
):
    """Forms work for returning visitors: two holding a session cookie (from /private: one
    logs in through the form it was sent to, one opens /login), one holding only an analytics
    cookie, and a brand-new one each get a login form whose CSRF token matches their own
    session, so their POST is accepted (302) and their name is on /; visitors with a session
    (anonymous, and logged in) can send the contact form and see the thanks, once."""
    base = await front(via, site, start_sidecache)

    carol = browsers(base)  # opens /private: sent to the form with a message and a session
    chain = await carol.open("/private")
    assert [p.status for p in chain] == [302, 200], [p.describe() for p in chain]
    form = chain[-1]
    assert form.target == "/login?next=%2Fprivate"
    assert form.messages == ["Please log in to access this page."], form.describe()
    assert "session" in carol.cookie_names()
    chain = await carol.submit(form, {"name": "carol", "password": "secret"})
    assert chain[0].status == 302, f"{chain[0].describe()}\n{chain[0].text}"
    assert chain[-1].target == "/private", chain[-1].describe()
    assert "Private page of carol" in chain[-1].text
    assert (await carol.get("/")).greeting == "carol"

    bob = browsers(base)  # a session from /private too, then the first to open plain /login
    assert (await bob.open("/private"))[-1].messages == ["Please log in to access this page."]
    assert "session" in bob.cookie_names()
    await log_in(bob, "bob")
    assert (await bob.get("/")).greeting == "bob"

    dave = browsers(base, **ANALYTICS)  # only an analytics cookie
    await log_in(dave, "dave")
    assert (await dave.get("/")).greeting == "dave"

    erin = browsers(base)  # brand new: no cookie at all
    await log_in(erin, "erin")
    assert (await erin.get("/")).greeting == "erin"

    reader = browsers(base)  # anonymous, with a session from having seen the login form
    assert_anonymous(await reader.get("/login"))
    assert "session" in reader.cookie_names()
    for sender, name in ((reader, "visitor"), (dave, "dave")):
        form = await sender.get("/contact")
        chain = await sender.submit(form, {"email": "a@example.org", "message": "Hello"})
        assert chain[0].status == 302, f"{name}: {chain[0].describe()}\n{chain[0].text}"
        landing = chain[-1]
        assert landing.target == "/", landing.describe()
        assert landing.messages == ["Thanks, your message was sent."], landing.describe()
        assert landing.greeting == name
        assert (await sender.get("/")).messages == []  # shown once


@pytest.mark.parametrize("via", ["sidecache", "app"])
async def test_messages_reach_their_owner_once_and_nobody_else(
    via, site, start_sidecache, browsers
):
    """Flashed messages: "Please log in to access this page." and "Bad credentials" are shown
    to the visitor they were flashed for, "You have been logged out." exactly once on the page
    its owner lands on and not on the next one; a bystander browsing /, /about and /login in
    between never sees a message nor a name."""
    base = await front(via, site, start_sidecache)
    bystander = browsers(base)
    seen: list[Page] = []

    async def bystander_browses() -> None:
        for target in ("/", "/about", "/login"):
            seen.append(await bystander.get(target))

    await bystander_browses()
    anonymous = browsers(base)
    chain = await anonymous.open("/private")
    assert chain[-1].messages == ["Please log in to access this page."], chain[-1].describe()
    assert chain[-1].greeting == "visitor"
    await bystander_browses()

    frank = browsers(base)
    form = await frank.get("/login")
    await bystander_browses()
    chain = await frank.submit(form, {"name": "frank", "password": "wrong"})
    assert chain[0].status == 302, chain[0].describe()
    assert chain[-1].target == "/login", chain[-1].describe()
    assert chain[-1].messages == ["Bad credentials"], chain[-1].describe()
    await bystander_browses()
    again = await frank.get("/login")
    assert "Bad credentials" not in again.text, again.describe()

    await log_in(frank, "frank", remember=True)
    assert (await frank.get("/about")).greeting == "frank"
    await bystander_browses()
    logout = await frank.request("GET", "/logout")
    assert (logout.status, logout.location) == (302, "/"), logout.describe()
    await bystander_browses()  # the message waits in frank's session now
    landing = (await frank.follow(logout))[-1]
    assert landing.target == "/", landing.describe()
    assert landing.text.count("You have been logged out.") == 1, landing.describe()
    assert landing.greeting == "visitor"  # the remember-me cookie went too
    assert "remember_token" not in frank.cookie_names()
    await bystander_browses()
    for target in ("/", "/about"):
        after = await frank.get(target)
        assert "You have been logged out." not in after.text, after.describe()
        assert_anonymous(after)

    assert len(seen) == 7 * 3  # seven rounds
    for page in seen:
        assert_anonymous(page)


async def test_logged_in_visitors_always_get_their_own_pages(site, start_sidecache, browsers):
    """Logged-in visitors, session-only (remember-me unticked) and remember-me (also after the
    browser dropped its session cookie), are passed to the app on every page, cached ones
    included, and see their own name; anonymous visitors, cookie-less or with an analytics
    cookie, meanwhile never see a name or a message."""
    base = await front("sidecache", site, start_sidecache)
    pages = ("/", "/about", "/items?page=2")
    warm = browsers(base)
    for target in pages:
        assert_anonymous(await warm.get(target))
        page = await warm.get(target)
        assert page.x_cache == "HIT", page.describe()  # an anonymous copy is stored

    grace = browsers(base)
    await log_in(grace, "grace")
    assert "remember_token" not in grace.cookie_names()
    heidi = browsers(base)
    await log_in(heidi, "heidi", remember=True)
    assert "remember_token" in heidi.cookie_names()

    for visitor, name in ((grace, "grace"), (heidi, "heidi")):
        for target in pages:
            page = await visitor.get(target)
            assert page.greeting == name, f"{name} got {page.describe()}"
            assert page.x_cache == "PASS", page.describe()
            assert 'detail="authenticated"' in page.cache_status, page.describe()
            for anonymous in (browsers(base), browsers(base, **ANALYTICS)):
                assert_anonymous(await anonymous.get(target))

    heidi.jar.clear(lambda morsel: morsel.key == "session")  # a browser restart: remember-me
    assert heidi.cookie_names() == {"remember_token"}
    for target in pages:
        page = await heidi.get(target)
        assert (page.greeting, page.x_cache) == ("heidi", "PASS"), page.describe()


async def warm_up(browsers: OpenBrowser, base: str) -> None:
    """One cookie-less GET of each cached page: each a MISS, stored, setting no cookie."""
    warm = browsers(base)
    for target in CACHED_PAGES:
        page = await warm.get(target)
        assert_anonymous(page)
        assert page.x_cache == "MISS" and "stored" in page.cache_status, page.describe()
    assert warm.cookie_names() == set()


async def assert_answered_from_cache(site: Site, visitors: list[Browser], most: int) -> None:
    """Each visitor GETs every cached page: all HITs, anonymous, the app reached `most` times."""
    before = len(await site.reached())
    answers = [await visitor.get(target) for visitor in visitors for target in CACHED_PAGES]
    reached = (await site.reached())[before:]
    assert len(reached) <= most, reached
    for page in answers:
        assert_anonymous(page)
    assert [page.x_cache for page in answers] == ["HIT"] * len(answers), [
        page.describe() for page in answers
    ]


async def test_anonymous_pages_are_answered_from_cache(site, start_sidecache, browsers):
    """Caching pays: once warm, 50 cookie-less GETs spread over /, /about and /items?page=1..3
    reach the app at most 5 times."""
    base = await front("sidecache", site, start_sidecache)
    await warm_up(browsers, base)
    before = len(await site.reached())
    anonymous = browsers(base)
    answers = [await anonymous.get(CACHED_PAGES[i % len(CACHED_PAGES)]) for i in range(50)]
    reached = (await site.reached())[before:]
    assert len(reached) <= 5, reached
    for page in answers:
        assert_anonymous(page)
    assert sum(page.x_cache == "HIT" for page in answers) >= 45, [p.x_cache for p in answers]


async def test_anonymous_visitors_with_cookies_are_answered_from_cache(
    site, start_sidecache, browsers
):
    """Cookies alone do not bypass the cache: an analytics cookie, or a Flask session holding
    only the CSRF secret (the visitor saw the login form): 10 GETs of cached pages reach the
    app at most twice, each an X-Cache HIT."""
    base = await front("sidecache", site, start_sidecache)
    await warm_up(browsers, base)
    analytics = browsers(base, **ANALYTICS)
    reader = browsers(base)
    assert_anonymous(await reader.get("/login"))
    assert set(session_payload(reader) or {}) == {"csrf_token"}, session_payload(reader)
    await assert_answered_from_cache(site, [analytics, reader], most=2)


async def test_visitors_whose_message_was_shown_are_answered_from_cache_again(
    site, start_sidecache, browsers
):
    """A message passes its owner to the app only until it is shown: a visitor sent from
    /private to the login form, and one who logged out, once they have seen their message,
    hold a session with no user and no message, and their 10 GETs of cached pages reach the
    app at most twice, each an X-Cache HIT."""
    base = await front("sidecache", site, start_sidecache)
    former = browsers(base)
    chain = await former.open("/private")
    assert chain[-1].messages == ["Please log in to access this page."], chain[-1].describe()
    left = browsers(base)
    await log_in(left, "alice", remember=True)
    landing = await left.get("/logout")
    assert landing.messages == ["You have been logged out."], landing.describe()
    for visitor in (former, left):
        payload = session_payload(visitor)
        assert payload is not None and "csrf_token" in payload, payload
        assert "_user_id" not in payload and "_flashes" not in payload, payload
    assert "remember_token" not in left.cookie_names()
    # Warmed only now: the login POST's redirect to / dropped / from the cache (RFC 9111 §4.4).
    await warm_up(browsers, base)
    await assert_answered_from_cache(site, [former, left], most=2)


async def test_login_form_is_passed_with_the_visitors_own_cookies(site, start_sidecache, browsers):
    """Hit-for-pass as a client sees it: the app's answer to the first (cookie-less) /login
    sets a cookie, so later visitors with cookies get their own request passed (X-Cache PASS,
    Cache-Status detail="hit-for-pass"; the app gets that one request, no cookie-less fill
    before it) and a form their POST is accepted with."""
    base = await front("sidecache", site, start_sidecache)
    first = browsers(base)
    page = await first.get("/login")
    assert page.x_cache == "MISS", page.describe()
    assert 'detail="set-cookie"' in page.cache_status, page.describe()
    assert "session" in first.cookie_names()  # the fill was its own request: its session

    analytics = browsers(base, **ANALYTICS)
    with_session = browsers(base)
    assert (await with_session.get("/contact")).status == 200
    assert "session" in with_session.cookie_names()
    for visitor, name in ((analytics, "alice"), (with_session, "bob"), (first, "carol")):
        before = len(await site.reached())
        form = await visitor.get("/login")
        assert (await site.reached())[before:] == ["GET /login"]
        assert form.x_cache == "PASS", f"{name}: {form.describe()}"
        assert 'detail="hit-for-pass"' in form.cache_status, f"{name}: {form.describe()}"
        chain = await visitor.submit(form, {"name": name, "password": "secret"})
        assert chain[0].status == 302, f"{name}: {chain[0].describe()}\n{chain[0].text}"
        assert (await visitor.get("/")).greeting == name
