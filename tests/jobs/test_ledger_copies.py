"""Which copy of a job's message runs (StubBroker, fast): duplicates, early retries, redeliveries, far-off retries."""

from __future__ import annotations

import pytest

from tests.support.apps import run_jobs
from tests.support.jobs import copy_of as message_copy
from wch.db import db, utcnow
from wch.jobs import dispatcher, outbox, queries
from wch.jobs.middleware import FixedRetries, Ledger
from wch.models import Job, WorkerProcess


def running(job_id: str, *, worker: str = "elsewhere:1") -> Job:
    """Mark the job as running its first attempt, as a worker elsewhere that took it would."""
    job = db.session.get(Job, job_id)
    job.status, job.attempts, job.started_at, job.worker = "running", 1, utcnow(), worker
    db.session.commit()
    return job


def alive(worker: str) -> None:
    """Record a fresh heartbeat of ``worker``."""
    now = utcnow()
    host, pid = worker.rsplit(":", 1)
    db.session.add(WorkerProcess(id=worker, host=host, pid=int(pid), queues=["sync"], threads=1, started_at=now,
                                 heartbeat_at=now))
    db.session.commit()


def unpublished_commit() -> None:
    """Commit without publishing: the test publishes the copies it wants."""
    db.session.info.pop(outbox.SESSION_KEY, None)
    db.session.commit()


def copy_of(job_id: str, *, attempt: int):
    message = message_copy(db.session.get(Job, job_id), attempt=attempt).message()
    db.session.rollback()
    return message


@pytest.fixture
def redelivering(broker, monkeypatch):
    """Mark every message the stub worker receives as redelivered, as RabbitMQ does after a worker died."""
    from dramatiq.broker import MessageProxy

    monkeypatch.setattr(MessageProxy, "redelivered", True, raising=False)


def test_second_copy_of_a_running_job_is_skipped(app, broker, stub_worker, tmp_path):
    marker = tmp_path / "runs"
    job = dispatcher.dispatch("echo", {"marker": str(marker)})
    unpublished_commit()
    running(job.id)

    broker.enqueue(copy_of(job.id, attempt=0))  # published again (by the relay, say) while it runs
    run_jobs(broker, stub_worker)

    db.session.expire_all()
    assert not marker.exists()
    assert db.session.get(Job, job.id).status == "running"


def test_retry_that_arrives_before_the_previous_outcome_is_recorded_runs(app, broker, stub_worker, tmp_path):
    marker = tmp_path / "runs"
    job = dispatcher.dispatch("echo", {"value": 7, "marker": str(marker)})
    unpublished_commit()
    running(job.id)

    broker.enqueue(copy_of(job.id, attempt=1))  # the retry of attempt 1, published by its worker
    run_jobs(broker, stub_worker)

    db.session.expire_all()
    job = db.session.get(Job, job.id)
    assert marker.read_text().splitlines() == ["ran"]
    assert (job.status, job.attempts, job.result) == ("succeeded", 2, 7)


def test_redelivered_copy_of_a_dead_workers_job_runs_again_when_its_type_is_safe_to_repeat(
    app, broker, stub_worker, redelivering, tmp_path
):
    marker = tmp_path / "runs"
    job = dispatcher.dispatch("safe_echo", {"value": 7, "marker": str(marker)})
    unpublished_commit()
    running(job.id)  # on a worker that never heart-beat: gone

    broker.enqueue(copy_of(job.id, attempt=0))
    run_jobs(broker, stub_worker)

    db.session.expire_all()
    job = db.session.get(Job, job.id)
    assert (job.status, job.attempts) == ("succeeded", 2)
    assert [a.outcome for a in job.attempt_log] == ["interrupted", "succeeded"]
    assert job.attempt_log[0].worker == "elsewhere:1"
    assert marker.read_text().splitlines() == ["ran"]


def test_redelivered_copy_of_a_dead_workers_job_fails_it_when_it_may_not_be_repeated(
    app, broker, stub_worker, redelivering, tmp_path
):
    marker = tmp_path / "runs"
    job = dispatcher.dispatch("echo", {"value": 7, "marker": str(marker)})
    unpublished_commit()
    running(job.id)

    broker.enqueue(copy_of(job.id, attempt=0))
    run_jobs(broker, stub_worker)

    db.session.expire_all()
    job = db.session.get(Job, job.id)
    assert (job.status, job.attempts) == ("failed", 1)
    assert job.last_error == "interrupted; not retried because it may have run (its worker elsewhere:1 stopped)"
    assert [a.outcome for a in job.attempt_log] == ["interrupted"]
    assert not marker.exists()


def test_redelivered_copy_of_a_job_whose_worker_still_heart_beats_is_left_to_it(
    app, broker, stub_worker, redelivering, monkeypatch, tmp_path
):
    ledger = next(m for m in broker.middleware if isinstance(m, Ledger))
    monkeypatch.setattr(ledger, "worker_lost_after", 1)
    marker = tmp_path / "runs"
    job = dispatcher.dispatch("safe_echo", {"marker": str(marker)})
    unpublished_commit()
    running(job.id, worker="busy-host:42")
    alive("busy-host:42")  # its connection to RabbitMQ dropped, not the worker

    broker.enqueue(copy_of(job.id, attempt=0))
    broker.queues["sync"].join()  # the copy is put off (in sync.DQ) until the worker would count as lost
    row = db.session.get(Job, job.id)
    row.status, row.finished_at = "succeeded", utcnow()  # ... and meanwhile the worker finishes the job
    db.session.commit()
    run_jobs(broker, stub_worker)

    db.session.expire_all()
    assert not marker.exists(), "the copy was not run beside the worker that had it"
    assert db.session.get(Job, job.id).status == "succeeded"


def test_stale_copy_of_a_retrying_job_is_skipped(app, broker, stub_worker, redelivering, tmp_path):
    marker = tmp_path / "runs"
    job = dispatcher.dispatch("echo", {"marker": str(marker)})
    unpublished_commit()
    running(job.id)
    row = db.session.get(Job, job.id)
    row.status = "retrying"
    db.session.commit()

    # The first attempt's message, redelivered after RabbitMQ came back; its retry is the outbox's to publish.
    broker.enqueue(copy_of(job.id, attempt=0))
    run_jobs(broker, stub_worker)

    db.session.expire_all()
    assert not marker.exists() and db.session.get(Job, job.id).status == "retrying"


def test_retry_later_than_the_broker_may_hold_is_left_to_the_relay(app, broker, stub_worker, monkeypatch, tmp_path):
    retries = next(m for m in broker.middleware if isinstance(m, FixedRetries))
    monkeypatch.setattr(retries, "max_delay", 0.05)  # the retry delays in tests are 0.1 s
    marker = tmp_path / "runs"
    job = dispatcher.dispatch("fail_then_succeed", {"marker": str(marker), "failures": 1})
    db.session.commit()
    run_jobs(broker, stub_worker)

    db.session.expire_all()
    row = db.session.get(Job, job.id)
    assert (row.status, row.attempts, row.published_at) == ("retrying", 1, None)
    assert row.eta is not None

    db.session.rollback()  # the relay marks what it publishes itself: no transaction of ours may hold SQLite's lock
    assert outbox.relay() == 1
    run_jobs(broker, stub_worker)
    db.session.expire_all()
    row = db.session.get(Job, job.id)
    assert (row.status, row.attempts, row.result) == ("succeeded", 2, 2)


def test_late_periodic_trigger_skipped_by_periodiq_is_not_left_running(app, broker, stub_worker):
    from datetime import timedelta

    from wch.actors.maintenance import trigger_hourly_work

    message = trigger_hourly_work.send_with_options(scheduled_at=(utcnow() - timedelta(minutes=5)).isoformat())
    run_jobs(broker, stub_worker)

    db.session.expire_all()
    job = db.session.get(Job, message.message_id)
    assert job.status == "canceled" and "too late" in job.last_error
    assert [a.outcome for a in job.attempt_log] == ["skipped"]
    assert queries.pending_counts() == {}, "the hourly work was not dispatched"


def test_retry_of_a_unique_job_superseded_by_a_newer_pending_one_is_canceled_and_the_newer_one_runs(
    app, broker, stub_worker, tmp_path
):
    from tests.support.services import wait_for

    started, release = tmp_path / "started", tmp_path / "release"
    first = dispatcher.dispatch("fail_when_released", {"started": str(started), "release": str(release),
                                                       "marker": str(tmp_path / "first")}, unique="product:7")
    db.session.commit()
    wait_for(started.exists, what="the first job to start")
    # A new change to the same product while the first sync runs: a second job.
    args = {"started": str(started), "release": str(release), "marker": str(tmp_path / "second")}
    second = dispatcher.dispatch("fail_when_released", args, unique="product:7")
    db.session.commit()
    assert second.id != first.id

    release.touch()  # the first fails; its retry would make two pending jobs for one key

    def first_finished():
        db.session.rollback()
        status = queries.status(first.id)
        db.session.rollback()
        return status in ("canceled", "succeeded", "failed")

    wait_for(first_finished, what="the first job to finish")
    db.session.expire_all()
    first = db.session.get(Job, first.id)
    assert first.status == "canceled" and "a newer job with the same dedupe key is pending" in first.last_error
    assert first.attempts == 1, "the superseded retry did not run"
    run_jobs(broker, stub_worker)  # the second waited while the first held the key; it runs now
    db.session.expire_all()
    second = db.session.get(Job, second.id)
    assert (second.status, second.attempts) == ("succeeded", 2)
    assert (tmp_path / "second").read_text().splitlines() == ["ran", "ran"]
