"""The lifeline: a sweep that leaves no job lost or stuck after a fault.

After Oban's Lifeline and Sidekiq's reliable fetch. It runs every minute as
the ``rescue_jobs`` job (dispatched by a periodic trigger), and on demand as
``wch jobs rescue``. Each run:

- publishes again every pending job that was published more than
  ``WCH_RESCUE_AFTER`` ago, has been due as long, and was never claimed: its
  message was lost (deleted from RabbitMQ, or published just before a crash).
  If the message was only slow, the ledger makes the second copy harmless. A
  job waiting for a running job that holds its dedupe key is left waiting.
- ends every running job whose worker has been silent (no heartbeat) for
  ``WCH_WORKER_LOST_AFTER``, or that has run that long past its time limit:
  a job type declared safe to repeat is retried (the interrupted attempt
  spends a retry); any other is failed with "interrupted; not retried because
  it may have run", for staff to retry or not.

A unique dispatch of a lost job's key republishes it the same way, so no
stale pending job blocks a key until the next sweep.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, exists, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased

from wch.db import core_transaction, utcnow
from wch.jobs import attempts, outbox
from wch.jobs.messages import JobCopy
from wch.jobs.outbox import COPY_COLUMNS, JOBS, copies_of, retries_spent
from wch.jobs.policy import RepeatPolicy, interrupted_error, repeat_policy
from wch.jobs.types import JobType
from wch.models import JobStatus, WorkerProcess
from wch.models.jobs import PENDING

logger = logging.getLogger(__name__)

RESCUE_JOBS = JobType("rescue_jobs", queue="maintenance")
BATCH = 500
CONFIRM_WAIT = 30.0
WORKERS = WorkerProcess.__table__


@dataclass
class Rescued:
    """What one sweep did: jobs published again, and interrupted jobs retried or failed."""

    republished: int = 0
    retried: int = 0
    failed: int = 0

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def rescue(*, rescue_after: float, worker_lost_after: float, max_broker_delay: float,
           policy: Callable[[str], RepeatPolicy] = repeat_policy, now: datetime | None = None) -> Rescued:
    """Sweep the ledger once (see the module's docstring). Runs its own transactions."""
    now = now or utcnow()
    rescued = Rescued(republished=republish_lost(rescue_after=rescue_after, now=now))
    for retried in end_interrupted(worker_lost_after=worker_lost_after, max_broker_delay=max_broker_delay,
                                   policy=policy, now=now):
        if retried:
            rescued.retried += 1
        else:
            rescued.failed += 1
    if rescued != Rescued():
        logger.warning("Lifeline: %s.", rescued.to_dict())
    return rescued


def republish_lost(*, rescue_after: float, now: datetime) -> int:
    """Publish again the pending jobs published long ago and never claimed; return how many RabbitMQ took."""
    cutoff = now - timedelta(seconds=rescue_after)
    holder = aliased(JOBS)
    lost = and_(
        JOBS.c.status.in_(PENDING),
        JOBS.c.published_at < cutoff,
        or_(JOBS.c.eta.is_(None), JOBS.c.eta < cutoff),
        # Skipped on purpose while a running job holds its key: it is published when that one ends.
        ~exists().where(holder.c.dedupe_key == JOBS.c.dedupe_key, holder.c.status == JobStatus.RUNNING.value),
    )
    republished = 0
    while True:
        with core_transaction() as connection:
            ids = connection.scalars(select(JOBS.c.id).where(lost).order_by(JOBS.c.published_at).limit(BATCH)).all()
            rows = connection.execute(
                update(JOBS).where(JOBS.c.id.in_(ids), lost).values(published_at=now).returning(*COPY_COLUMNS)
            ).all() if ids else []
            copies = copies_of(connection, rows)
        if copies:
            logger.warning("Lifeline: publishing %d job(s) again, published before %s and never claimed.",
                           len(copies), cutoff.isoformat())
            republished += outbox.hand_over(copies).wait(CONFIRM_WAIT)
        if len(ids) < BATCH:
            return republished


def end_interrupted(*, worker_lost_after: float, max_broker_delay: float,
                    policy: Callable[[str], RepeatPolicy] = repeat_policy, now: datetime) -> list[bool]:
    """End the running jobs whose worker is gone or that ran far past their time limit; one bool per job: retried?"""
    lost_after = timedelta(seconds=worker_lost_after)
    with core_transaction() as connection:
        rows = connection.execute(
            select(JOBS.c.id, JOBS.c.type, JOBS.c.attempts, JOBS.c.worker, JOBS.c.started_at, JOBS.c.dedupe_key,
                   WORKERS.c.heartbeat_at)
            .select_from(JOBS.outerjoin(WORKERS, WORKERS.c.id == JOBS.c.worker))
            # A job claimed a moment ago may belong to a worker that has not announced itself yet.
            .where(JOBS.c.status == JobStatus.RUNNING.value, JOBS.c.started_at < now - lost_after)
        ).all()
    ended = []
    for row in rows:
        repeat = policy(row.type)
        if row.heartbeat_at is None or row.heartbeat_at < now - lost_after:
            why = f"its worker {row.worker} stopped heart-beating"
        elif row.started_at < now - timedelta(seconds=repeat.time_limit) - lost_after:
            why = f"it ran past its time limit of {repeat.time_limit:g} s"
        else:
            continue
        retried = _end(row, repeat, why, max_broker_delay=max_broker_delay, now=now)
        if retried is not None:
            ended.append(retried)
    return ended


def _end(row, repeat: RepeatPolicy, why: str, *, max_broker_delay: float, now: datetime) -> bool | None:
    """End one interrupted attempt: retried (True), failed (False), or ``None`` if it ended meanwhile."""
    attempt = attempts.running_attempt(row)
    copies: list[JobCopy] = []
    try:
        with core_transaction() as connection:
            spent = retries_spent(connection, [row.id]).get(row.id, 0) + 1
            if repeat.safe_to_repeat and spent <= repeat.retries:
                published = outbox.publishes_now(None, now)
                if not attempts.finish(connection, attempt, status=JobStatus.RETRYING.value, outcome="interrupted",
                                       now=now, error=f"interrupted ({why}); retried", eta=None,
                                       published_at=now if published else None):
                    return None
                if published:
                    # Its retries, counted from the log, include the interrupted attempt just written.
                    copies = copies_of(connection, connection.execute(
                        select(*COPY_COLUMNS).where(JOBS.c.id == row.id)).all())
                retried = True
            else:
                if not attempts.finish(connection, attempt, status=JobStatus.FAILED.value, outcome="interrupted",
                                       now=now, error=interrupted_error(repeat.safe_to_repeat, why)):
                    return None
                copies = attempts.wake_successor(connection, row.dedupe_key, now=now, max_delay=max_broker_delay)
                retried = False
    except IntegrityError:
        # A newer job with its dedupe key is pending: that one runs instead of this retry.
        with core_transaction() as connection:
            attempts.finish(connection, attempt, status=JobStatus.CANCELED.value, outcome="interrupted", now=now,
                            error=f"interrupted ({why}); not retried: a newer job with the same dedupe key is pending")
            copies = attempts.wake_successor(connection, row.dedupe_key, now=now, max_delay=max_broker_delay)
        retried = False
    logger.warning("Lifeline: job %s %s: %s.", row.id, "retried" if retried else "ended", why)
    if copies:
        outbox.hand_over(copies)
    return retried
