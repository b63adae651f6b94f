"""Staff log-in (Flask-Login) and the access rule every admin view follows.

Anyone not logged in is sent to the log-in page; a ``viewer`` may look at
everything but every state-changing request of theirs is refused with 403.
A session carries its user's session version: disabling the account, a new
password or role, or logging out bumps it, and every older session is
refused at its next request. A session also ends after
``WCH_SESSION_IDLE_MINUTES`` without a request (the signed cookie's
timestamp is checked on the server, so a copied cookie expires too).
"""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlsplit

from flask import Blueprint, Flask, abort, current_app, flash, redirect, render_template, request, session, url_for
from flask_login import LoginManager, current_user, login_required, login_user, logout_user
from werkzeug.security import generate_password_hash

from wch.admin.throttle import Busy, LoginThrottle
from wch.config import Settings
from wch.db import db, read_only, transaction, utcnow
from wch.models import User
from wch.staff import find_user
from wch.staff.accounts import MAX_PASSWORD

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
THROTTLE = "wch_login_throttle"
# Checked when the e-mail is unknown, so a wrong e-mail takes as long as a wrong password.
_DUMMY_HASH = generate_password_hash("not a password")

login_manager = LoginManager()
login_manager.login_view = "auth.login"
login_manager.login_message = "Please log in to see the admin panel."
login_manager.login_message_category = "info"

bp = Blueprint("auth", __name__)


def init_auth(app: Flask, settings: Settings) -> None:
    """Log-in, idle expiry and throttling for ``app``."""
    app.config.update(PERMANENT_SESSION_LIFETIME=timedelta(minutes=settings.session_idle_minutes),
                      SESSION_REFRESH_EACH_REQUEST=True)
    app.extensions[THROTTLE] = LoginThrottle.from_settings(settings)
    login_manager.init_app(app)
    app.register_blueprint(bp)


@login_manager.user_loader
def load_user(session_id: str) -> User | None:
    """The user of a session id ``<user id>.<session version>``, while that version is current and the user active."""
    user_id, _, version = session_id.partition(".")
    if not (user_id.isascii() and user_id.isdigit() and version.isascii() and version.isdigit()):
        return None
    if len(user_id) > 18 or len(version) > 18:
        return None
    user = db.session.get(User, int(user_id))
    if user is None or user.session_version != int(version) or not user.is_active:
        return None
    return user


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


class AdminOnly(StaffOnly):
    """Mixin for views only admins may even see (staff accounts, the audit trail)."""

    def is_accessible(self) -> bool:
        return current_user.is_authenticated and current_user.is_admin

    def inaccessible_callback(self, name, **kwargs):
        if current_user.is_authenticated:
            abort(403)
        return super().inaccessible_callback(name, **kwargs)


@bp.route("/login", methods=["GET", "POST"])
def login():
    next_url = _safe_next(request.values.get("next"))
    if current_user.is_authenticated:
        return redirect(next_url)
    if request.method == "GET":
        return render_template("login.html", email="", next=next_url)
    email = request.form.get("email", "").strip()[:254]
    password = request.form.get("password", "")
    throttle: LoginThrottle = current_app.extensions[THROTTLE]
    address = request.remote_addr or "unknown"
    wait = throttle.wait_seconds(email=email, address=address)
    if wait:
        return _refused(email, next_url, f"Too many log-in attempts. Try again in {wait} s.", 429, wait)
    throttle.attempted(address=address)
    try:
        with throttle.password_check(), read_only():
            # The account again, now that this log-in holds a check slot: failures counted while
            # it waited for one count too, so a burst gets at most one slot's worth past the limit.
            wait = throttle.wait_seconds(email=email, address=None)
            user = find_user(email) if email and not wait else None
            matches = not wait and _password_matches(user, password)
            active = user is not None and user.is_active
    except Busy:
        return _refused(email, next_url, "The log-in is busy. Try again in 1 s.", 503, 1)
    if wait:
        return _refused(email, next_url, f"Too many log-in attempts. Try again in {wait} s.", 429, wait)
    if not matches:
        throttle.failed(email=email)
        return _refused(email, next_url, "Wrong e-mail or password.", 401)
    if not active:
        return _refused(email, next_url, "This account is disabled; ask an admin to enable it.", 403)
    # A fresh session on log-in: nothing chosen before it (session fixation) survives.
    session.clear()
    session.permanent = True
    login_user(user)
    with transaction():
        user.last_login_at = utcnow()
    return redirect(next_url)


def _password_matches(user: User | None, password: str) -> bool:
    if len(password) > MAX_PASSWORD:
        return False
    if user is None:
        User(password_hash=_DUMMY_HASH).check_password(password)
        return False
    return user.check_password(password)


def _refused(email: str, next_url: str, message: str, status: int, retry_after: int | None = None):
    flash(message, "danger")
    headers = {"Retry-After": str(retry_after)} if retry_after else {}
    return render_template("login.html", email=email, next=next_url), status, headers


@bp.route("/logout", methods=["POST"])
@login_required
def logout():
    # Every session of this user ends, so a copy of this cookie is worthless too.
    with transaction():
        db.session.merge(current_user._get_current_object()).end_sessions()
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
