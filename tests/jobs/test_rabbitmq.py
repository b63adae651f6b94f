"""The job core against the real RabbitMQ, with real ``dramatiq`` worker processes, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import pytest
from sqlalchemy import func, select

from tests.support.apps import WORKER_RETRY_DELAYS
from tests.support.services import ROOT, wait_for
from wch import runtime
from wch.db import db
from wch.jobs import dispatcher, queries
from wch.models import Job
from wch.models import WorkerProcess as WorkerRow

pytestmark = pytest.mark.rabbitmq


def fresh(job_id: str) -> Job | None:
    """The job's row (with its attempts) as it is now, detached, with no transaction left open.

    On SQLite an open transaction holds the write lock the worker needs.
    """
    db.session.rollback()
    job = db.session.get(Job, job_id)
    if job is not None:
        job.attempt_log  # noqa: B018  (load it before detaching)
    db.session.expunge_all()
    db.session.rollback()
    return job


def wait_status(job_id: str, status: str, *, timeout: float = 30) -> Job:
    wait_for(lambda: fresh(job_id).status == status, timeout=timeout, interval=0.1, what=f"job {job_id} to be {status}")
    return fresh(job_id)


def dispatch(type: str, args: dict | None = None, **options) -> str:
    job = dispatcher.dispatch(type, args, **options)
    job_id = job.id
    db.session.commit()
    return job_id


def test_dispatched_job_runs_and_keeps_its_result(spawn_worker):
    spawn_worker()
    job_id = dispatch("echo", {"value": {"order": 17, "items": ["a", "b"]}})

    job = wait_status(job_id, "succeeded")
    assert job.result == {"order": 17, "items": ["a", "b"]}
    assert queries.result(job_id) == {"order": 17, "items": ["a", "b"]}
    assert job.attempts == 1 and job.published_at is not None
    assert job.enqueued_at <= job.started_at <= job.finished_at
    assert [a.outcome for a in job.attempt_log] == ["succeeded"]


def test_failing_job_is_attempted_on_the_configured_schedule_then_fails_and_retry_runs_it(spawn_worker, tmp_path):
    spawn_worker()
    marker = tmp_path / "runs"
    job_id = dispatch("fail_then_succeed", {"marker": str(marker), "failures": 4})

    job = wait_status(job_id, "failed", timeout=60)
    attempts = job.attempt_log
    assert [a.outcome for a in attempts] == ["retrying", "retrying", "retrying", "failed"]
    assert len(marker.read_text().splitlines()) == 4
    # Each retry starts its configured delay after the previous attempt ended.
    gaps = [
        (later.started_at - earlier.finished_at).total_seconds()
        for earlier, later in zip(attempts[:-1], attempts[1:], strict=True)
    ]
    delays = [float(d) for d in WORKER_RETRY_DELAYS.split(",")]
    assert len(gaps) == len(delays)
    for gap, delay in zip(gaps, delays, strict=True):
        assert delay - 0.05 <= gap <= delay + 1.5, (gaps, WORKER_RETRY_DELAYS)
    assert job.last_error == "RuntimeError: failure 4 of 4"
    assert job.traceback.startswith("Traceback") and "fail_then_succeed" in job.traceback
    assert [j.id for j in queries.failed(10)] == [job_id]

    dispatcher.retry(job_id)
    db.session.commit()
    job = wait_status(job_id, "succeeded")
    assert job.result == 5 and job.attempts == 5
    assert len(marker.read_text().splitlines()) == 5


def test_error_that_retrying_cannot_fix_fails_at_once(spawn_worker, tmp_path):
    spawn_worker()
    marker = tmp_path / "runs"
    job_id = dispatch("fails_for_good", {"marker": str(marker)})

    job = wait_status(job_id, "failed")
    assert job.attempts == 1 and job.last_error == "Unfixable: this cannot work"
    assert len(marker.read_text().splitlines()) == 1


def test_canceled_job_never_runs(spawn_worker, tmp_path):
    worker = spawn_worker()
    marker = tmp_path / "runs"
    job_id = dispatch("echo", {"marker": str(marker)}, delay=1.5)
    dispatcher.cancel(job_id)
    db.session.commit()

    # The worker receives the message when its delay is up, and skips it.
    wait_for(lambda: f"Skipping job {job_id}: already canceled" in worker.output(), what="the worker to skip the job")
    job = fresh(job_id)
    assert job.status == "canceled" and job.attempts == 0 and job.attempt_log == []
    assert not marker.exists()


def test_unique_dispatch_does_not_duplicate(rabbit_app, spawn_worker, tmp_path):
    marker = tmp_path / "runs"
    args = {"marker": str(marker), "value": "sku-42"}
    ids = []

    def dispatch_in_thread(barrier: threading.Barrier) -> None:
        with rabbit_app.app_context():
            barrier.wait()
            ids.append(dispatch("echo", args, unique=True, delay=1))
            db.session.remove()

    # Two requests at the same moment, each in its own transaction.
    barrier = threading.Barrier(2)
    threads = [threading.Thread(target=dispatch_in_thread, args=(barrier,)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ids.append(dispatch("echo", args, unique=True))

    assert len(set(ids)) == 1, ids
    spawn_worker()
    wait_status(ids[0], "succeeded")
    assert db.session.scalar(select(func.count()).select_from(Job).where(Job.type == "echo")) == 1
    db.session.rollback()
    assert marker.read_text().splitlines() == ["ran"]


def test_worker_announces_itself_with_a_heartbeat(spawn_worker):
    worker = spawn_worker()
    db.session.rollback()
    row = db.session.scalars(select(WorkerRow)).one()
    first_beat = row.heartbeat_at
    db.session.expunge_all()
    db.session.rollback()
    assert {"sync", "carts", "maintenance"} <= set(row.queues)
    assert row.threads == 4 and row.pid > 0

    def beat_advanced():
        db.session.rollback()
        beat = db.session.scalar(select(WorkerRow.heartbeat_at).where(WorkerRow.id == row.id))
        db.session.rollback()
        return beat > first_beat

    wait_for(beat_advanced, timeout=10, what="the heartbeat to advance")

    worker.stop()
    assert db.session.get(WorkerRow, row.id) is None, "a stopped worker leaves the table"
    db.session.rollback()


def test_message_sent_with_plain_actor_send_gets_a_ledger_row(rabbit_app, rabbitmq_url, spawn_worker):
    spawn_worker()
    settings = runtime.settings()
    sender = (
        "import tests.support.jobs as jobs; "
        "print(jobs.echo.send(value={'direct': True}).message_id)"
    )
    env = {"WCH_BROKER_URL": rabbitmq_url, "WCH_DATABASE_URL": settings.database_url, "PATH": "/usr/bin:/bin"}
    sent = subprocess.run([sys.executable, "-c", sender], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=60, check=True)
    message_id = sent.stdout.strip().splitlines()[-1]

    wait_for(lambda: fresh(message_id) is not None, what="a ledger row for the message")
    job = wait_status(message_id, "succeeded")
    assert job.type == "echo" and job.queue == "sync"
    assert job.args == {"value": {"direct": True}} and json.dumps(job.result) == '{"direct": true}'
