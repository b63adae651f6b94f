"""Ledger upkeep and the hourly trigger: result expiry, ledger retention, and the schedule that runs them hourly."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from tests.support.apps import on_both_databases
from tests.support.services import BIN, ROOT, wait_for
from wch.actors.maintenance import trigger_hourly_work
from wch.db import db, transaction, utcnow
from wch.jobs import DispatchError, queries, upkeep
from wch.jobs.schedule import claim_slot, hour_slot
from wch.models import Job, JobAttempt


def finished_job(status: str, *, finished_days_ago: float, result=None, result_expires_in: float | None = None) -> str:
    now = utcnow()
    job = Job(id=f"{status}-{finished_days_ago}-{result_expires_in}", type="echo", queue="sync", args={},
              status=status, attempts=1, enqueued_at=now - timedelta(days=finished_days_ago, minutes=1),
              finished_at=now - timedelta(days=finished_days_ago) if status != "queued" else None,
              digest="x", result=result,
              result_expires_at=now + timedelta(seconds=result_expires_in) if result_expires_in is not None else None)
    db.session.add(job)
    db.session.add(JobAttempt(job_id=job.id, number=1, started_at=job.enqueued_at, outcome=status))
    db.session.commit()
    return job.id


@on_both_databases
def test_expire_results_clears_only_expired_results(app):
    expired = finished_job("succeeded", finished_days_ago=0.1, result={"n": 1}, result_expires_in=-1)
    kept = finished_job("succeeded", finished_days_ago=0, result={"n": 2}, result_expires_in=3600)

    with transaction():
        assert upkeep.expire_results() == 1
    db.session.expire_all()
    assert db.session.get(Job, expired).result is None
    with pytest.raises(DispatchError, match="expired"):
        queries.result(expired)
    assert queries.result(kept) == {"n": 2}


@on_both_databases
def test_purge_ledger_deletes_old_finished_jobs_and_their_attempts(app):
    old = [finished_job(status, finished_days_ago=20) for status in ("succeeded", "failed", "canceled")]
    pending = finished_job("queued", finished_days_ago=20)
    recent = finished_job("succeeded", finished_days_ago=1)

    assert upkeep.purge_ledger(retention_days=14) == 3
    db.session.expire_all()
    assert set(db.session.scalars(select(Job.id))) == {pending, recent}
    assert set(db.session.scalars(select(JobAttempt.job_id))) == {pending, recent}
    assert all(db.session.get(Job, job_id) is None for job_id in old)


def cleanup_jobs() -> int:
    count = db.session.scalar(select(func.count()).select_from(Job).where(Job.type == "cleanup_carts"))
    db.session.rollback()
    return count


@on_both_databases
def test_hourly_trigger_dispatches_the_hourly_work_once_an_hour(app):
    first = trigger_hourly_work()
    second = trigger_hourly_work()  # a second scheduler, started by mistake, fires in the same hour

    assert len(first) == 3 and second == []
    assert cleanup_jobs() == 1
    types = set(db.session.scalars(select(Job.type).where(Job.id.in_(first))))
    assert types == {"cleanup_carts", "expire_results", "purge_ledger"}

    # Next hour: the work is dispatched again.
    assert claim_slot("hourly", hour_slot(utcnow() + timedelta(hours=1)))


@on_both_databases
def test_two_schedulers_firing_at_the_same_moment_dispatch_one_cleanup(app):
    results = []
    barrier = threading.Barrier(2)

    def fire():
        with app.app_context():
            barrier.wait()
            results.append(trigger_hourly_work())
            db.session.remove()

    threads = [threading.Thread(target=fire) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(len(r) for r in results) == [0, 3]
    assert cleanup_jobs() == 1


def test_periodiq_schedule_lists_the_hourly_cleanup_and_the_outbox_relay(rabbitmq_url, tmp_path):
    env = os.environ | {
        "WCH_BROKER_URL": rabbitmq_url,
        "WCH_DATABASE_URL": f"sqlite:///{tmp_path / 'wch.sqlite3'}",
    }
    scheduler = subprocess.Popen([str(BIN / "periodiq"), "wch.actors"], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(scheduler.stdout), daemon=True)
    reader.start()
    try:
        wait_for(lambda: any("relay_outbox@" in line for line in lines)
                 and any("trigger_hourly_work@" in line for line in lines),
                 timeout=30, what="periodiq to print its schedule")
    finally:
        os.killpg(scheduler.pid, signal.SIGINT)
        scheduler.wait(timeout=20)
        reader.join(timeout=5)

    schedule = {line.split("] ", 1)[-1].strip() for line in lines}
    entries = {entry.rsplit(" ", 1)[-1]: entry.rsplit(" ", 1)[0].strip() for entry in schedule if "@" in entry}
    assert entries["wch.actors.maintenance:trigger_hourly_work@maintenance"].endswith("0 * * * *"), lines
    assert entries["wch.actors.maintenance:relay_outbox@maintenance"].endswith("* * * * *"), lines
