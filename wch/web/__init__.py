"""What machines call: the store's and Meta's webhooks, ``/healthz`` and ``/metrics``; and the app's CSRF rule."""

from __future__ import annotations

from flask import Flask

from wch.web import health, metrics, whatsapp, woocommerce
from wch.web.csrf import init_csrf


def init_web(app: Flask, *, secure_cookie: bool) -> None:
    """Protect the app with CSRF (webhooks excepted) and register the machine-facing endpoints."""
    init_csrf(app, secure_cookie=secure_cookie)
    for module in (health, metrics, whatsapp, woocommerce):
        app.register_blueprint(module.bp)
