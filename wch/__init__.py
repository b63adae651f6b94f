"""wch: the background-job system of a WhatsApp commerce store."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import dramatiq
from flask import Flask

from wch.config import Settings, dev_secret_key

ROOT = Path(__file__).resolve().parent.parent
_DEFAULT = object()


@dataclass
class WchState:
    """What wch keeps on ``app.extensions["wch"]``: its settings and where it publishes jobs."""

    settings: Settings
    publisher: dramatiq.Broker | None


def create_app(settings: Settings | None = None, *, publisher: dramatiq.Broker | None | object = _DEFAULT) -> Flask:
    """Build the web app; ``settings`` default to the environment.

    ``publisher`` is the broker dispatched jobs are published to; by default
    the one ``WCH_BROKER_URL`` names (or none for ``stub://``: see
    :func:`wch.broker.build_publisher`).
    """
    app = Flask(
        __name__,
        template_folder=str(ROOT / "templates"),
        static_folder=str(ROOT / "static"),
    )
    if settings is None:
        settings = Settings.from_env(instance_path=app.instance_path)
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)

    from wch import actors  # noqa: F401  (declares every job type on the broker)
    from wch.broker import build_publisher
    from wch.db import db
    from wch.migrations import migrate
    from wch.redact import register_secret

    app.config.update(
        SECRET_KEY=settings.secret_key or dev_secret_key(app.instance_path),
        SQLALCHEMY_DATABASE_URI=settings.database_url,
        SQLALCHEMY_ENGINE_OPTIONS={"pool_pre_ping": True},
    )
    for secret in settings.secrets():
        register_secret(secret)
    db.init_app(app)
    migrate.init_app(app, db)
    app.extensions["wch"] = WchState(
        settings=settings,
        publisher=build_publisher(settings) if publisher is _DEFAULT else publisher,
    )

    from wch.admin import init_admin
    from wch.health import bp as health_bp
    from wch.security import init_security
    from wch.whatsapp_webhook import bp as whatsapp_webhook_bp
    from wch.woocommerce_webhook import bp as woocommerce_webhook_bp

    init_security(app, secure_cookie=settings.session_cookie_secure)
    init_admin(app)
    app.register_blueprint(health_bp)
    app.register_blueprint(whatsapp_webhook_bp)
    app.register_blueprint(woocommerce_webhook_bp)

    from wch.commands import register_commands

    register_commands(app)
    return app
