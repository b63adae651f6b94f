"""Upkeep that keeps the ledger bounded, and the claim that makes periodic work run once."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from wch.db import db, utcnow
from wch.models import Job, ScheduleSlot, WorkerProcess
from wch.models.jobs import FINISHED

PURGE_BATCH = 5000
GONE_WORKERS = timedelta(days=1)


def hour_slot(now: datetime | None = None) -> str:
    return (now or utcnow()).strftime("%Y-%m-%dT%H")


def claim_slot(name: str, slot: str) -> bool:
    """Claim ``name`` for ``slot``; only the first caller, in any process, gets True.

    The claim belongs to the caller's transaction: commit it together with the
    jobs it guards, so a crash in between leaves neither (a concurrent claimer
    waits for that commit, then gets False).
    """
    try:
        with db.session.begin_nested():
            db.session.add(ScheduleSlot(name=name, slot=slot, claimed_at=utcnow()))
    except IntegrityError:
        return False
    return True


def expire_results() -> int:
    now = utcnow()
    count = db.session.execute(
        update(Job)
        .where(Job.result_expires_at.is_not(None), Job.result_expires_at <= now)
        .values(result=None, result_expires_at=None)
    ).rowcount
    db.session.commit()
    return count


def purge_ledger(*, retention_days: int) -> int:
    """Delete finished jobs older than the retention, in short batches."""
    cutoff = utcnow() - timedelta(days=retention_days)
    purged = 0
    for status in FINISHED:
        old = (
            select(Job.id)
            .where(Job.status == status, Job.finished_at < cutoff)
            .limit(PURGE_BATCH)
            .scalar_subquery()
        )
        while count := db.session.execute(delete(Job).where(Job.id.in_(old))).rowcount:
            db.session.commit()
            purged += count
    db.session.execute(delete(ScheduleSlot).where(ScheduleSlot.claimed_at < cutoff))
    db.session.execute(delete(WorkerProcess).where(WorkerProcess.heartbeat_at < utcnow() - GONE_WORKERS))
    db.session.commit()
    return purged
