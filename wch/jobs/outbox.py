"""Publish jobs once their transaction commits, and relay those that could not be published.

A job due within ``WCH_MAX_BROKER_DELAY`` is written already marked published
(``published_at``) in the caller's transaction, and handed to the process's
publisher (:mod:`wch.jobs.publisher`) when that transaction commits: a worker
never sees a job whose row a rollback erased, and the caller pays for one
commit, not for RabbitMQ's round trip or a second write. When RabbitMQ refuses
a copy or cannot be reached, the publisher's thread clears ``published_at``
again and the relay publishes the job later. Jobs due later, and every job
of a process with no publisher (the in-process stub broker), are written
unpublished and left to the relay.

A crash between the commit and the publish leaves a row marked published
that RabbitMQ never got: the lifeline (:mod:`wch.jobs.lifeline`) publishes it
again once it has waited ``WCH_RESCUE_AFTER``. A job published twice is
harmless: the ledger middleware runs a job only while its row is pending.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from functools import partial

from flask import Flask, current_app
from sqlalchemy import and_, event, or_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from wch import runtime
from wch.db import core_transaction, db, utcnow
from wch.jobs.messages import JobCopy
from wch.jobs.publisher import Handoff
from wch.models import Job, JobAttempt, JobStatus
from wch.models.jobs import PENDING

logger = logging.getLogger(__name__)

SESSION_KEY = "wch_outbox"
JOBS = Job.__table__
ATTEMPTS = JobAttempt.__table__
# The columns a job's copy is built from.
COPY_COLUMNS = (JOBS.c.id, JOBS.c.type, JOBS.c.queue, JOBS.c.args, JOBS.c.eta, JOBS.c.enqueued_at,
                JOBS.c.attempts, JOBS.c.status)
# Outcomes of attempts that spent a retry of the current schedule.
SPENT_A_RETRY = ("retrying", "interrupted")
RELAY_WAIT = 30.0


def publishes_now(eta: datetime | None, now: datetime) -> bool:
    """Whether a job due at ``eta`` is handed to RabbitMQ straight after commit, rather than left to the relay."""
    state = runtime.current()
    if state.publisher is None:
        return False
    return eta is None or eta <= now + timedelta(seconds=state.settings.max_broker_delay)


def publish_after_commit(copies: Iterable[JobCopy]) -> None:
    """Hand ``copies`` to the publisher when the current transaction commits; forget them if it rolls back."""
    db.session.info.setdefault(SESSION_KEY, []).extend(copies)


@event.listens_for(Session, "after_commit")
def _publish_committed(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a savepoint was released; the real commit is still to come
    copies = session.info.pop(SESSION_KEY, None)
    if copies:
        try:
            hand_over(copies)
        except Exception:
            # The rows are committed; failing the caller now would make it
            # dispatch again (a webhook sender retries on a 5xx). The lifeline publishes them.
            logger.exception("Could not hand %d committed job(s) to the publisher.", len(copies))


@event.listens_for(Session, "after_soft_rollback")
def _forget_rolled_back(session: Session, previous_transaction) -> None:
    if previous_transaction.parent is None:
        session.info.pop(SESSION_KEY, None)


def hand_over(copies: Sequence[JobCopy]) -> Handoff:
    """Give committed, marked copies to this process's publisher; those it cannot publish go back to the outbox."""
    publisher = runtime.current().publisher
    app = current_app._get_current_object()
    if publisher is None:
        # A process without a publisher marked them (a command on the stub broker): the relay's, then.
        _put_back(app, list(copies))
        return Handoff(0, None)
    return publisher.publish(copies, on_failed=partial(_put_back, app))


def _put_back(app: Flask, copies: list[JobCopy]) -> None:
    """Clear ``published_at`` of copies RabbitMQ did not take, so the relay publishes them."""
    logger.warning("RabbitMQ did not take %d job(s); they wait in the outbox for the relay.", len(copies))
    by_attempt: dict[int, list[str]] = {}
    for copy in copies:
        by_attempt.setdefault(copy.attempt, []).append(copy.id)
    with app.app_context(), core_transaction() as connection:
        for attempt, ids in by_attempt.items():
            # Only the copy's own attempt: a row that moved on since is not this copy's any more.
            connection.execute(
                update(JOBS)
                .where(JOBS.c.id.in_(ids), JOBS.c.attempts == attempt, JOBS.c.status.in_(PENDING))
                .values(published_at=None)
            )


def relay(*, limit: int = 1000) -> int:
    """Publish jobs left unpublished that are due within the broker's delay limit; return how many RabbitMQ took.

    Waits (up to 30 s) for RabbitMQ's confirms; those it refuses stay in the outbox.
    """
    state = runtime.current()
    if state.publisher is None:
        return 0
    now = utcnow()
    due = and_(
        JOBS.c.published_at.is_(None),
        JOBS.c.status.in_(PENDING),
        or_(JOBS.c.eta.is_(None), JOBS.c.eta <= now + timedelta(seconds=state.settings.max_broker_delay)),
    )
    with core_transaction() as connection:
        ids = connection.scalars(select(JOBS.c.id).where(due).order_by(JOBS.c.enqueued_at).limit(limit)).all()
        if not ids:
            return 0
        # Marked by this statement only: a relay running elsewhere meanwhile publishes the others.
        rows = connection.execute(
            update(JOBS).where(JOBS.c.id.in_(ids), due).values(published_at=now).returning(*COPY_COLUMNS)
        ).all()
        copies = copies_of(connection, rows)
    return hand_over(copies).wait(RELAY_WAIT)


def copies_of(connection: Connection, rows: Sequence) -> list[JobCopy]:
    """The copies to publish for job rows (:data:`COPY_COLUMNS`) whose next attempt is due."""
    retrying = [row.id for row in rows if row.status == JobStatus.RETRYING.value]
    spent = retries_spent(connection, retrying) if retrying else {}
    return [
        JobCopy(row.id, row.type, row.queue, dict(row.args or {}), row.eta, row.enqueued_at, row.attempts,
                spent.get(row.id, 0))
        for row in rows
    ]


def retries_spent(connection: Connection, job_ids: Sequence[str]) -> dict[str, int]:
    """Retries of each job's current schedule already spent: its latest attempts that ended retrying or interrupted.

    A failed (or canceled) attempt ends a schedule; staff retrying the job start a fresh one.
    """
    rows = connection.execute(
        select(ATTEMPTS.c.job_id, ATTEMPTS.c.outcome)
        .where(ATTEMPTS.c.job_id.in_(job_ids))
        .order_by(ATTEMPTS.c.job_id, ATTEMPTS.c.number.desc())
    )
    spent: dict[str, int] = {}
    ended: set[str] = set()
    for job_id, outcome in rows:
        if job_id in ended:
            continue
        if outcome in SPENT_A_RETRY:
            spent[job_id] = spent.get(job_id, 0) + 1
        else:
            ended.add(job_id)
    return spent
