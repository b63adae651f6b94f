"""An attempt's writes to the ledger: the claim that starts it and the outcome that ends it.

Every job goes through these, so they are Core statements, built once, on a
connection the caller holds (:func:`wch.db.core_transaction`), not ORM
objects: a claim is one ``UPDATE ... RETURNING``; an outcome is the job's row
and the attempt's log row, on PostgreSQL in one statement (the ``UPDATE`` in
a ``WITH`` clause of the log's ``INSERT``), and for a job with a dedupe key
the waking of the job that waits for it, in the same transaction. An
attempt's log row is written once, when it ends; while it runs, the job's
row says who runs it and since when.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import bindparam, or_, update
from sqlalchemy.engine import Connection

from wch.jobs.messages import JobCopy
from wch.jobs.outbox import ATTEMPTS, COPY_COLUMNS, JOBS, copies_of
from wch.models import JobStatus
from wch.models.jobs import PENDING

RUNNING = JobStatus.RUNNING.value


@dataclass(frozen=True)
class Attempt:
    """One run of a job.

    Parameters:
      job_id: the job.
      number: the attempt's number (the job's ``attempts`` while it runs).
      worker: the worker process running it (``host:pid``).
      started_at: when it was claimed.
      dedupe_key: the job's dedupe key, which the attempt holds while it runs.
    """

    job_id: str
    number: int
    worker: str
    started_at: datetime
    dedupe_key: str | None = None


# Bound parameters are prefixed: SQLAlchemy keeps bare column names for its own.
_CLAIM = (
    update(JOBS)
    .where(JOBS.c.id == bindparam("p_id"), JOBS.c.type == bindparam("p_type"), JOBS.c.status.in_(PENDING),
           JOBS.c.attempts == bindparam("p_after"))
    .values(status=RUNNING, attempts=JOBS.c.attempts + 1, started_at=bindparam("p_now", type_=JOBS.c.started_at.type),
            eta=None, worker=bindparam("p_worker"))
    .returning(JOBS.c.attempts, JOBS.c.dedupe_key)
)
_LOG = ATTEMPTS.insert().values(
    job_id=bindparam("p_id"), number=bindparam("p_number"), worker=bindparam("a_worker"),
    started_at=bindparam("a_started_at", type_=ATTEMPTS.c.started_at.type),
    finished_at=bindparam("a_finished_at", type_=ATTEMPTS.c.finished_at.type),
    outcome=bindparam("a_outcome"), error=bindparam("a_error"), traceback=bindparam("a_traceback"),
)


@cache
def _end(columns: frozenset[str]):
    """``UPDATE jobs SET <columns>`` while the attempt (``p_id``, ``p_number``) is the job's latest, running."""
    return (
        update(JOBS)
        .where(JOBS.c.id == bindparam("p_id"), JOBS.c.attempts == bindparam("p_number"), JOBS.c.status == RUNNING)
        .values({name: bindparam(f"v_{name}", type_=JOBS.c[name].type) for name in columns})
    )


@cache
def _end_and_log(columns: frozenset[str]):
    """PostgreSQL: :func:`_end` and :data:`_LOG` in one statement (a data-modifying ``WITH`` runs even unread)."""
    return _LOG.add_cte(_end(columns).returning(JOBS.c.id).cte("ended"))


def claim_next(connection: Connection, *, job_id: str, type: str, after: int, worker: str,
               now: datetime) -> Attempt | None:
    """Start the job's next attempt if the job is pending and its attempt count is still ``after``.

    ``None`` when the job is not in that state (no row, running, finished, or
    a copy older than its latest attempt); the caller looks closer. Raises
    ``IntegrityError`` when a running job holds the job's dedupe key.
    """
    row = connection.execute(
        _CLAIM, {"p_id": job_id, "p_type": type, "p_after": after, "p_now": now, "p_worker": worker}
    ).first()
    if row is None:
        return None
    return Attempt(job_id, row.attempts, worker, now, row.dedupe_key)


def claim_again(connection: Connection, running: Attempt, *, worker: str, now: datetime) -> Attempt | None:
    """Start the attempt after ``running`` while the job's row still shows ``running`` as its latest."""
    changed = connection.execute(
        update(JOBS)
        .where(JOBS.c.id == running.job_id, JOBS.c.status == RUNNING, JOBS.c.attempts == running.number)
        .values(attempts=running.number + 1, started_at=now, worker=worker)
    ).rowcount
    if not changed:
        return None
    return Attempt(running.job_id, running.number + 1, worker, now, running.dedupe_key)


def running_attempt(row: Any) -> Attempt:
    """The attempt a running job's row (id, attempts, worker, started_at, dedupe_key) describes."""
    return Attempt(row.id, row.attempts, row.worker or "?", row.started_at, row.dedupe_key)


def finish(connection: Connection, attempt: Attempt, *, status: str, outcome: str, now: datetime,
           error: str | None = None, traceback: str | None = None, **values: Any) -> bool:
    """End ``attempt``: the job takes ``status`` (and ``values``) while it is the job's latest attempt; log it.

    Returns whether the job's row changed (it does not when a later attempt
    took the job over, or the lifeline ended this one first).
    """
    columns, params = _ending(attempt, status, now, error, traceback, values)
    changed = connection.execute(_end(columns), params).rowcount
    connection.execute(_LOG, _log_params(attempt, outcome, now, error, traceback))
    return bool(changed)


def record(connection: Connection, attempt: Attempt, *, status: str, outcome: str, now: datetime,
           error: str | None = None, traceback: str | None = None, **values: Any) -> None:
    """:func:`finish`, without telling whether the job's row changed: one statement on PostgreSQL."""
    if connection.dialect.name != "postgresql":
        finish(connection, attempt, status=status, outcome=outcome, now=now, error=error, traceback=traceback,
               **values)
        return
    columns, params = _ending(attempt, status, now, error, traceback, values)
    connection.execute(_end_and_log(columns), params | _log_params(attempt, outcome, now, error, traceback))


def _ending(attempt: Attempt, status: str, now: datetime, error: str | None, traceback: str | None,
            values: dict[str, Any]) -> tuple[frozenset[str], dict[str, Any]]:
    values = {"status": status, **values}
    if status != JobStatus.RETRYING.value:
        values.setdefault("finished_at", now)
    if error is not None:
        values.update(last_error=error, traceback=traceback)
    params = {f"v_{name}": value for name, value in values.items()}
    return frozenset(values), params | {"p_id": attempt.job_id, "p_number": attempt.number}


def log(connection: Connection, attempt: Attempt, *, outcome: str, now: datetime, error: str | None = None,
        traceback: str | None = None) -> None:
    """Write the attempt's log row: who ran it, when, and how it ended."""
    connection.execute(_LOG, _log_params(attempt, outcome, now, error, traceback))


def _log_params(attempt: Attempt, outcome: str, now: datetime, error: str | None,
                traceback: str | None) -> dict[str, Any]:
    return {"p_id": attempt.job_id, "p_number": attempt.number, "a_worker": attempt.worker,
            "a_started_at": attempt.started_at, "a_finished_at": now, "a_outcome": outcome, "a_error": error,
            "a_traceback": traceback}


def wake_successor(connection: Connection, dedupe_key: str | None, *, now: datetime,
                   max_delay: float) -> list[JobCopy]:
    """Mark the pending job waiting for ``dedupe_key`` published again and return its copy to publish.

    Its copy was skipped while a running job held the key; the caller
    publishes it after commit. A job left to the relay (unpublished, or due
    later than RabbitMQ may hold it) is left alone.
    """
    if dedupe_key is None:
        return []
    rows = connection.execute(
        update(JOBS)
        .where(
            JOBS.c.dedupe_key == dedupe_key,
            JOBS.c.status.in_(PENDING),
            JOBS.c.published_at.is_not(None),
            or_(JOBS.c.eta.is_(None), JOBS.c.eta <= now + timedelta(seconds=max_delay)),
        )
        .values(published_at=now)
        .returning(*COPY_COLUMNS)
    ).all()
    return copies_of(connection, rows)

