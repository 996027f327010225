"""A small Django site (auth, sessions, messages, CSRF forms) for trying sidecache in front of.

Every page greets the visitor by name when logged in and shows their pending messages, and every
form carries a CSRF token tied to the visitor's `csrftoken` cookie, so a cache that served one
visitor's page to another, or a stale form, would show at once. One module holds the settings,
views, templates and URLs. Run it with gunicorn:

    gunicorn --chdir examples/django-app -b 127.0.0.1:5000 -w 1 site_app:application

and sidecache in front with `[identity] preset = "django"` (config/django.toml). The sqlite
database (`DJANGO_DB`, default db.sqlite3 here) is migrated at start (by every worker, so keep
to one) and holds the users alice and bob, both with the password "secret".
"""

from __future__ import annotations

import os
from pathlib import Path

import django
from django.conf import settings

HERE = Path(__file__).resolve().parent

# The templates, inline (a locmem loader). The layout has a form only for logged-in visitors:
# rendering {% csrf_token %} sets the csrftoken cookie, and a page that sets a cookie is not
# cached for anonymous visitors.
LAYOUT = """<!doctype html>
<html lang="en">
<title>{{ title }}</title>
<nav><a href="/">Home</a> <a href="/about/">About</a> <a href="/contact/">Contact</a>
<a href="/private/">Private</a>
{% if user.is_authenticated %}
<form method="post" action="/logout/">{% csrf_token %}<button>Log out</button></form>
{% else %}<a href="/login/">Log in</a>{% endif %}</nav>
<p class="greeting">Hello, {% if user.is_authenticated %}{{ user.username }}{% else %}visitor\
{% endif %}</p>
{% if messages %}<ul class="flashes">{% for message in messages %}<li>{{ message }}</li>\
{% endfor %}</ul>{% endif %}
<h1>{{ title }}</h1>
{% block content %}{% endblock %}
</html>
"""
FORM = """{% extends "layout.html" %}{% block content %}
<form method="post">{% csrf_token %}{{ form.as_p }}<button>Send</button></form>
{% endblock %}"""
TEXT = """{% extends "layout.html" %}{% block content %}<p>{{ text }}</p>{% endblock %}"""
PAGES = {"layout.html": LAYOUT, "form.html": FORM, "text.html": TEXT}

settings.configure(
    DEBUG=False,
    SECRET_KEY=os.environ.get("SECRET_KEY", "dev only: set SECRET_KEY"),
    ALLOWED_HOSTS=["127.0.0.1", "localhost", "[::1]"],
    ROOT_URLCONF=__name__,
    INSTALLED_APPS=[
        "django.contrib.auth",
        "django.contrib.contenttypes",
        "django.contrib.sessions",
        "django.contrib.messages",
    ],
    MIDDLEWARE=[
        "django.contrib.sessions.middleware.SessionMiddleware",  # the `sessionid` cookie
        "django.middleware.csrf.CsrfViewMiddleware",  # the `csrftoken` cookie
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "django.contrib.messages.middleware.MessageMiddleware",  # the `messages` cookie
    ],
    DATABASES={
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("DJANGO_DB", str(HERE / "db.sqlite3")),
        }
    },
    TEMPLATES=[
        {
            "BACKEND": "django.template.backends.django.DjangoTemplates",
            "OPTIONS": {
                "loaders": [("django.template.loaders.locmem.Loader", PAGES)],  # inline, above
                "context_processors": [
                    "django.template.context_processors.request",
                    "django.contrib.auth.context_processors.auth",
                    "django.contrib.messages.context_processors.messages",
                ],
            },
        }
    ],
    # A quick hash for a demo whose users are made at every start; keep Django's default
    # (PBKDF2 with many iterations) for real passwords.
    PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
    LOGIN_URL="/login/",
    LOGIN_REDIRECT_URL="/",
    LOGOUT_REDIRECT_URL="/",
    DEFAULT_AUTO_FIELD="django.db.models.AutoField",
    USE_TZ=True,
)
django.setup()

from django import forms  # noqa: E402  (Django's modules need the settings above)
from django.contrib import messages  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.contrib.auth import views as auth_views  # noqa: E402
from django.contrib.auth.decorators import login_required  # noqa: E402
from django.contrib.auth.signals import user_logged_out  # noqa: E402
from django.core.handlers.wsgi import WSGIHandler  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.http import HttpRequest, HttpResponse  # noqa: E402
from django.shortcuts import redirect, render  # noqa: E402
from django.urls import path  # noqa: E402


class ContactForm(forms.Form):
    email = forms.EmailField()
    message = forms.CharField(widget=forms.Textarea)


def text_page(request: HttpRequest, title: str, text: str) -> HttpResponse:
    return render(request, "text.html", {"title": title, "text": text})


def home(request: HttpRequest) -> HttpResponse:
    return text_page(request, "Home", "Welcome to the example site.")


def about(request: HttpRequest) -> HttpResponse:
    return text_page(request, "About", "A Django site that sidecache answers for visitors.")


@login_required
def private(request: HttpRequest) -> HttpResponse:
    return text_page(request, "Private", f"Private page of {request.user.get_username()}")


def contact(request: HttpRequest) -> HttpResponse:
    form = ContactForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        messages.success(request, "Thanks, your message was sent.")
        return redirect("/")
    return render(request, "form.html", {"title": "Contact", "form": form})


def say_goodbye(sender: object, request: HttpRequest | None, **kwargs: object) -> None:
    if request is not None:
        messages.info(request, "You have been logged out.")


user_logged_out.connect(say_goodbye)

urlpatterns = [
    path("", home),
    path("about/", about),
    path("private/", private),
    path("contact/", contact),
    path(
        "login/",
        auth_views.LoginView.as_view(template_name="form.html", extra_context={"title": "Log in"}),
    ),
    path("logout/", auth_views.LogoutView.as_view()),  # POST only, as Django 5 has it
]


def prepare() -> None:
    """Create the tables and the demo users when they are missing."""
    call_command("migrate", interactive=False, verbosity=0)
    users = get_user_model()
    for name in ("alice", "bob"):
        if not users.objects.filter(username=name).exists():
            users.objects.create_user(name, password="secret")


prepare()
application = WSGIHandler()
