"""The one way jobs are created, retried, canceled and ended.

Webhooks, the admin panel, the command line and jobs themselves call these
inside an app context. Dispatch writes the ledger row in the caller's
transaction, already marked published, and :mod:`wch.jobs.outbox` hands the
job to the publisher once that transaction commits. A refusal raises
:class:`DispatchError` and writes nothing.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from functools import cache
from typing import Any

import dramatiq
from dramatiq.errors import ActorNotFound
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from wch import runtime
from wch.db import db, insert_unless_present, utcnow
from wch.jobs import attempts, outbox
from wch.jobs.messages import JobCopy, args_digest
from wch.jobs.outbox import COPY_COLUMNS, JOBS
from wch.jobs.types import JobType
from wch.models import Job, JobStatus, WorkerProcess
from wch.models.jobs import PENDING, PENDING_SQL

# Executed with many rows, it has no RETURNING (the ids are made here), so they go to the driver's
# executemany: one short statement, prepared once and pipelined by psycopg. A multi-row INSERT of 1,000
# rows costs more in psycopg's placeholder conversion (not cached for long statements) than the
# database takes to store the rows.
_INSERT = insert(JOBS)


class DispatchError(ValueError):
    """A request the dispatcher refuses; nothing was written."""


class UnknownJobType(DispatchError):
    pass


class JobNotFound(DispatchError):
    pass


def dispatch(
    job_type: JobType | str,
    args: dict[str, Any] | None = None,
    *,
    delay: float | timedelta | None = None,
    unique: bool | str = False,
) -> Job:
    """Create a job that runs ``job_type``'s actor with ``args`` as keyword arguments.

    ``delay`` (seconds or a timedelta) postpones it. ``unique=True`` returns
    the pending job with the same type and arguments instead of adding a
    second one; a string is used as the dedupe key instead of the arguments
    (``unique="42"``: one pending job of this type for product 42). While a
    job with the key runs, a new one is added; it waits for the running one
    to finish. The caller commits; the job is published after.
    """
    type = str(job_type)
    queue = actor_of(type).queue_name
    now = utcnow()
    row = _row(job_type, queue, _validated_args(args), now=now, eta=_eta(delay, now))
    if unique:
        row["dedupe_key"] = row["digest"] if unique is True else dedupe_key_of(type, unique)
        existing = _insert_unless_pending([row], now=now)
        if existing:
            return existing[0]
    else:
        # On the session's connection, in the caller's transaction, without the ORM's bookkeeping.
        db.session.connection().execute(_INSERT, row)
    if row["published_at"] is not None:
        outbox.publish_after_commit([_copy(row)])
    return Job(**row)


def dispatch_many(
    job_type: JobType | str,
    items: Iterable[dict[str, Any]],
    *,
    delay: float | timedelta | None = None,
    unique: Callable[[dict[str, Any]], str] | None = None,
) -> list[str]:
    """Create one job per item of ``items`` (each the job's arguments), in as few statements as possible.

    For bulk work: the rows are written with one executemany in the caller's
    transaction and published together after commit. ``unique`` gives each
    item's dedupe key (as ``dispatch(..., unique=key)``); an item whose key is
    pending already is dropped. Returns the ids of the jobs created.
    """
    type = str(job_type)
    queue = actor_of(type).queue_name
    now = utcnow()
    eta = _eta(delay, now)
    rows = [_row(job_type, queue, _validated_args(args), now=now, eta=eta) for args in items]
    if unique is not None:
        for row in rows:
            row["dedupe_key"] = dedupe_key_of(type, unique(row["args"]))
    if not rows:
        return []
    connection = db.session.connection()
    if unique is None:
        connection.execute(_INSERT, rows)
        created = rows
    else:
        inserted = set(connection.scalars(_insert_one_ignoring_pending(connection.dialect.name), rows))
        created = [row for row in rows if row["id"] in inserted]
    outbox.publish_after_commit(_copy(row) for row in created if row["published_at"] is not None)
    return [row["id"] for row in created]


def _row(job_type: JobType | str, queue: str, args: dict[str, Any], *, now: datetime,
         eta: datetime | None) -> dict[str, Any]:
    type = str(job_type)
    return {
        "id": str(uuid.uuid4()), "type": type, "queue": queue, "args": args,
        "status": JobStatus.QUEUED.value, "attempts": 0, "enqueued_at": now, "eta": eta,
        "digest": args_digest(type, args), "dedupe_key": None,
        "subject": job_type.subject_of(args) if isinstance(job_type, JobType) else None,
        # Marked now, in the caller's transaction: no second write once it is published.
        "published_at": now if outbox.publishes_now(eta, now) else None,
    }


def _copy(row: dict[str, Any]) -> JobCopy:
    return JobCopy(row["id"], row["type"], row["queue"], row["args"], row["eta"], row["enqueued_at"])


def _eta(delay: float | timedelta | None, now: datetime) -> datetime | None:
    seconds = delay.total_seconds() if isinstance(delay, timedelta) else delay
    if seconds is not None and not seconds >= 0:
        raise DispatchError(f"delay must be a number of seconds, 0 or more, got {delay}")
    return now + timedelta(seconds=seconds) if seconds else None


def _insert_unless_pending(rows: list[dict[str, Any]], *, now: datetime) -> list[Job]:
    """Insert the row unless a job with its dedupe key is pending; return that job instead (locked until commit)."""
    [row] = rows
    key = row["dedupe_key"]
    connection = db.session.connection()
    statement = _insert_one_ignoring_pending(connection.dialect.name)
    for _ in range(3):
        if connection.execute(statement, row).first() is not None:
            return []
        existing = _pending_with_key(key)
        if existing is not None:
            _republish_if_lost(existing, now)
            return [existing]
        # It was claimed between the two statements: the key is free for a pending job again.
    raise DispatchError(f"could not dispatch a job with dedupe key {key}: it keeps changing hands")


@cache
def _insert_one_ignoring_pending(dialect: str):
    """``INSERT ... ON CONFLICT DO NOTHING RETURNING id`` against the pending-dedupe-key index: no savepoint needed."""
    return insert_unless_present(JOBS, dialect=dialect, index_elements=[JOBS.c.dedupe_key],
                                 index_where=PENDING_SQL).returning(JOBS.c.id)


def _republish_if_lost(job: Job, now: datetime) -> None:
    """Publish a pending job again if it was published long ago and never claimed: its message may be lost.

    So a unique dispatch never keeps returning a job that will not run; the
    lifeline does the same for every job, once a minute.
    """
    rescue_after = timedelta(seconds=runtime.settings().rescue_after)
    if job.published_at is None or job.published_at > now - rescue_after:
        return
    if (job.eta is not None and job.eta > now - rescue_after) or not outbox.publishes_now(job.eta, now):
        return
    job.published_at = now
    connection = db.session.connection()
    outbox.publish_after_commit(outbox.copies_of(connection, [job]))


def release_key(job_id: str) -> None:
    """Let a running job's dedupe key go before the job ends, so the next job with that key may start at once.

    For a job that dispatches its own successor and may overlap with it (a
    campaign's batches); call it in the transaction that dispatches the
    successor. The running job's row keeps no dedupe key afterwards.
    """
    db.session.execute(update(Job).where(Job.id == job_id, Job.status == JobStatus.RUNNING.value)
                       .values(dedupe_key=None))


def cancel(job_id: str) -> Job:
    """Cancel a queued or retrying job; a worker that receives it skips it.

    A refusal changes nothing and leaves the caller's transaction as it was.
    """
    job = get_job(job_id)
    result = db.session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status.in_(PENDING))
        .values(status=JobStatus.CANCELED.value, finished_at=utcnow(), eta=None)
    )
    db.session.refresh(job)
    if result.rowcount != 1:
        raise DispatchError(f"job {job_id} is {job.status}; only queued or retrying jobs can be canceled")
    return job


def retry(job_id: str) -> Job:
    """Run a failed (or canceled) job again, with a fresh retry schedule.

    A refusal changes nothing and leaves the caller's transaction as it was.
    """
    job = get_job(job_id)
    if retry_many([job_id]) != [job_id]:
        db.session.refresh(job)
        if job.status in (JobStatus.FAILED.value, JobStatus.CANCELED.value):
            pending = _pending_with_key(job.dedupe_key)
            raise DispatchError(f"job {job_id} cannot be retried: job {pending.id if pending else '?'} "
                                "with the same dedupe key is pending")
        raise DispatchError(f"job {job_id} is {job.status}; only failed or canceled jobs can be retried")
    db.session.refresh(job)
    return job


def retry_many(job_ids: Iterable[str]) -> list[str]:
    """Run these failed (or canceled) jobs again; return the ids of those that will.

    Jobs without a dedupe key are requeued in one statement. A job with one
    is left as it is when another job with its key is pending (only one may
    be), as is any job that is not failed or canceled.
    """
    ids = list(dict.fromkeys(job_ids))
    now = utcnow()
    values = dict(status=JobStatus.QUEUED.value, eta=None, finished_at=None, result=None, result_expires_at=None,
                  published_at=now if outbox.publishes_now(None, now) else None)
    retryable = JOBS.c.status.in_((JobStatus.FAILED.value, JobStatus.CANCELED.value))
    rows = db.session.execute(
        update(JOBS).where(JOBS.c.id.in_(ids), retryable, JOBS.c.dedupe_key.is_(None))
        .values(**values).returning(*COPY_COLUMNS)
    ).all() if ids else []
    keyed = db.session.scalars(select(JOBS.c.id).where(JOBS.c.id.in_(ids), retryable,
                                                       JOBS.c.dedupe_key.is_not(None))).all() if ids else []
    for job_id in keyed:
        try:
            with db.session.begin_nested():
                rows += db.session.execute(
                    update(JOBS).where(JOBS.c.id == job_id, retryable).values(**values).returning(*COPY_COLUMNS)
                ).all()
        except IntegrityError:
            continue  # a job with the same dedupe key is pending
    if values["published_at"] is not None:
        outbox.publish_after_commit(outbox.copies_of(db.session.connection(), rows))
    retried = {row.id for row in rows}
    return [job_id for job_id in ids if job_id in retried]


def retry_failed(job_type: JobType | str | None = None, *, limit: int = 1000) -> list[str]:
    """Retry up to ``limit`` failed jobs, newest first, optionally of one type; return the ids retried.

    Jobs that cannot be retried any more (retried meanwhile by someone else, or
    a unique job whose successor is pending) are left as they are.
    """
    query = select(Job.id).where(Job.status == JobStatus.FAILED.value)
    if job_type is not None:
        query = query.where(Job.type == str(job_type))
    return retry_many(db.session.scalars(query.order_by(Job.finished_at.desc()).limit(limit)).all())


def end_stuck(job_id: str) -> Job:
    """Fail a running job whose worker is gone (silent longer than ``WCH_WORKER_LOST_AFTER``), so it can be retried.

    A running job whose worker is alive is refused: it may still finish.
    The lifeline ends such jobs by itself within a minute or two; this is for
    staff who will not wait.
    """
    job = get_job(job_id)
    now = utcnow()
    if job.status != JobStatus.RUNNING.value:
        raise DispatchError(f"job {job_id} is {job.status}; only running jobs whose worker is gone can be ended")
    lost_after = timedelta(seconds=runtime.settings().worker_lost_after)
    beat = db.session.scalar(select(WorkerProcess.heartbeat_at).where(WorkerProcess.id == job.worker))
    if beat is not None and beat > now - lost_after:
        raise DispatchError(f"job {job_id} is running on {job.worker}, which is alive; it can only be ended "
                            "once that worker is gone")
    attempt = attempts.running_attempt(job)
    connection = db.session.connection()
    attempts.finish(connection, attempt, status=JobStatus.FAILED.value, outcome="interrupted", now=now,
                    error=f"interrupted; ended by staff because its worker {job.worker} is gone")
    outbox.publish_after_commit(attempts.wake_successor(
        connection, job.dedupe_key, now=now, max_delay=runtime.settings().max_broker_delay))
    db.session.refresh(job)
    return job


def find_pending(job_type: JobType | str, unique: str) -> Job | None:
    """The pending job ``dispatch(job_type, ..., unique=unique)`` would return instead of adding one."""
    return _pending_with_key(dedupe_key_of(str(job_type), unique))


def dedupe_key_of(type: str, unique: str) -> str:
    """The dedupe key a unique dispatch by a string key stores: ``<type>:<key>``."""
    return f"{type}:{unique}"


def get_job(job_id: str) -> Job:
    job = db.session.get(Job, job_id)
    if job is None:
        raise JobNotFound(f"no job with id {job_id}")
    return job


def job_types() -> list[str]:
    """Every job type the workers can run."""
    return sorted(dramatiq.get_broker().get_declared_actors())


def actor_of(type: str) -> dramatiq.Actor:
    try:
        return dramatiq.get_broker().get_actor(type)
    except ActorNotFound:
        known = ", ".join(job_types()) or "none"
        raise UnknownJobType(f"unknown job type {type!r} (known: {known})") from None


def _validated_args(args: dict[str, Any] | None) -> dict[str, Any]:
    if args is None:
        return {}
    if not isinstance(args, dict):
        raise DispatchError(f"job arguments must be a JSON object of keyword arguments, got {type(args).__name__}")
    try:
        return json.loads(json.dumps(args, allow_nan=False))
    except (TypeError, ValueError) as error:
        raise DispatchError(f"job arguments must be JSON: {error}") from None


def _pending_with_key(dedupe_key: str | None) -> Job | None:
    # FOR UPDATE (PostgreSQL): a worker claiming this job waits until the caller
    # commits, so it reads the change the caller folded into it, not the one before.
    query = select(Job).where(Job.dedupe_key == dedupe_key, Job.status.in_(PENDING)).limit(1).with_for_update()
    return db.session.scalars(query).first()

