"""Cart statistics and the cleanup of expired carts."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select

from wch.db import db, utcnow
from wch.models import Cart, CartStatus, CleanupRun

# Carts that never turned into an order; completed ones are kept.
UNCONVERTED = (CartStatus.ACTIVE.value, CartStatus.ABANDONED.value)


def expiry_cutoff(expiry_hours: int, *, now: datetime | None = None) -> datetime:
    return (now or utcnow()) - timedelta(hours=expiry_hours)


def cleanup_expired_carts(
    *,
    expiry_hours: int,
    batch_size: int,
    trigger: str,
    progress: Callable[[int], None] | None = None,
) -> CleanupRun:
    """Delete unconverted carts idle longer than ``expiry_hours``, ``batch_size`` per transaction.

    Each batch is its own short transaction, so the web app and workers are
    never locked out for long and memory does not grow with the number of
    carts. ``progress`` is called with the number deleted after each batch.
    """
    cutoff = expiry_cutoff(expiry_hours)
    run = CleanupRun(trigger=trigger, cutoff=cutoff, started_at=utcnow(), deleted=0, batches=0)
    db.session.add(run)
    db.session.commit()
    run_id = run.id

    started = time.perf_counter()
    deleted = batches = 0
    longest = 0.0
    expired = (
        select(Cart.id)
        .where(Cart.status.in_(UNCONVERTED), Cart.updated_at < cutoff)
        .limit(batch_size)
        .scalar_subquery()
    )
    while True:
        batch_started = time.perf_counter()
        count = db.session.execute(delete(Cart).where(Cart.id.in_(expired))).rowcount
        db.session.commit()
        longest = max(longest, time.perf_counter() - batch_started)
        if count == 0:
            break
        deleted += count
        batches += 1
        if progress is not None:
            progress(count)

    run = db.session.get(CleanupRun, run_id)
    run.deleted, run.batches = deleted, batches
    run.finished_at = utcnow()
    run.duration_seconds = time.perf_counter() - started
    run.longest_batch_seconds = longest
    db.session.commit()
    return run


def count_expired(expiry_hours: int) -> int:
    cutoff = expiry_cutoff(expiry_hours)
    query = select(func.count()).select_from(Cart).where(Cart.status.in_(UNCONVERTED), Cart.updated_at < cutoff)
    return db.session.scalar(query)


def cart_stats(expiry_hours: int) -> dict[str, Any]:
    """Carts by status, expired ones awaiting cleanup, and the last cleanup run."""
    counts = dict(db.session.execute(select(Cart.status, func.count()).group_by(Cart.status)).all())
    last = db.session.scalars(select(CleanupRun).order_by(CleanupRun.started_at.desc()).limit(1)).first()
    return {
        **{status.value: counts.get(status.value, 0) for status in CartStatus},
        "expired_awaiting_cleanup": count_expired(expiry_hours),
        "last_cleanup": last.to_dict() if last else None,
    }
