"""The app's one CSRF mechanism (Flask-WTF's ``CSRFProtect``) and its session cookie settings.

Every POST, PUT, PATCH and DELETE must carry a CSRF token (form field
``csrf_token`` or header ``X-CSRFToken``), except under ``/webhooks/``: the
store and Meta sign their webhooks instead, and cannot know a session token.
The exemption goes by URL prefix rather than by blueprint, so it holds whether
the webhook blueprints are registered before or after this runs. Flask-Admin's
own ``SecureForm`` must not be used as well: two token schemes make every admin
POST fail with 400.
"""

from __future__ import annotations

from flask import Flask, request
from flask_wtf.csrf import CSRFProtect

csrf = CSRFProtect()

CSRF_EXEMPT_PREFIXES = ("/webhooks/",)


def init_csrf(app: Flask, *, secure_cookie: bool) -> None:
    """Protect every state-changing request of ``app`` with CSRF, and harden its session cookie."""
    app.config.update(
        # We run the check ourselves (below) so it can skip the webhook prefix.
        WTF_CSRF_CHECK_DEFAULT=False,
        # A token lives as long as the session: a panel tab left open for an
        # afternoon still works, and logging out still invalidates it.
        WTF_CSRF_TIME_LIMIT=None,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=secure_cookie,
        REMEMBER_COOKIE_HTTPONLY=True,
        REMEMBER_COOKIE_SAMESITE="Lax",
        REMEMBER_COOKIE_SECURE=secure_cookie,
    )
    csrf.init_app(app)

    @app.before_request
    def check_csrf() -> None:
        if request.method in app.config["WTF_CSRF_METHODS"] and not is_csrf_exempt(request.path):
            csrf.protect()


def is_csrf_exempt(path: str) -> bool:
    return path.startswith(CSRF_EXEMPT_PREFIXES) or path.rstrip("/") == "/webhooks"
