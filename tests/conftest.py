"""Fixtures every test folder shares: databases, brokers, the fake Graph API, and one family of apps.

The apps:

- ``env``: the extra settings (environment variable names → values) of the
  test's apps; ``{}`` here. A folder's conftest or a module overrides it, and
  :func:`tests.support.apps.with_env` sets it for one test.
- ``app_factory(database_url, broker_url="stub://", **settings)``: builds an
  app (schema upgraded, TESTING) with ``env`` and those settings, publishing
  to the StubBroker, or to RabbitMQ for an ``amqp://`` URL.
- ``app``: an app on a fresh SQLite database with its context pushed
  (:data:`tests.support.apps.on_both_databases`: on SQLite, then PostgreSQL);
  ``client`` is its test client; ``stub_worker`` runs its jobs in this process.
- ``rabbit_app``: an app on ``database_url`` (SQLite, then PostgreSQL) that
  publishes to the real RabbitMQ; ``spawn_worker`` starts real ``dramatiq``
  worker processes for it, with ``env``.

Each test gets databases of its own, copied from templates migrated once per
test process (:mod:`tests.support.databases`), and each test process (pytest
runs three, ``-n 3`` in ``setup.cfg``) a RabbitMQ virtual host of its own, so
parallel tests and runs never see each other's rows or messages.
"""

from __future__ import annotations

import os

# The test process declares its actors on a StubBroker; real workers get their
# own environment. Set before anything imports wch.actors.
os.environ["WCH_BROKER_URL"] = "stub://"
os.environ["WCH_RETRY_DELAYS"] = "0.1,0.1,0.1"
os.environ.setdefault("WCH_SECRET_KEY", "test-secret-key")

from contextlib import ExitStack  # noqa: E402

import dramatiq  # noqa: E402
import pytest  # noqa: E402

import tests.support.jobs  # noqa: E402,F401  (declares the test actors)
from tests.support.apps import (  # noqa: E402
    WORKER_RETRY_DELAYS,
    close,
    inside,
    make_app,
    overrides,
    settings_for,
    settings_of,
    stub_worker_for,
)
from tests.support.databases import Templates  # noqa: E402
from tests.support.fake_graph import FakeGraph  # noqa: E402
from tests.support.services import (  # noqa: E402
    create_vhost,
    delete_vhost,
    postgres_database,
    purge_queues,
    wait_for,
)
from tests.support.workers import WorkerProcess  # noqa: E402
from wch.db import db  # noqa: E402
from wch.jobs.broker import build_publisher  # noqa: E402
from wch.models import WorkerProcess as WorkerRow  # noqa: E402


@pytest.fixture(scope="session")
def templates():
    """The session's migrated database templates (:mod:`tests.support.databases`)."""
    made = Templates()
    yield made
    made.remove()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path, templates):
    """A fresh database of the test's own at the current schema: a SQLite file, then a PostgreSQL database."""
    if request.param == "sqlite":
        yield templates.sqlite_copy(tmp_path / "wch.sqlite3")
        return
    with templates.postgres_copy() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database_url(request, tmp_path):
    """A fresh, empty database, for the migration tests: a SQLite file, then a PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'wch.sqlite3'}"
        return
    with postgres_database() as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path, templates):
    """A fresh SQLite database at the current schema."""
    return templates.sqlite_copy(tmp_path / "wch.sqlite3")


@pytest.fixture
def broker():
    """The process's StubBroker (``wch.actors.broker``), emptied before and after the test."""
    broker = dramatiq.get_broker()
    broker.flush_all()
    yield broker
    broker.flush_all()


@pytest.fixture(scope="session")
def rabbitmq_vhost():
    """The URL of a RabbitMQ virtual host of this test session's own."""
    url = create_vhost()
    yield url
    delete_vhost(url)


@pytest.fixture
def rabbitmq_url(rabbitmq_vhost):
    """Where the test's apps and workers reach RabbitMQ: the session's vhost.

    A fault test overrides it with the URL of a :class:`~tests.support.proxy.FaultProxy` in front of it.
    """
    return rabbitmq_vhost


@pytest.fixture
def fake_graph():
    """A running :class:`~tests.support.fake_graph.FakeGraph`; ``fake_graph.url`` is a ``WHATSAPP_API_URL``."""
    graph = FakeGraph().start()
    yield graph
    graph.stop()


@pytest.fixture
def env(request):
    """The extra settings of the test's apps (none); overridden by folders, modules and ``with_env``."""
    return overrides(request)


@pytest.fixture
def app_factory(broker, env):
    """Build apps: ``app_factory(database_url, broker_url="stub://", **settings)``; closed after the test."""
    built = []

    def build(database_url: str, broker_url: str = "stub://", **settings: str):
        configured = settings_for(database_url, broker_url, env | settings)
        app = make_app(configured, broker if configured.broker_is_stub else build_publisher(configured))
        built.append(app)
        return app

    yield build
    for app in built:
        close(app)


@pytest.fixture
def app(request, app_factory, sqlite_url, templates):
    """An app on a fresh SQLite database, publishing to the in-process StubBroker, its context pushed.

    Parametrized indirectly with ``"postgresql"`` (``on_both_databases``), it is on a fresh PostgreSQL database.
    """
    with ExitStack() as stack:
        database = getattr(request, "param", "sqlite")
        url = sqlite_url if database == "sqlite" else stack.enter_context(templates.postgres_copy())
        yield stack.enter_context(inside(app_factory(url)))


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def stub_worker(app, broker):
    """A Dramatiq worker in this process, on the StubBroker, running jobs against ``app``."""
    with stub_worker_for(app, broker) as worker:
        yield worker


@pytest.fixture
def rabbit_app(app_factory, database_url, rabbitmq_url):
    """An app on a fresh database (SQLite, then PostgreSQL) that publishes to the real RabbitMQ, its context pushed."""
    with inside(app_factory(database_url, rabbitmq_url)) as app:
        yield app
    purge_queues(rabbitmq_url)


@pytest.fixture
def spawn_worker(rabbit_app, rabbitmq_url, env, tmp_path):
    """Start real ``dramatiq`` worker processes against ``rabbit_app``'s database, with ``env``; stopped after.

    ``spawn_worker(**settings)`` adds settings of its own to that worker; ``processes=2`` forks two.
    """
    started: list[WorkerProcess] = []
    database_url = settings_of(rabbit_app).database_url

    def spawn(*, wait: bool = True, processes: int = 1, **settings: str) -> WorkerProcess:
        worker_env = {
            "WCH_DATABASE_URL": database_url,
            "WCH_BROKER_URL": rabbitmq_url,
            "WCH_RETRY_DELAYS": WORKER_RETRY_DELAYS,
            "WCH_WORKER_HEARTBEAT": "1",
            # A killed worker's jobs are taken back this soon after its last heartbeat.
            "WCH_WORKER_LOST_AFTER": "4",
            "WCH_SECRET_KEY": "test-secret-key",
            "WCH_METRICS_PORT": "0",  # other suites' workers run on this machine too
        } | env | settings
        known = _announced_workers() if wait else set()
        worker = WorkerProcess(env=worker_env, log=tmp_path / f"worker-{len(started)}.log",
                               processes=processes).start()
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
