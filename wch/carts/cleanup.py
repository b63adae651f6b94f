"""The cleanup of expired carts: unconverted carts idle past the expiry are deleted in short batches.

A cart that was reminded is kept until its recovery window has passed too,
so an order its customer places in that window still counts it recovered.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import delete, func, or_, select

from wch.db import db, transaction, utcnow
from wch.jobs import JobType, dispatch
from wch.models import Cart, CartStatus, CleanupRun, Job

CLEANUP_CARTS = JobType("cleanup_carts", queue="carts")

# Carts that never turned into an order; completed ones are kept.
UNCONVERTED = (CartStatus.ACTIVE.value, CartStatus.ABANDONED.value)


def expiry_cutoff(expiry_hours: int, *, now: datetime | None = None) -> datetime:
    return (now or utcnow()) - timedelta(hours=expiry_hours)


def _expired(expiry_hours: int, recovery_window_hours: int, now: datetime | None = None):
    """Unconverted carts idle past the expiry whose reminder (if any) is older than the recovery window."""
    now = now or utcnow()
    return (Cart.status.in_(UNCONVERTED), Cart.updated_at < expiry_cutoff(expiry_hours, now=now),
            or_(Cart.reminder_sent_at.is_(None),
                Cart.reminder_sent_at < now - timedelta(hours=recovery_window_hours)))


def cleanup_later(trigger: str, *, unique: bool = False) -> Job:
    """Dispatch a cleanup job; ``unique``: return the one already pending instead (a double click queues one)."""
    return dispatch(CLEANUP_CARTS, {"trigger": trigger}, unique=unique)


def cleanup_expired_carts(
    *,
    expiry_hours: int,
    recovery_window_hours: int,
    batch_size: int,
    trigger: str,
    progress: Callable[[int], None] | None = None,
) -> CleanupRun:
    """Delete unconverted carts idle longer than ``expiry_hours``, ``batch_size`` per transaction.

    A reminded cart is kept until ``recovery_window_hours`` after its reminder.

    Each batch is its own short transaction, so the web app and workers are
    never locked out for long and memory does not grow with the number of
    carts. ``progress`` is called with the number deleted after each batch.
    Runs its own transactions, and records the run.
    """
    cutoff = expiry_cutoff(expiry_hours)
    with transaction():
        run = CleanupRun(trigger=trigger, cutoff=cutoff, started_at=utcnow(), deleted=0, batches=0)
        db.session.add(run)
        db.session.flush()
        run_id = run.id

    started = time.perf_counter()
    deleted = batches = 0
    longest = 0.0
    expired = (
        select(Cart.id)
        .where(*_expired(expiry_hours, recovery_window_hours))
        .limit(batch_size)
        .scalar_subquery()
    )
    while True:
        batch_started = time.perf_counter()
        with transaction():
            count = db.session.execute(delete(Cart).where(Cart.id.in_(expired))).rowcount
        longest = max(longest, time.perf_counter() - batch_started)
        if count == 0:
            break
        deleted += count
        batches += 1
        if progress is not None:
            progress(count)

    with transaction():
        run = db.session.get(CleanupRun, run_id)
        run.deleted, run.batches = deleted, batches
        run.finished_at = utcnow()
        run.duration_seconds = time.perf_counter() - started
        run.longest_batch_seconds = longest
    return run


def count_expired(expiry_hours: int, recovery_window_hours: int) -> int:
    """How many carts the cleanup would delete now."""
    query = select(func.count()).select_from(Cart).where(*_expired(expiry_hours, recovery_window_hours))
    return db.session.scalar(query)
