"""The lifeline and the staff's "end a stuck job", on the StubBroker (fast, in one process), on both databases.

The real faults they answer (a worker SIGKILLed, a message purged from
RabbitMQ) are in ``test_faults.py``; here each decision is checked on its own.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update

from tests.support.apps import on_both_databases, run_jobs, stub_worker_for
from wch.db import db, utcnow
from wch.jobs import dispatcher, lifeline
from wch.jobs.policy import RepeatPolicy
from wch.models import Job, WorkerProcess

LOST_AFTER = 60


def rescue(**options):
    db.session.commit()  # SQLite: the sweep writes; no transaction of ours may hold the lock
    return lifeline.rescue(rescue_after=600, worker_lost_after=LOST_AFTER, max_broker_delay=600, **options)


def lose_messages(broker) -> None:
    """RabbitMQ loses every message it holds (the stub's queues are emptied)."""
    broker.flush_all()


def run_after_the_loss(app, broker) -> None:
    """Start a worker only now, so that none takes a message before the test has lost it; run the jobs."""
    with stub_worker_for(app, broker) as worker:
        run_jobs(broker, worker)


def age(job_id: str, **values) -> None:
    """Move the job's timestamps (``published_at=minutes``...) back in time."""
    now = utcnow()
    db.session.execute(update(Job).where(Job.id == job_id)
                       .values({name: now - timedelta(minutes=minutes) for name, minutes in values.items()}))
    db.session.commit()


def running_on(job_id: str, worker: str, *, minutes: float = 2) -> None:
    now = utcnow()
    db.session.execute(update(Job).where(Job.id == job_id).values(
        status="running", attempts=1, worker=worker, started_at=now - timedelta(minutes=minutes)))
    db.session.commit()


def heartbeat(worker: str) -> None:
    host, pid = worker.rsplit(":", 1)
    now = utcnow()
    db.session.add(WorkerProcess(id=worker, host=host, pid=int(pid), queues=["sync"], threads=4, started_at=now,
                                 heartbeat_at=now))
    db.session.commit()


def job(job_id: str) -> Job:
    db.session.expire_all()
    return db.session.get(Job, job_id)


@on_both_databases
def test_job_published_long_ago_and_never_claimed_is_published_again_and_runs_once(app, broker, tmp_path):
    marker = tmp_path / "runs"
    lost = dispatcher.dispatch("echo", {"marker": str(marker)})
    later = dispatcher.dispatch("echo", {"value": "not due yet"}, delay=3600)
    db.session.commit()
    lose_messages(broker)
    age(lost.id, published_at=11)
    age(later.id, published_at=11)  # published long ago, but not due: RabbitMQ may well still hold it

    assert rescue().to_dict() == {"republished": 1, "retried": 0, "failed": 0}
    run_after_the_loss(app, broker)
    assert job(lost.id).status == "succeeded" and marker.read_text().splitlines() == ["ran"]
    assert job(later.id).status == "queued"
    assert rescue().republished == 0, "republished just now, and ran"


def test_job_waiting_for_a_running_job_with_its_key_is_left_waiting(app, broker):
    first = dispatcher.dispatch("echo", {"value": 1}, unique="product:7")
    db.session.commit()
    running_on(first.id, "alive-host:1", minutes=0)
    heartbeat("alive-host:1")
    second = dispatcher.dispatch("echo", {"value": 2}, unique="product:7")
    db.session.commit()
    age(second.id, published_at=11)
    assert rescue().republished == 0, "it is published when the running job ends"


@on_both_databases
def test_running_job_of_a_silent_worker_is_retried_if_safe_to_repeat_and_failed_otherwise(
    app, broker, tmp_path
):
    safe = dispatcher.dispatch("safe_echo", {"value": "again", "marker": str(tmp_path / "safe")})
    unsafe = dispatcher.dispatch("echo", {"value": "once", "marker": str(tmp_path / "unsafe")})
    db.session.commit()
    lose_messages(broker)  # RabbitMQ had handed them to the worker that died
    running_on(safe.id, "gone-host:7")
    running_on(unsafe.id, "gone-host:7")
    heartbeat("gone-host:7")
    db.session.execute(update(WorkerProcess).values(heartbeat_at=utcnow() - timedelta(seconds=LOST_AFTER + 5)))
    db.session.commit()

    assert rescue().to_dict() == {"republished": 0, "retried": 1, "failed": 1}
    run_after_the_loss(app, broker)

    retried = job(safe.id)
    assert (retried.status, retried.attempts, retried.result) == ("succeeded", 2, "again")
    assert [a.outcome for a in retried.attempt_log] == ["interrupted", "succeeded"]
    assert retried.attempt_log[0].error == "interrupted (its worker gone-host:7 stopped heart-beating); retried"
    failed = job(unsafe.id)
    assert (failed.status, failed.attempts) == ("failed", 1)
    assert failed.last_error == ("interrupted; not retried because it may have run "
                                 "(its worker gone-host:7 stopped heart-beating)")
    assert not (tmp_path / "unsafe").exists()


def test_running_job_of_a_live_worker_is_left_to_it_until_far_past_its_time_limit(app, broker):
    recent = dispatcher.dispatch("safe_echo", {"value": 1})
    stuck = dispatcher.dispatch("safe_echo", {"value": 2})
    db.session.commit()
    heartbeat("busy-host:3")
    running_on(recent.id, "busy-host:3", minutes=5)
    # The test actors' time limit is Dramatiq's default, 10 minutes; past it by more than a minute.
    running_on(stuck.id, "busy-host:3", minutes=12)

    assert rescue().to_dict() == {"republished": 0, "retried": 1, "failed": 0}
    assert job(recent.id).status == "running"
    assert job(stuck.id).last_error == "interrupted (it ran past its time limit of 600 s); retried"


def test_interrupted_job_with_no_retry_left_fails(app, broker):
    job_id = dispatcher.dispatch("safe_echo", {"value": 1}).id
    db.session.commit()
    running_on(job_id, "gone-host:8")

    no_retries = RepeatPolicy(safe_to_repeat=True, retries=0, time_limit=600)
    assert rescue(policy=lambda type: no_retries).failed == 1
    assert job(job_id).last_error == "interrupted (its worker gone-host:8 stopped heart-beating); no retries left"


@on_both_databases
def test_unique_dispatch_of_a_lost_jobs_key_publishes_it_again(app, broker, tmp_path):
    marker = tmp_path / "runs"
    first = dispatcher.dispatch("echo", {"marker": str(marker)}, unique="cart:3")
    db.session.commit()
    lose_messages(broker)
    age(first.id, published_at=11)

    again = dispatcher.dispatch("echo", {"marker": str(marker)}, unique="cart:3")
    db.session.commit()
    assert again.id == first.id
    run_after_the_loss(app, broker)
    assert job(first.id).status == "succeeded" and marker.read_text().splitlines() == ["ran"]


def test_staff_fail_a_running_job_whose_worker_is_gone_and_the_job_waiting_for_its_key_runs(
    app, broker, tmp_path
):
    stuck = dispatcher.dispatch("echo", {"value": 1}, unique="product:9")
    db.session.commit()
    running_on(stuck.id, "gone-host:4")
    waiting = dispatcher.dispatch("echo", {"value": 2}, unique="product:9")
    db.session.commit()
    lose_messages(broker)  # its copy was skipped while the key was held

    dispatcher.end_stuck(stuck.id)
    db.session.commit()
    run_after_the_loss(app, broker)

    assert job(stuck.id).status == "failed"
    assert job(stuck.id).last_error == "interrupted; ended by staff because its worker gone-host:4 is gone"
    assert job(waiting.id).status == "succeeded"
    retried = dispatcher.retry(stuck.id)
    assert retried.status == "queued"


def test_staff_cannot_fail_a_running_job_whose_worker_is_alive(app):
    busy = dispatcher.dispatch("echo", {"value": 1})
    db.session.commit()
    heartbeat("busy-host:5")
    running_on(busy.id, "busy-host:5")

    with pytest.raises(dispatcher.DispatchError, match="which is alive"):
        dispatcher.end_stuck(busy.id)
    with pytest.raises(dispatcher.DispatchError, match="only running jobs"):
        dispatcher.end_stuck(dispatcher.dispatch("echo", {"value": 2}).id)
    db.session.rollback()
    assert job(busy.id).status == "running"
