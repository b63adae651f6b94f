"""Signed WooCommerce webhooks into the web app under gunicorn, and their sync jobs against the fake Graph API.

One run on this machine: gunicorn serving wch's app on PostgreSQL, publishing
to the real RabbitMQ, and beside it, in the same processes, a baseline endpoint
that only checks the signature and parses the JSON
(``bench.webhook_baseline``); a load generator of Python threads posting signed
deliveries (half ``product.updated`` for distinct products, half
``order.updated`` to ``completed`` for distinct orders, so each is one job),
first to the baseline, then to wch, with no worker running. Then one
``dramatiq wch.actors`` worker process runs the sync jobs against the fake
Graph API (a local HTTP server, ``tests.support.fake_graph``).

Reported: deliveries accepted per second (answered 200 "recorded"), against
the baseline's, answer latency, and how long the worker took to finish every
accepted delivery's job.
"""

from __future__ import annotations

import contextlib
import os
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from flask_migrate import upgrade
from sqlalchemy import func, select

from bench.report import report
from bench.webhook_baseline import BASELINE
from tests.support import woo
from tests.support.fake_graph import FakeGraph
from tests.support.services import (
    BIN,
    ROOT,
    create_postgres_database,
    create_vhost,
    delete_vhost,
    drop_postgres_database,
    wait_for,
)
from tests.support.workers import WorkerProcess
from wch import create_app
from wch.config import Settings
from wch.db import db
from wch.models import Job

GUNICORN_WORKERS = 3
GUNICORN_THREADS = 4
CLIENT_THREADS = 12
WORKER_THREADS = 8
DRAIN_SECONDS = 120
HEADERS = ["case", "webhooks", "accepted", "load s", "accepted/s", "vs baseline", "p50 ms", "p95 ms",
           "jobs", "done after drain", "drain s", "Graph calls"]


def run(*, quick: bool) -> None:
    count = 400 if quick else 4_000
    with tempfile.TemporaryDirectory(prefix="wch-bench-") as tmp:
        rows = measure(count=count, tmp=Path(tmp))
    report("webhooks", HEADERS, rows, notes={
        "command": "python -m bench webhooks" + (" --quick" if quick else ""),
        "web": f"gunicorn -k gthread -w {GUNICORN_WORKERS} --threads {GUNICORN_THREADS} "
               "'bench.webhook_baseline:create_app()' (wch's app, and the baseline under /baseline) on "
               "PostgreSQL, publishing to RabbitMQ (confirm_delivery)",
        "baseline": "the same route, cut down to checking the signature and parsing the JSON",
        "worker": f"none while the deliveries arrive (as the issue measured); then dramatiq wch.actors "
                  f"--processes 1 --threads {WORKER_THREADS} drains the jobs",
        "load": f"{CLIENT_THREADS} Python threads, keep-alive sessions; half product.updated (distinct products), "
                "half order.updated to completed (distinct orders): one job per webhook",
        "accepted": "answered 200 with outcome 'recorded' (snapshot, delivery id and job committed)",
        "done": "fraction of accepted webhooks whose job succeeded (product: items_batch call; order: message "
                f"sent) after draining up to {DRAIN_SECONDS} s",
        "machine_shared": "2 cores shared by gunicorn, the worker, the load generator, the fake Graph API, "
                          "PostgreSQL and RabbitMQ",
    })


def measure(*, count: int, tmp: Path) -> list[list[Any]]:
    graph = FakeGraph().start()
    database_url = create_postgres_database()
    broker_url = create_vhost()
    env = {"WCH_DATABASE_URL": database_url, "WCH_BROKER_URL": broker_url, "WCH_SECRET_KEY": "bench",
           **woo.sync_env(graph.url), "WHATSAPP_READ_TIMEOUT": "10"}
    settings = Settings.from_env(env)
    app = create_app(settings, publisher=None)
    with app.app_context():
        upgrade()
    port = _free_port()
    web = subprocess.Popen(
        [str(BIN / "gunicorn"), "-k", "gthread", "-w", str(GUNICORN_WORKERS), "--threads", str(GUNICORN_THREADS),
         "-b", f"127.0.0.1:{port}", "--log-level", "warning", "bench.webhook_baseline:create_app()"],
        env=os.environ | env, cwd=ROOT, stdout=(tmp / "gunicorn.log").open("wb"), stderr=subprocess.STDOUT)
    worker = None
    url = f"http://127.0.0.1:{port}/webhooks/woocommerce"
    try:
        wait_for(lambda: _ping(url), timeout=60, what="gunicorn to answer")
        deliveries = [woo.delivery(*_event(n)) for n in range(count)]
        baseline = _load(f"http://127.0.0.1:{port}{BASELINE}/webhooks/woocommerce", deliveries)
        measured = _load(url, deliveries)
        worker = WorkerProcess(env=env, log=tmp / "worker.log", threads=WORKER_THREADS, modules=("wch.actors",))
        worker.start()
        with app.app_context():
            started = time.monotonic()
            jobs = _done()[1]
            with contextlib.suppress(AssertionError):  # reported below as the share not done
                wait_for(lambda: _done()[0] >= jobs, timeout=DRAIN_SECONDS, interval=0.5, what="jobs")
            done_after, _ = _done()
            drain = time.monotonic() - started
            db.session.remove()
            db.engine.dispose()
    finally:
        web.terminate()
        web.wait(timeout=30)
        if worker is not None:
            worker.stop()
        graph.stop()
        delete_vhost(broker_url)
        drop_postgres_database(database_url)
    base_rate, rate = baseline.accepted / baseline.seconds, measured.accepted / measured.seconds
    return [
        ["baseline: signature and JSON only", count, *baseline.columns(vs=1.0), "", "", "", ""],
        ["wch: snapshot, delivery id, job (PostgreSQL)", count, *measured.columns(vs=rate / base_rate),
         jobs, f"{done_after / max(measured.accepted, 1):.1%}", round(drain, 1), len(graph.received())],
    ]


def _event(n: int) -> tuple[str, dict[str, Any]]:
    if n % 2:
        return "order.updated", woo.order(100_000 + n, "completed")
    return "product.updated", woo.product(n + 1)


@dataclass
class Load:
    """How a stream of deliveries was answered."""

    latencies: list[float]
    accepted: int
    seconds: float

    def columns(self, *, vs: float) -> list[Any]:
        """accepted, load s, accepted/s, ``vs`` (the ratio to the baseline), p50 ms, p95 ms."""
        latencies = sorted(self.latencies)
        return [self.accepted, round(self.seconds, 2), round(self.accepted / self.seconds, 1), f"{vs:.2f}x",
                round(statistics.median(latencies) * 1000, 1), round(latencies[int(len(latencies) * 0.95)] * 1000, 1)]


def _load(url: str, deliveries: list[tuple[bytes, dict[str, str]]]) -> Load:
    latencies: list[float] = []
    accepted = 0
    lock = threading.Lock()
    feed = iter(deliveries)

    def post_all() -> None:
        nonlocal accepted
        session = requests.Session()
        while True:
            with lock:
                item = next(feed, None)
            if item is None:
                return
            body, headers = item
            began = time.perf_counter()
            response = session.post(url, data=body, headers=headers, timeout=30)
            took = time.perf_counter() - began
            ok = response.status_code == 200 and response.json().get("outcome") == "recorded"
            with lock:
                latencies.append(took)
                accepted += ok

    threads = [threading.Thread(target=post_all) for _ in range(CLIENT_THREADS)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return Load(latencies, accepted, time.perf_counter() - started)


def _done() -> tuple[int, int]:
    """(jobs succeeded, jobs dispatched)."""
    db.session.rollback()
    done = db.session.scalar(select(func.count()).select_from(Job).where(Job.status == "succeeded"))
    total = db.session.scalar(select(func.count()).select_from(Job))
    db.session.rollback()
    return done, total


def _ping(url: str) -> bool:
    try:
        return requests.post(url, data=b"webhook_id=1", timeout=2,
                             headers={"Content-Type": "application/x-www-form-urlencoded"}).status_code == 200
    except requests.RequestException:
        return False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
