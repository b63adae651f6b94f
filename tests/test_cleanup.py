"""Hourly maintenance: cart cleanup, result expiry, ledger retention, and the schedule that runs them once an hour."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from tests.apps import inside, make_app, run_jobs, settings_for
from tests.support import BIN, ROOT, wait_for
from wch import dispatcher, maintenance
from wch.actors.maintenance import hourly
from wch.carts import cleanup_expired_carts
from wch.db import db, utcnow
from wch.models import Cart, CleanupRun, Job, JobAttempt

BATCH_SIZE = 3


@pytest.fixture
def db_app(database_url, broker):
    """An app on a fresh SQLite, then PostgreSQL, database with a small cleanup batch."""
    with inside(make_app(settings_for(database_url, WCH_CLEANUP_BATCH_SIZE=str(BATCH_SIZE)), broker)) as app:
        yield app


def add_carts(status: str, idle_hours: float, count: int) -> list[int]:
    now = utcnow()
    carts = [
        Cart(customer_phone=f"+1555{i:07d}", customer_name="Ana", items=[{"sku": "A1", "qty": 1}],
             total=Decimal("19.90"), currency="EUR", status=status,
             created_at=now - timedelta(hours=idle_hours + 1), updated_at=now - timedelta(hours=idle_hours))
        for i in range(count)
    ]
    db.session.add_all(carts)
    db.session.flush()
    return [cart.id for cart in carts]


@pytest.fixture
def carts(db_app):
    """10 expired carts (active and abandoned, idle past 72 h) among completed and recent ones."""
    expired = add_carts("active", 100, 7) + add_carts("abandoned", 72.5, 3)
    kept = add_carts("completed", 200, 2) + add_carts("active", 71, 2) + add_carts("abandoned", 10, 1)
    db.session.commit()
    return {"expired": set(expired), "kept": set(kept)}


def cart_ids() -> set[int]:
    ids = set(db.session.scalars(select(Cart.id)))
    db.session.rollback()
    return ids


def test_cleanup_deletes_only_unconverted_carts_idle_past_the_expiry_in_batches(db_app, carts):
    progress = []
    started = utcnow()
    run = cleanup_expired_carts(expiry_hours=72, batch_size=BATCH_SIZE, trigger="test", progress=progress.append)

    assert cart_ids() == carts["kept"]
    assert sum(progress) == 10 and max(progress) == BATCH_SIZE, progress
    assert 4 <= len(progress) <= 5, "batches of at most the batch size (one status at a time)"
    run = db.session.get(CleanupRun, run.id)
    assert (run.deleted, run.batches, run.trigger) == (10, len(progress), "test")
    assert abs((run.cutoff - (started - timedelta(hours=72))).total_seconds()) < 5
    assert run.finished_at >= run.started_at and run.duration_seconds >= run.longest_batch_seconds >= 0

    again = cleanup_expired_carts(expiry_hours=72, batch_size=BATCH_SIZE, trigger="test")
    assert (again.deleted, again.batches) == (0, 0)
    assert cart_ids() == carts["kept"]


def test_cleanup_expiry_hours_come_from_the_setting(db_app, carts):
    run = cleanup_expired_carts(expiry_hours=24, batch_size=BATCH_SIZE, trigger="test")
    # At 24 h the active carts idle 71 h expire too; the 10 h one and completed ones stay.
    assert run.deleted == 12
    assert len(cart_ids()) == 3


def test_carts_cli_stats_and_cleanup(db_app, carts):
    runner = db_app.test_cli_runner()

    before = runner.invoke(args=["carts", "stats", "--json"])
    assert before.exit_code == 0, before.output
    assert json.loads(before.output) == {
        "active": 9, "abandoned": 4, "completed": 2, "expired_awaiting_cleanup": 10, "last_cleanup": None,
    }

    cleaned = runner.invoke(args=["carts", "cleanup"])
    assert cleaned.exit_code == 0, cleaned.output
    assert "Deleting expired carts" in cleaned.output  # the progress bar's label
    assert "deleted 10 cart(s)" in cleaned.output

    after = json.loads(runner.invoke(args=["carts", "stats", "--json"]).output)
    assert {k: after[k] for k in ("active", "abandoned", "completed", "expired_awaiting_cleanup")} == {
        "active": 2, "abandoned": 1, "completed": 2, "expired_awaiting_cleanup": 0,
    }
    assert after["last_cleanup"]["deleted"] == 10 and after["last_cleanup"]["batches"] >= 4
    assert after["last_cleanup"]["trigger"] == "cli"

    text = runner.invoke(args=["carts", "stats"]).output
    assert "expired awaiting cleanup: 0" in text and "deleted 10" in text
    assert cart_ids() == carts["kept"]


def test_carts_cleanup_json(db_app, carts):
    result = db_app.test_cli_runner().invoke(args=["carts", "cleanup", "--json"])
    assert result.exit_code == 0, result.output
    run = json.loads(result.output)  # the progress bar stays out of the JSON
    assert (run["deleted"], run["trigger"]) == (10, "cli") and run["batches"] >= 4
    assert run["duration_seconds"] >= 0 and run["cutoff"]


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


def test_expire_results_clears_only_expired_results(db_app):
    expired = finished_job("succeeded", finished_days_ago=0.1, result={"n": 1}, result_expires_in=-1)
    kept = finished_job("succeeded", finished_days_ago=0, result={"n": 2}, result_expires_in=3600)

    assert maintenance.expire_results() == 1
    db.session.expire_all()
    assert db.session.get(Job, expired).result is None
    with pytest.raises(dispatcher.DispatchError, match="expired"):
        dispatcher.result(expired)
    assert dispatcher.result(kept) == {"n": 2}


def test_purge_ledger_deletes_old_finished_jobs_and_their_attempts(db_app):
    old = [finished_job(status, finished_days_ago=20) for status in ("succeeded", "failed", "canceled")]
    pending = finished_job("queued", finished_days_ago=20)
    recent = finished_job("succeeded", finished_days_ago=1)

    assert maintenance.purge_ledger(retention_days=14) == 3
    db.session.expire_all()
    assert set(db.session.scalars(select(Job.id))) == {pending, recent}
    assert set(db.session.scalars(select(JobAttempt.job_id))) == {pending, recent}
    assert all(db.session.get(Job, job_id) is None for job_id in old)


def cleanup_jobs() -> int:
    count = db.session.scalar(select(func.count()).select_from(Job).where(Job.type == "cleanup_carts"))
    db.session.rollback()
    return count


def test_hourly_trigger_dispatches_the_hourly_work_once_an_hour(db_app):
    first = hourly()
    second = hourly()  # a second scheduler, started by mistake, fires in the same hour

    assert len(first) == 3 and second == []
    assert cleanup_jobs() == 1
    types = set(db.session.scalars(select(Job.type).where(Job.id.in_(first))))
    assert types == {"cleanup_carts", "expire_results", "purge_ledger"}

    # Next hour: the work is dispatched again.
    assert maintenance.claim_slot("hourly", maintenance.hour_slot(utcnow() + timedelta(hours=1)))


def test_two_schedulers_firing_at_the_same_moment_dispatch_one_cleanup(db_app):
    results = []
    barrier = threading.Barrier(2)

    def fire():
        with db_app.app_context():
            barrier.wait()
            results.append(hourly())
            db.session.remove()

    threads = [threading.Thread(target=fire) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(len(r) for r in results) == [0, 3]
    assert cleanup_jobs() == 1


def test_the_hourly_cleanup_job_runs_and_records_its_run(app, broker, stub_worker):
    add_carts("active", 100, 4)
    add_carts("completed", 100, 1)
    db.session.commit()

    hourly()
    run_jobs(broker, stub_worker)

    db.session.expire_all()
    run = db.session.scalars(select(CleanupRun)).one()
    assert (run.trigger, run.deleted) == ("schedule", 4)
    assert {j.status for j in db.session.scalars(select(Job))} == {"succeeded"}


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
        wait_for(lambda: any("relay_outbox@" in line for line in lines) and any("hourly@" in line for line in lines),
                 timeout=30, what="periodiq to print its schedule")
    finally:
        os.killpg(scheduler.pid, signal.SIGINT)
        scheduler.wait(timeout=20)
        reader.join(timeout=5)

    schedule = {line.split("] ", 1)[-1].strip() for line in lines}
    entries = {entry.rsplit(" ", 1)[-1]: entry.rsplit(" ", 1)[0].strip() for entry in schedule if "@" in entry}
    assert entries["wch.actors.maintenance:hourly@maintenance"].endswith("0 * * * *"), lines
    assert entries["wch.actors.maintenance:relay_outbox@maintenance"].endswith("* * * * *"), lines
