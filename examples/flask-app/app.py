"""A small Flask site with Flask-Login: the app sidecache is meant to sit in front of.

Every page greets the visitor by name when logged in, so a cache that served one visitor's page
to another would show it at once. Run it with gunicorn (`gunicorn -b 127.0.0.1:5000 app:app`);
sidecache's `config/uwsgi-flask.toml` mirrors the original uWSGI rules for it.
"""

from __future__ import annotations

import html
import os

from flask import Flask, Response, redirect, request
from flask_login import LoginManager, UserMixin, current_user, login_user, logout_user

app = Flask(__name__)
app.secret_key = os.environ.get("SECRET_KEY", "dev only: set SECRET_KEY")
login_manager = LoginManager(app)


class User(UserMixin):
    def __init__(self, name: str) -> None:
        self.id = name


@login_manager.user_loader
def load_user(user_id: str) -> User:
    return User(user_id)


def page(title: str) -> Response:
    who = current_user.id if current_user.is_authenticated else "visitor"
    body = f"<!doctype html><title>{title}</title><h1>{title}</h1><p>Hello, {html.escape(who)}</p>"
    return Response(body, content_type="text/html; charset=utf-8")


@app.get("/")
def home() -> Response:
    return page("Home")


@app.get("/about")
def about() -> Response:
    return page("About")


@app.post("/login")
def login() -> Response:
    login_user(User(request.form.get("name", "alice")), remember=True)  # sets remember_token
    return redirect("/")


@app.get("/logout")
def logout() -> Response:
    logout_user()
    return redirect("/")
