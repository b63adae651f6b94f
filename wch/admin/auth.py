"""Staff log-in (Flask-Login) and the access rule every admin view follows.

Anyone not logged in is sent to the log-in page; a ``viewer`` may look at
everything but every state-changing request of theirs is refused with 403.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, abort, flash, redirect, render_template, request, session, url_for
from flask_login import LoginManager, current_user, login_required, login_user, logout_user
from werkzeug.security import generate_password_hash

from wch.db import db, transaction, utcnow
from wch.models import User
from wch.staff import find_user

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Checked when the e-mail is unknown, so a wrong e-mail takes as long as a wrong password.
_DUMMY_HASH = generate_password_hash("not a password")

login_manager = LoginManager()
login_manager.login_view = "auth.login"
login_manager.login_message = "Please log in to see the admin panel."
login_manager.login_message_category = "info"

bp = Blueprint("auth", __name__)


@login_manager.user_loader
def load_user(user_id: str) -> User | None:
    return db.session.get(User, int(user_id)) if user_id.isdigit() else None


class StaffOnly:
    """Mixin for Flask-Admin views: log-in required; only admins may change anything."""

    def is_accessible(self) -> bool:
        return current_user.is_authenticated

    def inaccessible_callback(self, name, **kwargs):
        return redirect(url_for("auth.login", next=request.full_path))

    def _handle_view(self, name, **kwargs):
        refused = super()._handle_view(name, **kwargs)
        if refused is not None:
            return refused
        if request.method not in SAFE_METHODS and not current_user.is_admin:
            abort(403)
        return None


@bp.route("/login", methods=["GET", "POST"])
def login():
    next_url = _safe_next(request.values.get("next"))
    if current_user.is_authenticated:
        return redirect(next_url)
    email = ""
    if request.method == "POST":
        email = request.form.get("email", "").strip()
        password = request.form.get("password", "")
        user = find_user(email) if email else None
        if user is None:
            User(password_hash=_DUMMY_HASH).check_password(password)
        elif user.check_password(password):
            # A fresh session on log-in: nothing chosen before it (session fixation) survives.
            session.clear()
            login_user(user)
            with transaction():
                user.last_login_at = utcnow()
            return redirect(next_url)
        flash("Wrong e-mail or password.", "danger")
        return render_template("login.html", email=email, next=next_url), 401
    return render_template("login.html", email=email, next=next_url)


@bp.route("/logout", methods=["POST"])
@login_required
def logout():
    logout_user()
    session.clear()
    flash("You are logged out.", "info")
    return redirect(url_for("auth.login"))


def _safe_next(target: str | None) -> str:
    """Only a path on this site: a ``next`` pointing elsewhere would make the log-in page an open redirect."""
    default = url_for("admin.index")
    if not target:
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    return target
