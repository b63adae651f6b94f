"""Publish jobs after their transaction commits, and relay those that could not be.

The ledger row is the outbox: a job whose row has no ``published_at`` has not
reached RabbitMQ yet. Publishing after commit means a worker never sees a job
whose row a rollback erased; the relay means a job dispatched while RabbitMQ
was down still runs once it is back. A job published twice is harmless: the
ledger middleware runs a job only while its row is pending.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import dramatiq
from dramatiq.errors import BrokerConnectionError
from sqlalchemy import event, or_, select, update
from sqlalchemy.orm import Session

from wch import runtime
from wch.db import db, read_only, utcnow
from wch.jobs.messages import job_message
from wch.models import Job, JobStatus
from wch.models.jobs import PENDING

logger = logging.getLogger(__name__)

SESSION_KEY = "wch_outbox"


@dataclass(frozen=True)
class OutboxEntry:
    """What publishing a job needs, copied from its row before commit expires it."""

    id: str
    type: str
    queue: str
    args: dict[str, Any]
    eta: datetime | None
    enqueued_at: datetime
    retries: int
    attempt: int = 0

    @classmethod
    def of(cls, job: Job) -> OutboxEntry:
        retries = _retries_used(job) if job.status == JobStatus.RETRYING.value else 0
        return cls(job.id, job.type, job.queue, dict(job.args or {}), job.eta, job.enqueued_at, retries, job.attempts)

    def message(self) -> dramatiq.Message:
        return job_message(id=self.id, type=self.type, queue=self.queue, args=self.args,
                           enqueued_at=self.enqueued_at, attempt=self.attempt, retries=self.retries)


def _retries_used(job: Job) -> int:
    """Retries of the current schedule already spent: the attempts since the job was last (re)queued."""
    used = 0
    for attempt in reversed(job.attempt_log):
        if attempt.outcome == "interrupted":
            continue  # a worker died; RabbitMQ redelivered the attempt without spending a retry
        if attempt.outcome != "retrying":
            break
        used += 1
    return used


def publish_after_commit(job: Job) -> None:
    """Queue ``job`` for publishing when the current transaction commits."""
    db.session.info.setdefault(SESSION_KEY, []).append(OutboxEntry.of(job))


@event.listens_for(Session, "after_commit")
def _publish_committed(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a savepoint was released; the real commit is still to come
    entries = session.info.pop(SESSION_KEY, None)
    if entries:
        try:
            publish(entries)
        except Exception:
            # The rows are committed; failing the caller now would make it
            # dispatch again (a webhook sender retries on a 5xx). The relay publishes them.
            logger.exception("Could not publish %d committed job(s); the outbox relay will.", len(entries))


@event.listens_for(Session, "after_soft_rollback")
def _forget_rolled_back(session: Session, previous_transaction) -> None:
    if previous_transaction.parent is None:
        session.info.pop(SESSION_KEY, None)


def publish(entries: Iterable[OutboxEntry]) -> int:
    """Publish what is due now; the rest stays in the outbox. Returns how many were published."""
    state = runtime.current()
    publisher = state.publisher
    if publisher is None:
        return 0
    max_delay = state.settings.max_broker_delay
    now = utcnow()
    published = []
    for entry in entries:
        delay_ms = None
        if entry.eta is not None and entry.eta > now:
            delay_ms = int((entry.eta - now).total_seconds() * 1000)
            if delay_ms > max_delay * 1000:
                continue  # RabbitMQ must not hold it that long; the relay publishes it nearer the time
        try:
            publisher.enqueue(entry.message(), delay=delay_ms)
        except (BrokerConnectionError, ValueError) as error:
            # (pika raises ValueError when the socket is reset during its handshake.)
            logger.warning("RabbitMQ is unreachable (%s); jobs wait in the outbox for the relay.", error)
            break
        published.append(entry)
    if published:
        by_attempt: dict[int, list[str]] = {}
        for entry in published:
            by_attempt.setdefault(entry.attempt, []).append(entry.id)
        with db.engine.begin() as connection:
            for attempt, ids in by_attempt.items():
                # A worker may have run this copy already and left a retry for the
                # relay: marking that pending row would hide the retry from it.
                connection.execute(
                    update(Job)
                    .where(Job.id.in_(ids), Job.published_at.is_(None))
                    .where(or_(Job.attempts == attempt, Job.status.not_in(PENDING)))
                    .values(published_at=utcnow())
                )
    return len(published)


def relay(*, limit: int = 1000) -> int:
    """Publish jobs left unpublished that are due within the broker's delay limit."""
    settings = runtime.settings()
    now = utcnow()
    query = (
        select(Job)
        .where(
            Job.published_at.is_(None),
            Job.status.in_(PENDING),
            # The committing process publishes straight away; leave fresh rows to it.
            Job.enqueued_at < now - timedelta(seconds=settings.relay_grace),
            or_(Job.eta.is_(None), Job.eta <= now + timedelta(seconds=settings.max_broker_delay)),
        )
        .order_by(Job.enqueued_at)
        .limit(limit)
    )
    with read_only():
        entries = [OutboxEntry.of(job) for job in db.session.scalars(query)]
    return publish(entries)
