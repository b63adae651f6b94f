"""Fixtures: an app on a fresh database (SQLite or PostgreSQL), an in-process
StubBroker worker, and real ``dramatiq`` worker processes on RabbitMQ.

Each test session gets its own PostgreSQL databases and RabbitMQ virtual host,
so several runs on one machine never see each other's rows or messages.
"""

from __future__ import annotations

import os

# The test process declares its actors on a StubBroker; real workers get their
# own environment. Set before anything imports wch.actors.
os.environ["WCH_BROKER_URL"] = "stub://"
os.environ["WCH_RETRY_DELAYS"] = "0.1,0.1,0.1"
os.environ.setdefault("WCH_SECRET_KEY", "test-secret-key")

import dramatiq  # noqa: E402
import pytest  # noqa: E402

import tests.jobs  # noqa: E402,F401  (declares the test actors)
from tests.apps import (  # noqa: E402
    WORKER_RETRY_DELAYS,
    inside,
    make_app,
    purge_queues,
    settings_for,
    stub_worker_for,
)
from tests.broadcast_support import wa_app, wa_worker  # noqa: E402,F401  (broadcast test fixtures)
from tests.fake_graph import fake_graph  # noqa: E402,F401  (the fake Graph API fixture)
from tests.support import (  # noqa: E402
    WorkerProcess,
    create_postgres_database,
    create_vhost,
    delete_vhost,
    drop_postgres_database,
    wait_for,
)
from wch.broker import build_publisher  # noqa: E402
from wch.db import db  # noqa: E402
from wch.models import WorkerProcess as WorkerRow  # noqa: E402


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    """A fresh, empty database: a SQLite file, then a PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'wch.sqlite3'}"
        return
    url = create_postgres_database()
    yield url
    drop_postgres_database(url)


@pytest.fixture
def sqlite_url(tmp_path):
    return f"sqlite:///{tmp_path / 'wch.sqlite3'}"


@pytest.fixture
def broker():
    broker = dramatiq.get_broker()
    broker.flush_all()
    yield broker
    broker.flush_all()


@pytest.fixture
def app(sqlite_url, broker):
    """An app on a fresh SQLite database, publishing to the in-process StubBroker."""
    with inside(make_app(settings_for(sqlite_url), broker)) as app:
        yield app


@pytest.fixture
def stub_worker(app, broker):
    with stub_worker_for(app, broker) as worker:
        yield worker


@pytest.fixture(scope="session")
def rabbitmq_url():
    """A RabbitMQ virtual host of this test session's own."""
    url = create_vhost()
    yield url
    delete_vhost(url)


@pytest.fixture
def rabbit_app(database_url, rabbitmq_url):
    """An app on a fresh database (SQLite, then PostgreSQL) that publishes to the real RabbitMQ."""
    settings = settings_for(database_url, rabbitmq_url)
    with inside(make_app(settings, build_publisher(settings))) as app:
        yield app
    purge_queues(rabbitmq_url)


@pytest.fixture
def spawn_worker(rabbit_app, rabbitmq_url, tmp_path):
    """Start real ``dramatiq`` worker processes against ``rabbit_app``'s database; stopped after the test."""
    started: list[WorkerProcess] = []
    settings = rabbit_app.extensions["wch"].settings

    def spawn(*, wait: bool = True, **env) -> WorkerProcess:
        worker_env = {
            "WCH_DATABASE_URL": settings.database_url,
            "WCH_BROKER_URL": rabbitmq_url,
            "WCH_RETRY_DELAYS": WORKER_RETRY_DELAYS,
            "WCH_WORKER_HEARTBEAT": "1",
            "WCH_SECRET_KEY": "test-secret-key",
        } | env
        known = _announced_workers()
        worker = WorkerProcess(env=worker_env, log=tmp_path / f"worker-{len(started)}.log").start()
        started.append(worker)
        if wait:
            wait_for(lambda: _alive(worker) and _announced_workers() - known, what="the worker to announce itself")
        return worker

    yield spawn
    db.session.rollback()  # SQLite: a test's open transaction would block the workers' last writes
    for worker in started:
        worker.stop()


def _announced_workers() -> set[str]:
    db.session.rollback()
    ids = {row.id for row in db.session.query(WorkerRow)}
    db.session.rollback()  # SQLite: an open transaction holds the write lock the worker needs
    return ids


def _alive(worker: WorkerProcess) -> bool:
    if worker.process.poll() is not None:
        raise AssertionError(f"worker exited early:\n{worker.output()}")
    return True
