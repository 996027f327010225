"""A small Flask site with Flask-Login and Flask-WTF: the app sidecache is meant to sit in front of.

Every page greets the visitor by name when logged in and shows their flashed messages, and every
form carries a CSRF token tied to the visitor's session, so a cache that served one visitor's page
to another, or a stale form, would show at once. Run it with gunicorn
(`gunicorn -b 127.0.0.1:5000 app:app`); sidecache's embedded default rules suit it, and
`config/uwsgi-flask.toml` mirrors the original uWSGI rules for it.

Users: alice, bob, carol, dave, erin, frank, grace, heidi; every password is "secret".
"""

from __future__ import annotations

import os

from flask import Flask, abort, flash, redirect, render_template, request, url_for
from flask_login import LoginManager, UserMixin, login_required, login_user, logout_user
from flask_wtf.csrf import CSRFProtect
from jinja2 import DictLoader
from werkzeug.wrappers import Response

app = Flask(__name__)
app.secret_key = os.environ.get("SECRET_KEY", "dev only: set SECRET_KEY")
csrf = CSRFProtect(app)  # every POST must carry the csrf_token of the visitor's own session
login_manager = LoginManager(app)
login_manager.login_view = "login"  # @login_required: flash a message, redirect to /login?next=

USERS = dict.fromkeys(
    ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi"), "secret"
)
ITEMS_PER_PAGE = 5
ITEM_PAGES = 3

app.jinja_loader = DictLoader(
    {
        "layout.html": """<!doctype html>
<html lang="en">
<title>{{ title }}</title>
<nav>
  <a href="/">Home</a> <a href="/about">About</a> <a href="/items?page=1">Items</a>
  <a href="/contact">Contact</a> <a href="/private">Private</a>
  {% if current_user.is_authenticated %}<a href="/logout">Log out</a>
  {% else %}<a href="/login">Log in</a>{% endif %}
</nav>
<p class="greeting">Hello, {{ current_user.id if current_user.is_authenticated else "visitor" }}</p>
{% with messages = get_flashed_messages() %}{% if messages %}
<ul class="flashes">{% for message in messages %}<li>{{ message }}</li>{% endfor %}</ul>
{% endif %}{% endwith %}
<h1>{{ title }}</h1>
{% block content %}{% endblock %}
</html>
""",
        "home.html": """{% extends "layout.html" %}{% block content %}
<p>Welcome to the example site.</p>{% endblock %}""",
        "about.html": """{% extends "layout.html" %}{% block content %}
<p>A Flask-Login and Flask-WTF site that sidecache answers for anonymous visitors.</p>
{% endblock %}""",
        "items.html": """{% extends "layout.html" %}{% block content %}
<ul class="items">{% for item in items %}<li>{{ item }}</li>{% endfor %}</ul>
<p>Page {{ page }} of {{ pages }}
{% if page > 1 %}<a href="/items?page={{ page - 1 }}">previous</a>{% endif %}
{% if page < pages %}<a href="/items?page={{ page + 1 }}">next</a>{% endif %}</p>
{% endblock %}""",
        "login.html": """{% extends "layout.html" %}{% block content %}
<form method="post">
  <input type="hidden" name="csrf_token" value="{{ csrf_token() }}">
  <label>Name <input name="name" required></label>
  <label>Password <input name="password" type="password" required></label>
  <label><input name="remember" type="checkbox" value="y"> Remember me</label>
  <button>Log in</button>
</form>{% endblock %}""",
        "contact.html": """{% extends "layout.html" %}{% block content %}
<form method="post">
  <input type="hidden" name="csrf_token" value="{{ csrf_token() }}">
  <label>Email <input name="email" type="email"></label>
  <label>Message <textarea name="message" required></textarea></label>
  <button>Send</button>
</form>{% endblock %}""",
        "private.html": """{% extends "layout.html" %}{% block content %}
<p>Private page of {{ current_user.id }}</p>{% endblock %}""",
    }
)


class User(UserMixin):
    def __init__(self, name: str) -> None:
        self.id = name


@login_manager.user_loader
def load_user(user_id: str) -> User | None:
    return User(user_id) if user_id in USERS else None


def local_target(target: str | None) -> str:
    """The `next` URL when it is a path on this site, else the home page (no open redirect:
    browsers read `//host` and `/\\host` as another site)."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return "/"
    return target


@app.get("/")
def home() -> str:
    return render_template("home.html", title="Home")


@app.get("/about")
def about() -> str:
    return render_template("about.html", title="About")


@app.get("/items")
def items() -> str:
    page = request.args.get("page", 1, type=int)
    if not 1 <= page <= ITEM_PAGES:
        abort(404)
    first = (page - 1) * ITEMS_PER_PAGE + 1
    names = [f"Item {n}" for n in range(first, first + ITEMS_PER_PAGE)]
    return render_template("items.html", title="Items", items=names, page=page, pages=ITEM_PAGES)


@app.route("/login", methods=["GET", "POST"])
def login() -> str | Response:
    if request.method == "GET":
        return render_template("login.html", title="Log in")
    name = request.form.get("name", "")
    if name not in USERS or request.form.get("password") != USERS[name]:
        flash("Bad credentials")
        return redirect(url_for("login", next=request.args.get("next")))
    login_user(User(name), remember=request.form.get("remember") == "y")
    return redirect(local_target(request.args.get("next")))


@app.get("/private")
@login_required
def private() -> str:
    return render_template("private.html", title="Private")


@app.get("/logout")
def logout() -> Response:
    logout_user()
    flash("You have been logged out.")
    return redirect("/")


@app.route("/contact", methods=["GET", "POST"])
def contact() -> str | Response:
    if request.method == "GET":
        return render_template("contact.html", title="Contact")
    flash("Thanks, your message was sent.")
    return redirect("/")
