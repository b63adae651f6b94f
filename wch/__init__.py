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
# The pool of a process that does not say how many threads it runs (gunicorn, the command line).
DEFAULT_POOL_SIZE = 10


def create_app(settings: Settings | None = None, *, publisher: object = _DEFAULT, threads: int | None = None) -> Flask:
    """Build the web app; ``settings`` default to the environment.

    ``publisher`` is where committed jobs are published: by default the
    RabbitMQ that ``WCH_BROKER_URL`` names (none for ``stub://``: see
    :func:`wch.jobs.broker.build_publisher`); a Dramatiq broker (the
    in-process StubBroker) is published to directly. ``threads`` is how many
    threads of the process may use the database at once (a worker's
    ``--threads``): the connection pool is sized from it unless
    ``WCH_DB_POOL_SIZE`` says otherwise.
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
    from wch.jobs.publisher import BrokerPublisher
    from wch.migrations import migrate
    from wch.redact import register_secret
    from wch.runtime import Runtime, init_runtime
    from wch.web import init_web

    app.config.update(
        SECRET_KEY=settings.secret_key or _instance_key(app, settings),
        SQLALCHEMY_DATABASE_URI=settings.database_url,
        SQLALCHEMY_ENGINE_OPTIONS=pool_options(settings, threads=threads),
    )
    for secret in settings.secrets():
        register_secret(secret)
    db.init_app(app)
    migrate.init_app(app, db)
    if publisher is _DEFAULT:
        publisher = build_publisher(settings)
    elif isinstance(publisher, dramatiq.Broker):
        publisher = BrokerPublisher(publisher)
    init_runtime(app, Runtime(settings=settings, publisher=publisher))
    init_web(app, settings)
    init_admin(app, settings)
    register_commands(app)
    return app


def pool_options(settings: Settings, *, threads: int | None) -> dict:
    """The database pool: a connection per thread, and two for the process's own threads (publisher, heartbeat).

    Nothing in wch holds two connections in one thread, so a pool this size
    is never waited on by the process's own threads; when more requests arrive
    than it has connections, one waits ``WCH_DB_POOL_TIMEOUT`` seconds, then is
    answered 503 with ``Retry-After``.

    No ``pool_pre_ping``: it costs a round trip on every checkout (the
    worker checks out twice per job). A connection the database dropped fails
    its first statement instead, which every path survives (a web request
    answers 503, a claim backs off, an outcome is written again), and
    SQLAlchemy then replaces every connection of the pool that predates it.
    """
    size = settings.db_pool_size or (threads + 2 if threads else DEFAULT_POOL_SIZE)
    options = {"pool_size": size, "max_overflow": size, "pool_timeout": settings.db_pool_timeout}
    if settings.database_url.startswith("sqlite:"):
        options["connect_args"] = {"timeout": settings.sqlite_busy_timeout}
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
