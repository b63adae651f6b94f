"""The admin panel at scale: response times of its busiest pages on an empty and a full database.

A full database holds 1,000,000 ledger rows (two weeks of jobs, newest first: a
backlog of 2 % still pending, then 92 % succeeded, 5 % failed, 3 % canceled) and 1,000,000 carts (a month of
activity), bulk-inserted straight into the tables (``--quick``: 20,000 of
each); then the once-a-minute dashboard rollup runs once, as it would have in
production (on the empty database too). Each page is requested through the Flask app in-process by a
logged-in admin: a few warm-up requests, then the median and 95th percentile
of the timed ones. The broker is the in-process stub, so the figures are the
pages' own work (templates and SQL), not a RabbitMQ round trip.
"""

from __future__ import annotations

import json
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from flask_migrate import upgrade
from sqlalchemy import text

from bench.report import report
from tests.support.panel import client_for, log_in, make_user
from tests.support.services import create_postgres_database, drop_postgres_database
from wch import create_app
from wch.config import Settings
from wch.db import db, transaction, utcnow
from wch.monitoring.rollups import refresh_cart_snapshot, roll_up_finished_jobs

PAGES = {
    "dashboard": "/admin/",
    "jobs, failed": "/admin/jobs/?status=failed",
    "jobs, failed, error search": "/admin/jobs/?status=failed&since=7d&q=timed+out",
    "jobs, all": "/admin/jobs/",
    "carts": "/admin/carts/",
    "carts, expired": "/admin/carts/?idle=expired",
    "jobs, about order 1234": "/admin/jobs/?q=order+1234",
    "orders": "/admin/orders/",
    "audit log": "/admin/audit/",
    "metrics": "/metrics",
}
TYPES = ["sync_product", "sync_inventory", "notify_order", "send_cart_reminder", "broadcast_batch", "cleanup_carts"]
SUBJECTS = {"sync_product": "product", "sync_inventory": "product", "notify_order": "order",
            "send_cart_reminder": "cart"}
ERRORS = ["ConnectionError: Read timed out. (read timeout=10)", "WhatsAppError: (#131026) Message undeliverable",
          "KeyError: 'retailer_id'", "WhatsAppError: (#130429) Rate limit hit"]
JOB_COLUMNS = ("id", "type", "queue", "args", "status", "attempts", "last_error", "enqueued_at", "started_at",
               "finished_at", "published_at", "digest", "subject")
CART_COLUMNS = ("customer_phone", "customer_name", "items", "total", "currency", "status", "reminder_sent_at",
                "created_at", "updated_at")
HEADERS = ["page", "database", "rows", "median ms", "p95 ms", "requests"]


def run(*, quick: bool) -> None:
    rows_per_table = 20_000 if quick else 1_000_000
    requests = 10 if quick else 30
    results = []
    for database in ("sqlite", "postgresql"):
        for rows in (0, rows_per_table):
            with _database(database) as url:
                app = create_app(Settings.from_env({"WCH_DATABASE_URL": url, "WCH_BROKER_URL": "stub://",
                                                    "WCH_SECRET_KEY": "bench"}), publisher=None)
                with app.app_context():
                    upgrade()
                    started = time.perf_counter()
                    if rows:
                        _fill(database, rows)
                        print(f"{database}: inserted {rows:,} jobs and {rows:,} carts "
                              f"in {time.perf_counter() - started:.0f} s")
                    _roll_up()
                    make_user()
                    client = client_for(app)
                    log_in(client)
                    for page, path in PAGES.items():
                        median, p95 = _time(client, path, requests)
                        results.append([page, database, rows, median, p95, requests])
                    db.session.remove()
                    db.engine.dispose()
    report("admin", HEADERS, results, notes={"rows_per_table": rows_per_table, "pages": PAGES})


def _time(client, path: str, requests: int) -> tuple[float, float]:
    for _ in range(3):
        response = client.get(path)
        assert response.status_code == 200, (path, response.status_code)
    times = []
    for _ in range(requests):
        started = time.perf_counter()
        client.get(path)
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]


class _database:
    """A throwaway SQLite file or PostgreSQL database."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def __enter__(self) -> str:
        if self.kind == "sqlite":
            self.tmp = tempfile.TemporaryDirectory(prefix="wch-bench-admin-")
            self.url = f"sqlite:///{Path(self.tmp.name) / 'wch.sqlite3'}"
        else:
            self.url = create_postgres_database()
        return self.url

    def __exit__(self, *exc) -> None:
        if self.kind == "sqlite":
            self.tmp.cleanup()
        else:
            drop_postgres_database(self.url)


def _fill(database: str, rows: int) -> None:
    connection = db.engine.raw_connection()
    try:
        if database == "sqlite":
            _insert_sqlite(connection, "jobs", JOB_COLUMNS, _jobs(rows))
            _insert_sqlite(connection, "carts", CART_COLUMNS, _carts(rows))
        else:
            _copy_postgres(connection, "jobs", JOB_COLUMNS, _jobs(rows))
            _copy_postgres(connection, "carts", CART_COLUMNS, _carts(rows))
        connection.commit()
    finally:
        connection.close()
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE" if database == "postgresql" else "ANALYZE"))


def _roll_up() -> None:
    """What the ``roll_up_dashboard`` job does every minute."""
    now = utcnow()
    with transaction():
        roll_up_finished_jobs(now=now)
    with transaction():
        refresh_cart_snapshot(expiry_hours=72, now=now)


def _insert_sqlite(connection, table: str, columns: tuple[str, ...], rows: Iterator[tuple]) -> None:
    cursor = connection.cursor()
    if not connection.in_transaction:
        cursor.execute("BEGIN")
    marks = ", ".join("?" for _ in columns)
    cursor.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)


def _copy_postgres(connection, table: str, columns: tuple[str, ...], rows: Iterator[tuple]) -> None:
    cursor = connection.cursor()
    with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def _stamp(value: datetime) -> str:
    # As UTCDateTime stores it: naive UTC.
    return value.strftime("%Y-%m-%d %H:%M:%S.%f")


def _jobs(count: int) -> Iterator[tuple]:
    rng = random.Random(1)
    now = datetime.now(UTC).replace(tzinfo=None)
    span = timedelta(days=14).total_seconds()
    for index in range(count):
        enqueued = now - timedelta(seconds=span * index / count)  # newest first, evenly spread
        roll = rng.random()
        if index < count * 0.02:  # a backlog: the newest 2 % still wait, as in a real ledger
            status = "queued" if roll < 0.75 else "retrying"
        else:
            status = "succeeded" if roll < 0.92 else "failed" if roll < 0.97 else "canceled"
        finished = enqueued + timedelta(seconds=rng.uniform(0.1, 5)) if status in ("succeeded", "failed",
                                                                                   "canceled") else None
        type_ = TYPES[index % len(TYPES)]
        subject = f"{SUBJECTS[type_]}:{index // len(TYPES)}" if type_ in SUBJECTS else None
        yield (str(uuid.UUID(int=rng.getrandbits(128), version=4)), type_, "sync",
               json.dumps({"store_id": index // len(TYPES)}), status, 4 if status == "failed" else 1,
               rng.choice(ERRORS) if status == "failed" else None, _stamp(enqueued),
               _stamp(enqueued) if finished else None, _stamp(finished) if finished else None,
               _stamp(enqueued), f"{index:064x}", subject)


def _carts(count: int) -> Iterator[tuple]:
    rng = random.Random(2)
    now = datetime.now(UTC).replace(tzinfo=None)
    span = timedelta(days=30).total_seconds()
    items = json.dumps([{"name": "Linen shirt", "price": "39.90", "quantity": 1}])
    for index in range(count):
        updated = now - timedelta(seconds=rng.uniform(0, span))
        roll = rng.random()
        status = "completed" if roll < 0.6 else "active" if roll < 0.85 else "abandoned"
        reminded = _stamp(updated + timedelta(hours=1)) if rng.random() < 0.1 else None
        yield (f"+5511{9000000000 + index}", "Ana Souza", items, "39.90", "BRL", status, reminded,
               _stamp(updated - timedelta(minutes=5)), _stamp(updated))
