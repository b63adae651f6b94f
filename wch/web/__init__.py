"""What machines call: the store's and Meta's webhooks, ``/healthz`` and ``/metrics``; the app's CSRF rule and 503s."""

from __future__ import annotations

from flask import Flask

from wch.web import health, metrics, whatsapp, woocommerce
from wch.web.csrf import init_csrf
from wch.web.overload import init_overload


def init_web(app: Flask, *, secure_cookie: bool) -> None:
    """Protect the app with CSRF (webhooks excepted), answer 503 when the database cannot serve, add the endpoints."""
    init_csrf(app, secure_cookie=secure_cookie)
    init_overload(app)
    for module in (health, metrics, whatsapp, woocommerce):
        app.register_blueprint(module.bp)
