"""Apps and in-process workers for the tests, shared by the fixtures and the test modules."""

from __future__ import annotations

import os
from contextlib import contextmanager

import dramatiq
from flask import has_app_context
from flask_migrate import upgrade

from wch import create_app
from wch.config import Settings
from wch.db import db
from wch.middleware import AppContext

# Retries in real worker processes: short enough for tests, long enough to measure.
WORKER_RETRY_DELAYS = "1,2,3"


def settings_for(database_url: str, broker_url: str = "stub://", **overrides) -> Settings:
    env = {"WCH_DATABASE_URL": database_url, "WCH_BROKER_URL": broker_url,
           "WCH_RETRY_DELAYS": os.environ["WCH_RETRY_DELAYS"], "WCH_SECRET_KEY": "test-secret-key"}
    env.update(overrides)
    return Settings.from_env(env)


def make_app(settings: Settings, publisher):
    app = create_app(settings, publisher=publisher)
    app.config["TESTING"] = True
    with app.app_context():
        upgrade()
    return app


@contextmanager
def inside(app):
    """Push ``app``'s context for a test; close its database connections afterwards."""
    with app.app_context():
        yield app
        db.session.remove()
        db.engine.dispose()


@contextmanager
def stub_worker_for(app, broker, *, threads: int = 2):
    """A Dramatiq worker in this process, on the StubBroker, running jobs against ``app``."""
    app_context = next(m for m in broker.middleware if isinstance(m, AppContext))
    app_context.app = app
    worker = dramatiq.Worker(broker, worker_timeout=50, worker_threads=threads)
    worker.start()
    try:
        yield worker
    finally:
        if has_app_context():
            db.session.remove()  # SQLite: let the worker's last writes through
        worker.stop()
        app_context.app = None


def run_jobs(broker, worker) -> None:
    """Commit the test's transaction, then wait until every queue is empty and the worker is idle.

    Committing first matters on SQLite, where an open transaction holds the
    write lock the worker needs.
    """
    db.session.commit()
    for queue in list(broker.queues):
        broker.join(queue, fail_fast=False)
    worker.join()


def purge_queues(url: str) -> None:
    from dramatiq.brokers.rabbitmq import RabbitmqBroker

    cleaner = RabbitmqBroker(url=url, middleware=[])
    for queue in ("sync", "broadcast", "carts", "maintenance"):
        cleaner.declare_queue(queue)
    cleaner.flush_all()
    cleaner.close()
