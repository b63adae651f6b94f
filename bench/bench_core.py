"""The job core at scale: job throughput with and without wch's ledger, and the cart cleanup.

(a) Small no-op jobs through the real RabbitMQ, one worker process
    (``dramatiq MODULE --processes 1 --threads 8``), timed from the first
    enqueue to the last job completed: a plain Dramatiq actor with no ledger
    (``bench.plain_actors``), then wch's ledger (``bench.wch_actors``, every wch
    middleware, jobs dispatched one per transaction through
    ``wch.jobs.dispatch`` like a webhook would) on SQLite and PostgreSQL.
    Then, with the worker stopped, as many jobs are written in one transaction
    with ``wch.jobs.dispatch_many`` (timed until RabbitMQ confirmed the last
    one), and the worker drains that backlog, which isolates its cost per job
    from the sender's.
(b) ``wch.carts.cleanup.cleanup_expired_carts`` deleting half of a table of carts,
    run in a process of its own so its peak memory is the cleanup's alone.

Each run uses its own RabbitMQ virtual host and throwaway databases.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dramatiq
import psycopg
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from flask import Flask
from flask_migrate import upgrade
from sqlalchemy import func, select

from bench.report import report
from tests.support.services import (
    create_postgres_database,
    create_vhost,
    delete_vhost,
    drop_postgres_database,
    wait_for,
)
from tests.support.workers import WorkerProcess
from wch import create_app, runtime
from wch.carts.cleanup import cleanup_expired_carts
from wch.config import Settings
from wch.db import db, transaction
from wch.models import Cart

WORKER_PROCESSES = 1
WORKER_THREADS = 8
EXPIRY_HOURS = 72
HEADERS = ["case", "database", "items", "enqueue s", "total s", "per second", "vs plain",
           "batches", "longest txn s", "peak RSS MB", "RSS growth MB"]


def run(*, quick: bool) -> None:
    jobs = 500 if quick else 5_000
    carts = 20_000 if quick else 2_000_000
    rows: list[list[Any]] = []
    with tempfile.TemporaryDirectory(prefix="wch-bench-") as tmp:
        rows += throughput(jobs=jobs, tmp=Path(tmp))
        rows += cleanup(carts=carts, expired=carts // 2, tmp=Path(tmp))
    report("core", HEADERS, rows, notes={
        "command": "python -m bench core" + (" --quick" if quick else ""),
        "worker": f"dramatiq <module> --processes {WORKER_PROCESSES} --threads {WORKER_THREADS}",
        "throughput": "no-op jobs sent one at a time from this process (wch: dispatch + commit per job, "
                      "handed to the process's background publisher after commit, confirm_delivery; plain: a "
                      "message enqueued with confirm_delivery), after one warm-up job. end to end: total s = "
                      "first enqueue to last job completed, worker running meanwhile. dispatch_many: the jobs "
                      "written in one transaction, total s = call to RabbitMQ's last confirm, worker stopped "
                      "(SIGSTOP). drain backlog: total s = SIGCONT to last job completed (plain: the backlog is "
                      "enqueued one at a time while the worker is stopped). completed: the actor ran (each "
                      "appends a byte to a file) and, for wch, its outcome is in the ledger (asked once the "
                      "file says all ran, so counting rows does not load the database under measurement)",
        "cleanup": f"half of the carts unconverted and idle past {EXPIRY_HOURS} h; the other half completed "
                   "long ago or recently active; cleanup in a separate process, "
                   f"{Settings.cleanup_batch_size} carts per batch (the default); "
                   "peak RSS = that process's VmHWM (not ru_maxrss, which Linux carries over exec from the "
                   "parent), growth = peak after the cleanup minus peak just before it",
    })


# -- (a) throughput ---------------------------------------------------------------------------

def throughput(*, jobs: int, tmp: Path) -> list[list[Any]]:
    vhost = create_vhost()
    try:
        plain = _plain_throughput(jobs=jobs, vhost=vhost, tmp=tmp)
        rows = _throughput_rows("jobs, plain dramatiq", "-", jobs, plain, plain, backlog="enqueue one by one")
        sqlite_url = f"sqlite:///{tmp / 'throughput.sqlite3'}"
        timing = _wch_throughput(jobs=jobs, vhost=vhost, database_url=sqlite_url, tmp=tmp)
        rows += _throughput_rows("jobs, wch ledger", "sqlite", jobs, timing, plain, backlog="dispatch_many")
        postgres_url = create_postgres_database()
        try:
            timing = _wch_throughput(jobs=jobs, vhost=vhost, database_url=postgres_url, tmp=tmp)
            rows += _throughput_rows("jobs, wch ledger", "postgresql", jobs, timing, plain, backlog="dispatch_many")
        finally:
            drop_postgres_database(postgres_url)
    finally:
        delete_vhost(vhost)
    return rows


@dataclass(frozen=True)
class Timing:
    """Seconds: to enqueue the jobs, first enqueue to last completed, to write a backlog, to drain it."""

    enqueue: float
    end_to_end: float
    backlog: float
    drain: float


def _throughput_rows(case: str, database: str, jobs: int, timing: Timing, plain: Timing, *,
                     backlog: str) -> list[list[Any]]:
    blank = ["", "", "", ""]
    return [
        [f"{case}: end to end", database, jobs, timing.enqueue, timing.end_to_end, jobs / timing.end_to_end,
         f"{plain.end_to_end / timing.end_to_end:.2f}x", *blank],
        [f"{case}: {backlog}", database, jobs, "", timing.backlog, jobs / timing.backlog,
         f"{plain.backlog / timing.backlog:.2f}x", *blank],
        [f"{case}: drain backlog", database, jobs, "", timing.drain, jobs / timing.drain,
         f"{plain.drain / timing.drain:.2f}x", *blank],
    ]


def _plain_throughput(*, jobs: int, vhost: str, tmp: Path) -> Timing:
    counter = tmp / "plain.counter"
    publisher = RabbitmqBroker(url=vhost, confirm_delivery=True, middleware=[])

    def send(n: int) -> None:
        publisher.enqueue(dramatiq.Message(queue_name="plain", actor_name="plain_noop", args=(), kwargs={"n": n},
                                           options={}))

    worker = _worker("bench.plain_actors", {"BENCH_BROKER_URL": vhost, "BENCH_COUNTER": str(counter)}, tmp)
    try:
        return _time_jobs(jobs, send=send, completed=_file_counter(counter), worker=worker,
                          send_backlog=lambda count: [send(n) for n in range(count)])
    finally:
        worker.stop()
        publisher.close()


def _wch_throughput(*, jobs: int, vhost: str, database_url: str, tmp: Path) -> Timing:
    from bench.wch_actors import BENCH_NOOP  # declares bench_noop, so dispatch knows its queue
    from wch.jobs import dispatch, dispatch_many, outbox

    app = _app(database_url, broker_url=vhost)

    def send(n: int) -> None:
        with transaction():
            dispatch(BENCH_NOOP, {"n": n})

    def send_backlog(count: int) -> None:
        """dispatch_many in one transaction, returning once RabbitMQ confirmed every job."""
        with transaction():
            dispatch_many(BENCH_NOOP, [{"n": n} for n in range(count)])
            # Taken from the outbox here, to be handed over below and waited for: after commit, as the
            # outbox would, but with the confirms in view.
            copies = db.session.info.pop(outbox.SESSION_KEY)
        confirmed = outbox.hand_over(copies).wait(timeout=600)
        if confirmed != count:
            raise RuntimeError(f"RabbitMQ confirmed {confirmed} of {count} jobs")

    counter = tmp / f"wch-{database_url.split(':')[0]}.counter"
    worker = _worker("bench.wch_actors", {"WCH_DATABASE_URL": database_url, "WCH_BROKER_URL": vhost,
                                          "WCH_SECRET_KEY": "bench", "BENCH_COUNTER": str(counter)}, tmp)
    try:
        with app.app_context(), _succeeded_counter(database_url) as succeeded:
            return _time_jobs(jobs, send=send, completed=_file_counter(counter), recorded=succeeded, worker=worker,
                              send_backlog=send_backlog)
    finally:
        worker.stop()
        _close(app)


def _time_jobs(jobs: int, *, send: Callable[[int], None], completed: Callable[[], int],
               worker: WorkerProcess, send_backlog: Callable[[int], Any],
               recorded: Callable[[], int] | None = None) -> Timing:
    """Time ``jobs`` jobs end to end, then writing a backlog of as many (``send_backlog``), then draining it.

    A job counts once its actor ran (``completed``, a file the actor appends
    to, as cheap to read for wch as for plain Dramatiq) and, for wch, its
    outcome is in the ledger (``recorded``, asked only once the actors are
    done, so counting rows does not slow the database under measurement).
    """
    def done(count: int) -> Callable[[], bool]:
        progress = _Progress(completed)
        return lambda: (_alive(worker) and progress.count() >= count
                        and (recorded is None or recorded() >= count))

    timeout = max(600, jobs / 5)
    send(-1)
    wait_for(done(1), timeout=120, what="the warm-up job")

    started = time.perf_counter()
    for n in range(jobs):
        send(n)
    enqueued = time.perf_counter() - started
    wait_for(done(1 + jobs), timeout=timeout, interval=0.02, what=f"{jobs} jobs to complete")
    end_to_end = time.perf_counter() - started

    # A stopped worker lets the backlog build up without it competing for the CPU.
    os.killpg(worker.process.pid, signal.SIGSTOP)
    try:
        started = time.perf_counter()
        send_backlog(jobs)
        backlog = time.perf_counter() - started
    finally:
        os.killpg(worker.process.pid, signal.SIGCONT)
    started = time.perf_counter()
    wait_for(done(1 + 2 * jobs), timeout=timeout, interval=0.02, what=f"a backlog of {jobs} jobs to drain")
    return Timing(enqueue=enqueued, end_to_end=end_to_end, backlog=backlog, drain=time.perf_counter() - started)


class _Progress:
    """Counts completed jobs, and gives up when none completes for ``patience`` seconds.

    Jobs stop completing when RabbitMQ was restarted under the run (another
    engineer's test may stop it): the figures would be meaningless, so say so.
    """

    def __init__(self, completed: Callable[[], int], *, patience: float = 60) -> None:
        self.completed = completed
        self.patience = patience
        self.last = -1
        self.since = time.monotonic()

    def count(self) -> int:
        count = self.completed()
        if count != self.last:
            self.last, self.since = count, time.monotonic()
        elif time.monotonic() - self.since > self.patience:
            raise RuntimeError(f"no job completed for {self.patience:.0f} s ({count} done): was RabbitMQ "
                               "stopped during the run? Jobs it did not confirm wait for the outbox relay; rerun.")
        return count


def _worker(module: str, env: dict[str, str], tmp: Path) -> WorkerProcess:
    return WorkerProcess(env=env, log=tmp / f"{module}.log", processes=WORKER_PROCESSES, threads=WORKER_THREADS,
                         modules=(module,)).start()


def _alive(worker: WorkerProcess) -> bool:
    if worker.process.poll() is not None:
        raise RuntimeError(f"the worker exited:\n{worker.output()[-4000:]}")
    return True


def _file_counter(counter: Path) -> Callable[[], int]:
    """Jobs run so far: the actors append one byte each to ``counter``."""
    return lambda: counter.stat().st_size if counter.exists() else 0


@contextmanager
def _succeeded_counter(database_url: str) -> Iterator[Callable[[], int]]:
    """Counts succeeded jobs on a connection of its own, outside wch's write transactions."""
    query = "SELECT count(*) FROM jobs WHERE status = 'succeeded'"
    if database_url.startswith("sqlite:"):
        connection = sqlite3.connect(_sqlite_path(database_url), isolation_level=None)
    else:
        connection = psycopg.connect(database_url, autocommit=True)
    try:
        yield lambda: connection.execute(query).fetchone()[0]
    finally:
        connection.close()


# -- (b) cart cleanup -------------------------------------------------------------------------

def cleanup(*, carts: int, expired: int, tmp: Path) -> list[list[Any]]:
    rows = [_cleanup_row("sqlite", f"sqlite:///{tmp / 'carts.sqlite3'}", carts, expired)]
    postgres_url = create_postgres_database()
    try:
        rows.append(_cleanup_row("postgresql", postgres_url, carts, expired))
    finally:
        drop_postgres_database(postgres_url)
    return rows


def _cleanup_row(database: str, database_url: str, carts: int, expired: int) -> list[Any]:
    _close(_app(database_url))
    started = time.perf_counter()
    _load_carts(database_url, carts=carts, expired=expired)
    print(f"{database}: loaded {carts:,} carts in {time.perf_counter() - started:.1f} s")

    measured = _in_child_process(_measure_cleanup, database_url)
    remaining = _count(database_url, "SELECT count(*) FROM carts")
    if measured["deleted"] != expired or remaining != carts - expired:
        raise RuntimeError(f"cleanup deleted {measured['deleted']:,} carts, leaving {remaining:,}; "
                           f"expected {expired:,} deleted")
    return [
        f"cleanup: {expired:,} expired of {carts:,}", database, measured["deleted"], "",
        measured["duration_seconds"], measured["deleted"] / measured["duration_seconds"], "",
        measured["batches"], measured["longest_batch_seconds"],
        measured["peak_kb"] / 1024, (measured["peak_kb"] - measured["baseline_kb"]) / 1024,
    ]


def _measure_cleanup(database_url: str) -> dict[str, Any]:
    """Run the cleanup as ``wch carts cleanup`` would; runs in a fresh process."""
    app = _app(database_url)
    with app.app_context():
        settings = runtime.settings()
        db.session.scalar(select(func.count()).select_from(Cart))  # connected, as a worker would be
        db.session.rollback()
        baseline = _peak_rss_kb()
        run = cleanup_expired_carts(expiry_hours=EXPIRY_HOURS, recovery_window_hours=settings.recovery_window_hours,
                                    batch_size=settings.cleanup_batch_size, trigger="bench")
        measured = run.to_dict()
    measured |= {"baseline_kb": baseline, "peak_kb": _peak_rss_kb()}
    _close(app)
    return measured


def _peak_rss_kb() -> int:
    """This process's peak resident memory in kB (``VmHWM``).

    Not ``ru_maxrss``: Linux keeps it across exec, so a freshly spawned process
    would report its parent's peak.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status: the cleanup benchmark measures memory on Linux only")


def _in_child_process(function: Callable[[str], dict[str, Any]], argument: str) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        return pool.apply(function, (argument,))


CART_COLUMNS = ("customer_phone", "customer_name", "items", "total", "currency", "status",
                "created_at", "updated_at")


def _cart_rows(carts: int, expired: int) -> Iterator[tuple[str, ...]]:
    """``expired`` unconverted carts idle past the expiry, spread among carts that must stay.

    The rest are half completed long ago (never deleted) and half active
    recently; timestamps keep an hour's margin from the cutoff.
    """
    rng = random.Random(20261129)
    now = datetime.now(UTC).replace(tzinfo=None)
    day = 86_400
    kept = 0
    for i in range(carts):
        if i * expired // carts != (i + 1) * expired // carts:
            status = "active" if i % 4 < 2 else "abandoned"
            idle = (EXPIRY_HOURS + 1) * 3600 + rng.uniform(0, 30 * day)
        else:
            kept += 1
            if kept % 2:
                status, idle = "completed", rng.uniform(0, 60 * day)
            else:
                status, idle = "active", rng.uniform(0, (EXPIRY_HOURS - 12) * 3600)
        updated = now - timedelta(seconds=idle)
        created = updated - timedelta(seconds=rng.uniform(0, 2 * day))
        yield (f"+1555{i:07d}", f"Customer {i}", '[{"sku": "SKU-1", "qty": 2}]', "25.50", "USD", status,
               created.isoformat(" ", "microseconds"), updated.isoformat(" ", "microseconds"))


def _load_carts(database_url: str, *, carts: int, expired: int) -> None:
    """Bulk-load carts with the driver itself: executemany on SQLite, COPY on PostgreSQL."""
    rows = _cart_rows(carts, expired)
    columns = ", ".join(CART_COLUMNS)
    if database_url.startswith("sqlite:"):
        connection = sqlite3.connect(_sqlite_path(database_url), isolation_level=None)
        connection.execute("PRAGMA synchronous=OFF")
        insert = f"INSERT INTO carts ({columns}) VALUES ({', '.join('?' * len(CART_COLUMNS))})"
        while chunk := [row for _, row in zip(range(100_000), rows, strict=False)]:
            connection.execute("BEGIN")
            connection.executemany(insert, chunk)
            connection.execute("COMMIT")
        connection.close()
        return
    with psycopg.connect(database_url) as connection:
        with connection.cursor().copy(f"COPY carts ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        connection.commit()
        # A live table has statistics; a freshly loaded one has none until autovacuum gets to it.
        connection.autocommit = True
        connection.execute("VACUUM ANALYZE carts")


def _count(database_url: str, query: str) -> int:
    if database_url.startswith("sqlite:"):
        with sqlite3.connect(_sqlite_path(database_url)) as connection:
            return connection.execute(query).fetchone()[0]
    with psycopg.connect(database_url) as connection:
        return connection.execute(query).fetchone()[0]


# -- shared -----------------------------------------------------------------------------------

def _app(database_url: str, *, broker_url: str = "stub://") -> Flask:
    """An app on ``database_url`` with the schema in place, publishing to ``broker_url``."""
    settings = Settings.from_env({"WCH_DATABASE_URL": database_url, "WCH_BROKER_URL": broker_url,
                                  "WCH_SECRET_KEY": "bench"})
    app = create_app(settings)
    with app.app_context():
        upgrade()
    return app


def _close(app: Flask) -> None:
    with app.app_context():
        db.session.remove()
        db.engine.dispose()
        publisher = runtime.current().publisher
    if publisher is not None:
        publisher.close()


def _sqlite_path(database_url: str) -> str:
    return database_url.removeprefix("sqlite:///")
