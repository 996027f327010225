"""The example Django site (examples/django-app: auth, database sessions, messages in their
cookie, CSRF forms) under gunicorn, behind sidecache with config/django.toml
(`[identity] preset = "django"`), visited by browsers with a cookie jar each (tests/e2e/browsing.py;
what reached the app is read from gunicorn's access log). The login and message tests also run
against gunicorn directly (`via="app"`), the control that shows the site itself works.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from browsing import Browser, OpenBrowser, Page, Site, gunicorn_site, open_browsers
from sidecache_e2e import Sidecache

pytest.importorskip("django", reason="the example site needs Django (test extras)")

ROOT = Path(__file__).resolve().parents[2]
APP_DIR = ROOT / "examples" / "django-app"
CONFIG = (ROOT / "config" / "django.toml").read_text(encoding="utf-8")
ANY_NAME = re.compile(r"\b(?:alice|bob)\b")
MESSAGES = ("You have been logged out.", "Thanks, your message was sent.")
ANALYTICS = {"_ga": "GA1.2.3"}
CACHED_PAGES = ("/", "/about/")


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    """The example site under gunicorn (one sync worker), its database in tmp_path."""
    env = {"DJANGO_DB": str(tmp_path / "db.sqlite3")}
    async with gunicorn_site(APP_DIR, "site_app:application", tmp_path, "/about/", env) as found:
        yield found


@pytest.fixture
async def browsers() -> AsyncIterator[OpenBrowser]:
    async with open_browsers("csrfmiddlewaretoken") as open_browser:
        yield open_browser


async def front(via: str, site: Site, start_sidecache: Callable[..., Awaitable[Sidecache]]) -> str:
    """The base URL visitors use: sidecache with config/django.toml, or the app itself."""
    if via == "app":
        return site.url
    proxy = await start_sidecache(upstream=site.url, config=CONFIG)
    return proxy.base_url


async def log_in(browser: Browser, name: str) -> list[Page]:
    """Open /login/ and post the form (alice and bob's password is "secret"); asserts the POST
    was accepted (302); the POST's response first, the landing page last."""
    form = await browser.get("/login/")
    assert form.status == 200, form.describe()
    chain = await browser.submit(form, {"username": name, "password": "secret"})
    assert chain[0].status == 302, f"{name}'s login: {chain[0].describe()}\n{chain[0].text}"
    return chain


async def log_out(browser: Browser) -> Page:
    """POST /logout/ with the CSRF token of the page in hand (Django 5: POST only); the page
    the visitor lands on."""
    page = await browser.get("/about/")
    return (await browser.submit(page, {}, action="/logout/"))[-1]


def assert_anonymous(page: Page) -> None:
    """A page as any anonymous visitor without messages of their own may see it."""
    assert page.status == 200, page.describe()
    assert page.greeting == "visitor", f"{page.describe()} greets {page.greeting!r}"
    assert page.messages == [], f"{page.describe()} shows {page.messages}"
    assert not ANY_NAME.search(page.text), f"{page.describe()} names a user:\n{page.text}"


@pytest.mark.parametrize("via", ["sidecache", "app"])
async def test_every_kind_of_visitor_can_log_in_and_send_a_form(
    via, site, start_sidecache, browsers
):
    """A brand-new visitor, one with only an analytics cookie and one who already holds a
    csrftoken from an earlier form each get a login form whose token matches their own
    cookie: the POST is accepted (302) and their name is on /. An anonymous visitor with a
    csrftoken sends the contact form and sees the thanks once, on the page they land on."""
    base = await front(via, site, start_sidecache)

    new = browsers(base)
    await log_in(new, "alice")
    assert (await new.get("/")).greeting == "alice"

    analytics = browsers(base, **ANALYTICS)
    await log_in(analytics, "bob")
    assert (await analytics.get("/")).greeting == "bob"

    returning = browsers(base)
    contact = await returning.get("/contact/")
    assert returning.cookie("csrftoken"), contact.describe()
    chain = await returning.submit(contact, {"email": "a@example.org", "message": "Hello"})
    assert chain[0].status == 302, f"{chain[0].describe()}\n{chain[0].text}"
    landing = chain[-1]
    assert (landing.target, landing.greeting) == ("/", "visitor"), landing.describe()
    assert landing.messages == ["Thanks, your message was sent."], landing.describe()
    assert (await returning.get("/")).messages == []  # shown once
    await log_in(returning, "alice")
    private = await returning.get("/private/")
    assert "Private page of alice" in private.text, private.describe()


@pytest.mark.parametrize("via", ["sidecache", "app"])
async def test_the_logout_message_reaches_its_owner_once_and_nobody_else(
    via, site, start_sidecache, browsers
):
    """ "You have been logged out." is shown once, to its owner, on the page they land on; a
    bystander browsing / and /about/ meanwhile never sees a message or a name."""
    base = await front(via, site, start_sidecache)
    bystander = browsers(base)
    seen: list[Page] = []

    async def bystander_browses() -> None:
        seen.extend([await bystander.get(target) for target in CACHED_PAGES])

    alice = browsers(base)
    await log_in(alice, "alice")
    await bystander_browses()
    landing = await log_out(alice)
    await bystander_browses()
    assert landing.target == "/", landing.describe()
    assert landing.messages == ["You have been logged out."], landing.describe()
    assert landing.greeting == "visitor"
    assert alice.cookie("sessionid") is None
    for target in CACHED_PAGES:
        after = await alice.get(target)
        assert_anonymous(after)
    await bystander_browses()
    assert len(seen) == 3 * len(CACHED_PAGES)
    for page in seen:
        assert_anonymous(page)
        assert not any(message in page.text for message in MESSAGES), page.describe()


async def test_logged_in_visitors_always_get_their_own_pages(site, start_sidecache, browsers):
    """A `sessionid` means logged in: every page, cached ones included, is passed
    (detail="authenticated") and greets them; /private/ works; anonymous visitors meanwhile
    get the cached anonymous page."""
    base = await front("sidecache", site, start_sidecache)
    alice, bob = browsers(base), browsers(base, **ANALYTICS)
    await log_in(alice, "alice")
    await log_in(bob, "bob")
    # Warmed after the logins: a login POST's redirect to / drops / (RFC 9111 §4.4).
    warm = browsers(base)
    for target in CACHED_PAGES:
        await warm.get(target)
    for visitor, name in ((alice, "alice"), (bob, "bob")):
        for target in (*CACHED_PAGES, "/private/"):
            page = await visitor.get(target)
            assert page.greeting == name, f"{name} got {page.describe()}"
            assert page.x_cache == "PASS", page.describe()
            assert 'detail="authenticated"' in page.cache_status, page.describe()
            anonymous = await browsers(base).get(target)
            if target != "/private/":
                assert_anonymous(anonymous)
                assert anonymous.x_cache == "HIT", anonymous.describe()
            else:  # sent to the login form, whoever asked before
                assert anonymous.target == "/login/?next=/private/", anonymous.describe()


async def test_anonymous_pages_are_answered_from_cache(site, start_sidecache, browsers):
    """Caching pays: once warm, 30 cookie-less GETs of / and /about/ reach the app at most
    twice; a visitor holding csrftoken and _ga (anonymous) gets HITs: 10 GETs reach the app at
    most twice."""
    base = await front("sidecache", site, start_sidecache)
    warm = browsers(base)
    for target in CACHED_PAGES:
        page = await warm.get(target)
        assert_anonymous(page)
        assert page.x_cache == "MISS", page.describe()
        assert 'detail="' not in page.cache_status, page.describe()  # nothing against storing

    before = len(await site.reached())
    anonymous = browsers(base)
    answers = [await anonymous.get(CACHED_PAGES[i % 2]) for i in range(30)]
    assert len((await site.reached())[before:]) <= 2
    assert sum(page.x_cache == "HIT" for page in answers) >= 28, [p.x_cache for p in answers]

    reader = browsers(base, **ANALYTICS)
    form = await reader.get("/contact/")  # a form: its csrftoken is set, and it is passed
    assert form.x_cache in ("MISS", "PASS") and reader.cookie("csrftoken"), form.describe()
    before = len(await site.reached())
    answers = [await reader.get(CACHED_PAGES[i % 2]) for i in range(10)]
    assert len((await site.reached())[before:]) <= 2
    for page in answers:
        assert_anonymous(page)
    assert [page.x_cache for page in answers] == ["HIT"] * 10, [p.describe() for p in answers]


async def test_form_pages_are_passed_with_the_visitors_own_cookies(site, start_sidecache, browsers):
    """The login form's first (cookie-less) fill sets csrftoken and says private, no-store:
    a visitor with cookies then gets their own request passed (detail="hit-for-pass"), the
    app gets that one request, and the form's token works with their cookie."""
    base = await front("sidecache", site, start_sidecache)
    first = await browsers(base).get("/login/")
    assert first.x_cache == "MISS", first.describe()
    visitor = browsers(base, **ANALYTICS)
    await visitor.get("/contact/")  # holds a csrftoken now
    token = visitor.cookie("csrftoken")
    before = len(await site.reached())
    form = await visitor.get("/login/")
    assert (await site.reached())[before:] == ["GET /login/"]
    assert form.x_cache == "PASS", form.describe()
    assert 'detail="hit-for-pass"' in form.cache_status, form.describe()
    assert visitor.cookie("csrftoken") == token  # the form is for the secret they hold
    chain = await visitor.submit(form, {"username": "bob", "password": "secret"})
    assert chain[0].status == 302, f"{chain[0].describe()}\n{chain[0].text}"
    assert (await visitor.get("/")).greeting == "bob"


async def test_a_visitor_with_cookies_may_be_the_first_to_ask_for_a_form(
    site, start_sidecache, browsers
):
    """Nobody has asked for /login/ yet when a visitor holding csrftoken and _ga does: the
    cookie-less fill shows the page is made per visitor (Set-Cookie, private, no-store), so it
    is discarded and their own request is passed (detail="hit-for-pass"): the form is for the
    secret they hold, their csrftoken stays, and the login is accepted."""
    base = await front("sidecache", site, start_sidecache)
    visitor = browsers(base, **ANALYTICS)
    await visitor.get("/contact/")
    token = visitor.cookie("csrftoken")
    assert token, "no csrftoken from /contact/"
    before = len(await site.reached())
    form = await visitor.get("/login/")
    # The fill, then their own request (one extra app request per key per hit_for_pass).
    assert (await site.reached())[before:] == ["GET /login/", "GET /login/"]
    assert form.x_cache == "PASS", form.describe()
    assert 'detail="hit-for-pass"' in form.cache_status, form.describe()
    assert visitor.cookie("csrftoken") == token, "the fill's csrftoken reached the visitor"
    chain = await visitor.submit(form, {"username": "alice", "password": "secret"})
    assert chain[0].status == 302, f"{chain[0].describe()}\n{chain[0].text}"
    assert (await visitor.get("/")).greeting == "alice"
