"""Upkeep that keeps the ledger bounded: expired results cleared, old finished jobs purged."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, select, update

from wch.db import db, transaction, utcnow
from wch.jobs.types import JobType
from wch.models import Job, ScheduleSlot, WorkerProcess
from wch.models.jobs import FINISHED

EXPIRE_RESULTS = JobType("expire_results", queue="maintenance")
PURGE_LEDGER = JobType("purge_ledger", queue="maintenance")

PURGE_BATCH = 5000
GONE_WORKERS = timedelta(days=1)


def expire_results() -> int:
    """Clear the results whose time is up; returns how many. The caller commits."""
    now = utcnow()
    return db.session.execute(
        update(Job)
        .where(Job.result_expires_at.is_not(None), Job.result_expires_at <= now)
        .values(result=None, result_expires_at=None)
    ).rowcount


def purge_ledger(*, retention_days: int) -> int:
    """Delete finished jobs older than the retention, workers long gone and old schedule claims.

    Runs its own transactions: one per batch of :data:`PURGE_BATCH` jobs.
    """
    cutoff = utcnow() - timedelta(days=retention_days)
    purged = 0
    for status in FINISHED:
        old = (
            select(Job.id)
            .where(Job.status == status, Job.finished_at < cutoff)
            .limit(PURGE_BATCH)
            .scalar_subquery()
        )
        while True:
            with transaction():
                count = db.session.execute(delete(Job).where(Job.id.in_(old))).rowcount
            if not count:
                break
            purged += count
    with transaction():
        db.session.execute(delete(ScheduleSlot).where(ScheduleSlot.claimed_at < cutoff))
        db.session.execute(delete(WorkerProcess).where(WorkerProcess.heartbeat_at < utcnow() - GONE_WORKERS))
    return purged
