"""The cleanup of expired carts: in batches, on both databases, from the command line and as the hourly job."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select, update

from tests.support.apps import on_both_databases, run_jobs
from wch.actors.maintenance import trigger_hourly_work
from wch.carts.cleanup import cleanup_expired_carts
from wch.db import db, utcnow
from wch.models import Cart, CleanupRun, Job

BATCH_SIZE = 3


@pytest.fixture
def env():
    """A small cleanup batch, so a few carts take several batches."""
    return {"WCH_CLEANUP_BATCH_SIZE": str(BATCH_SIZE)}


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
def carts(app):
    """10 expired carts (active and abandoned, idle past 72 h) among completed and recent ones."""
    expired = add_carts("active", 100, 7) + add_carts("abandoned", 72.5, 3)
    kept = add_carts("completed", 200, 2) + add_carts("active", 71, 2) + add_carts("abandoned", 10, 1)
    db.session.commit()
    return {"expired": set(expired), "kept": set(kept)}


def cart_ids() -> set[int]:
    ids = set(db.session.scalars(select(Cart.id)))
    db.session.rollback()
    return ids


@on_both_databases
def test_cleanup_deletes_only_unconverted_carts_idle_past_the_expiry_in_batches(app, carts):
    progress = []
    started = utcnow()
    run = cleanup_expired_carts(expiry_hours=72, recovery_window_hours=168, batch_size=BATCH_SIZE, trigger="test",
                                progress=progress.append)

    assert cart_ids() == carts["kept"]
    assert sum(progress) == 10 and max(progress) == BATCH_SIZE, progress
    assert 4 <= len(progress) <= 5, "batches of at most the batch size (one status at a time)"
    run = db.session.get(CleanupRun, run.id)
    assert (run.deleted, run.batches, run.trigger) == (10, len(progress), "test")
    assert abs((run.cutoff - (started - timedelta(hours=72))).total_seconds()) < 5
    assert run.finished_at >= run.started_at and run.duration_seconds >= run.longest_batch_seconds >= 0

    again = cleanup_expired_carts(expiry_hours=72, recovery_window_hours=168, batch_size=BATCH_SIZE, trigger="test")
    assert (again.deleted, again.batches) == (0, 0)
    assert cart_ids() == carts["kept"]


@on_both_databases
def test_cleanup_expiry_hours_come_from_the_setting(app, carts):
    run = cleanup_expired_carts(expiry_hours=24, recovery_window_hours=168, batch_size=BATCH_SIZE, trigger="test")
    # At 24 h the active carts idle 71 h expire too; the 10 h one and completed ones stay.
    assert run.deleted == 12
    assert len(cart_ids()) == 3


@on_both_databases
def test_carts_cli_stats_and_cleanup(app, carts):
    runner = app.test_cli_runner()

    before = runner.invoke(args=["carts", "stats", "--json"])
    assert before.exit_code == 0, before.output
    assert json.loads(before.output) == {
        "active": 9, "abandoned": 4, "completed": 2, "expired_awaiting_cleanup": 10, "last_cleanup": None,
        "reminded": 0, "recovered": 0, "recovered_revenue": "0.00",
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


@on_both_databases
def test_carts_cleanup_json(app, carts):
    result = app.test_cli_runner().invoke(args=["carts", "cleanup", "--json"])
    assert result.exit_code == 0, result.output
    run = json.loads(result.output)  # the progress bar stays out of the JSON
    assert (run["deleted"], run["trigger"]) == (10, "cli") and run["batches"] >= 4
    assert run["duration_seconds"] >= 0 and run["cutoff"]


def test_the_hourly_cleanup_job_runs_and_records_its_run(app, broker, stub_worker):
    add_carts("active", 100, 4)
    add_carts("completed", 100, 1)
    db.session.commit()

    trigger_hourly_work()
    run_jobs(broker, stub_worker)

    db.session.expire_all()
    run = db.session.scalars(select(CleanupRun)).one()
    assert (run.trigger, run.deleted) == ("schedule", 4)
    assert {j.status for j in db.session.scalars(select(Job))} == {"succeeded"}



@on_both_databases
def test_a_reminded_cart_is_kept_past_the_expiry_until_its_recovery_window_ends(app):
    now = utcnow()
    [within, past] = add_carts("abandoned", 100, 2)
    for cart_id, reminded_hours_ago in ((within, 60), (past, 200)):  # a 168 h window: one within, one past
        db.session.execute(update(Cart).where(Cart.id == cart_id).values(
            reminder_sent_at=now - timedelta(hours=reminded_hours_ago), updated_at=Cart.updated_at))
    db.session.commit()
    stats = json.loads(app.test_cli_runner().invoke(args=["carts", "stats", "--json"]).output)
    assert stats["expired_awaiting_cleanup"] == 1

    run = cleanup_expired_carts(expiry_hours=72, recovery_window_hours=168, batch_size=BATCH_SIZE, trigger="test")
    assert run.deleted == 1 and cart_ids() == {within}
