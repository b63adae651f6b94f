"""wch: the background-job system of a WhatsApp commerce store."""

from __future__ import annotations

import logging
from pathlib import Path

import dramatiq
from flask import Flask

from wch.config import SECRET_KEY_FILE, Settings, instance_secret_key
from wch.logs import configure_logging

PACKAGE = Path(__file__).resolve().parent
_DEFAULT = object()


def create_app(settings: Settings | None = None, *, publisher: dramatiq.Broker | None | object = _DEFAULT) -> Flask:
    """Build the web app; ``settings`` default to the environment.

    ``publisher`` is the broker dispatched jobs are published to; by default
    the one ``WCH_BROKER_URL`` names (or none for ``stub://``: see
    :func:`wch.jobs.broker.build_publisher`).
    """
    templates, static = asset_folders()
    app = Flask(__name__, template_folder=str(templates), static_folder=str(static))
    if settings is None:
        settings = Settings.from_env(instance_path=app.instance_path)
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    configure_logging(level=settings.log_level, fmt=settings.log_format)

    from wch import actors  # noqa: F401  (declares every job type on the broker)
    from wch.admin import init_admin
    from wch.cli import register_commands
    from wch.db import db
    from wch.jobs.broker import build_publisher
    from wch.migrations import migrate
    from wch.redact import register_secret
    from wch.runtime import Runtime, init_runtime
    from wch.web import init_web

    app.config.update(
        SECRET_KEY=settings.secret_key or _instance_key(app, settings),
        SQLALCHEMY_DATABASE_URI=settings.database_url,
        SQLALCHEMY_ENGINE_OPTIONS=_engine_options(settings),
    )
    for secret in settings.secrets():
        register_secret(secret)
    db.init_app(app)
    migrate.init_app(app, db)
    init_runtime(app, Runtime(
        settings=settings,
        publisher=build_publisher(settings) if publisher is _DEFAULT else publisher,
    ))
    init_web(app, secure_cookie=settings.session_cookie_secure)
    init_admin(app)
    register_commands(app)
    return app


def _engine_options(settings: Settings) -> dict:
    options = {"pool_pre_ping": True}
    if not settings.database_url.startswith("sqlite"):
        # Per process: a server's connections are shared by every web, worker and command process.
        options |= {"pool_size": settings.database_pool_size, "max_overflow": settings.database_max_overflow}
    return options


def _instance_key(app: Flask, settings: Settings) -> str:
    if settings.production_like:
        # Each machine would make a key of its own, and a session signed on one is refused by the others.
        logging.getLogger("wch").warning(
            "WCH_SECRET_KEY is not set: signing sessions with %s, which only this machine has; "
            "set WCH_SECRET_KEY, the same on every web process.", Path(app.instance_path) / SECRET_KEY_FILE)
    return instance_secret_key(app.instance_path)


def asset_folders() -> tuple[Path, Path]:
    """The panel's ``templates/`` and ``static/`` folders.

    A wheel ships them inside the package; in a source checkout (an editable
    install) they sit at the repository's root.
    """
    for root in (PACKAGE, PACKAGE.parent):
        if (root / "templates").is_dir() and (root / "static").is_dir():
            return root / "templates", root / "static"
    raise RuntimeError(f"wch's templates/ and static/ are missing from {PACKAGE} and {PACKAGE.parent}")
