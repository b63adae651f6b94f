"""What machines call: the store's and Meta's webhooks, ``/healthz`` and ``/metrics``; the app's CSRF and
security rules, and its 503s."""

from __future__ import annotations

from flask import Flask

from wch.config import Settings
from wch.web import health, metrics, whatsapp, woocommerce
from wch.web.csrf import init_csrf
from wch.web.overload import init_overload
from wch.web.security import init_security


def init_web(app: Flask, settings: Settings) -> None:
    """Protect the app (CSRF but on webhooks, headers, size cap), answer 503 when the database cannot serve, and
    register the machine-facing endpoints."""
    init_security(app, settings)
    init_csrf(app, secure_cookie=settings.session_cookie_secure)
    init_overload(app)
    for module in (health, metrics, whatsapp, woocommerce):
        app.register_blueprint(module.bp)
