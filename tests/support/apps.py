"""Apps and in-process workers for the tests: the pieces the app fixtures (``tests/conftest.py``) are built from."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import dramatiq
import pytest
from flask import Flask, has_app_context
from flask_migrate import upgrade

from wch import create_app, runtime
from wch.config import Settings
from wch.db import db
from wch.jobs.middleware import AppContext

# Retries in real worker processes: short enough for tests, long enough to measure.
WORKER_RETRY_DELAYS = "1,2,3"
DATABASES = ("sqlite", "postgresql")

# Runs the test once on each database: the ``app`` fixture on SQLite, then on PostgreSQL.
on_both_databases = pytest.mark.parametrize("app", DATABASES, indirect=True)


def with_env(**env: str) -> pytest.MarkDecorator:
    """Build the test's apps with these settings (environment variable names) on top of the folder's ``env``.

    ``@with_env(WCH_PANEL_RETRY_CAP="3")``; an empty value unsets an optional setting.
    """
    label = ",".join(f"{name}={value}" for name, value in env.items())
    return pytest.mark.parametrize("env", [env], indirect=True, ids=[label])


def overrides(request: pytest.FixtureRequest) -> dict[str, str]:
    """The settings a test gave its ``env`` fixture with :func:`with_env` (none otherwise)."""
    return dict(getattr(request, "param", {}))


def settings_for(database_url: str, broker_url: str = "stub://", env: Mapping[str, str] | None = None) -> Settings:
    """The settings of a test app: the test process's defaults, then ``env``."""
    base = {"WCH_DATABASE_URL": database_url, "WCH_BROKER_URL": broker_url,
            "WCH_RETRY_DELAYS": os.environ["WCH_RETRY_DELAYS"], "WCH_SECRET_KEY": "test-secret-key"}
    return Settings.from_env(base | dict(env or {}))


def make_app(settings: Settings, publisher: dramatiq.Broker | None) -> Flask:
    """An app for ``settings``, in TESTING mode, its database upgraded."""
    app = create_app(settings, publisher=publisher)
    app.config["TESTING"] = True
    with app.app_context():
        upgrade()
    return app


def settings_of(app: Flask) -> Settings:
    with app.app_context():
        return runtime.settings()


def close(app: Flask) -> None:
    """Let go of ``app``'s database connections and of its RabbitMQ publisher (not the shared StubBroker)."""
    with app.app_context():
        db.session.remove()
        db.engine.dispose()
        state = runtime.current()
    if state.publisher is not None and not state.settings.broker_is_stub:
        state.publisher.close()


@contextmanager
def inside(app: Flask) -> Iterator[Flask]:
    """Push ``app``'s context for a test; close its database connections afterwards."""
    with app.app_context():
        yield app
        db.session.remove()
        db.engine.dispose()


@contextmanager
def stub_worker_for(app: Flask, broker: dramatiq.Broker, *, threads: int = 2) -> Iterator[dramatiq.Worker]:
    """A Dramatiq worker in this process, on the StubBroker, running jobs against ``app``.

    The test's transaction is committed first: the worker records itself as it
    starts, and on SQLite an open transaction holds the write lock it needs.
    """
    if has_app_context():
        db.session.commit()
    app_context = next(m for m in broker.middleware if isinstance(m, AppContext))
    app_context.app = app
    worker = dramatiq.Worker(broker, worker_timeout=50, worker_threads=threads)
    worker.start()
    try:
        yield worker
    finally:
        if has_app_context():
            db.session.rollback()  # SQLite: let the worker's last writes through
        worker.stop()
        app_context.app = None
        # Dramatiq's Worker adds a middleware of its own to the broker and leaves it there; the StubBroker
        # outlives the test, and each stopped worker's middleware would stay on it for the session.
        broker.middleware[:] = [m for m in broker.middleware if getattr(m, "worker", None) is not worker]


def run_jobs(broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
    """Commit the test's transaction, then wait until every queue is empty and the worker is idle.

    Committing first matters on SQLite, where an open transaction holds the
    write lock the worker needs.
    """
    db.session.commit()
    for queue in list(broker.queues):
        broker.join(queue, fail_fast=False)
    worker.join()
