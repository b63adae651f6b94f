"""The one way jobs are created, inspected, retried and canceled.

Webhooks, the admin panel and the CLI all call these functions inside a Flask
app context. Dispatch writes the ledger row in the caller's transaction; the
message is published by :mod:`wch.outbox` once that transaction commits.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

import dramatiq
from dramatiq.errors import ActorNotFound
from sqlalchemy import case, func, select, text, update
from sqlalchemy.exc import IntegrityError

from wch import outbox
from wch.db import db, utcnow
from wch.models import Job, JobStatus
from wch.models.jobs import PENDING


class DispatchError(ValueError):
    """A request the dispatcher refuses; nothing was written."""


class UnknownJobType(DispatchError):
    pass


class JobNotFound(DispatchError):
    pass


def dispatch(
    type: str,
    args: dict[str, Any] | None = None,
    *,
    delay: float | timedelta | None = None,
    unique: bool | str = False,
) -> Job:
    """Create a job of ``type`` that runs ``actor(**args)``.

    ``delay`` (seconds or a timedelta) postpones it. ``unique=True`` returns
    the pending job with the same type and arguments instead of adding a
    second one; a string is used as the dedupe key instead of the arguments
    (``unique="product:42"``). The caller commits; the job is published after.
    """
    actor = _actor(type)
    args = _validated_args(args)
    seconds = delay.total_seconds() if isinstance(delay, timedelta) else delay
    if seconds is not None and not seconds >= 0:
        raise DispatchError(f"delay must be a number of seconds, 0 or more, got {delay}")
    digest = args_digest(type, args)
    dedupe_key = None
    if unique:
        dedupe_key = digest if unique is True else f"{type}:{unique}"
        existing = _pending_with_key(dedupe_key)
        if existing is not None:
            return existing

    now = utcnow()
    job = Job(
        id=str(uuid.uuid4()),
        type=type,
        queue=actor.queue_name,
        args=args,
        status=JobStatus.QUEUED.value,
        attempts=0,
        enqueued_at=now,
        eta=now + timedelta(seconds=seconds) if seconds else None,
        digest=digest,
        dedupe_key=dedupe_key,
    )
    if dedupe_key is None:
        db.session.add(job)
        db.session.flush()
    else:
        try:
            with db.session.begin_nested():
                db.session.add(job)
        except IntegrityError:
            # Another transaction dispatched the same unique job first.
            existing = _pending_with_key(dedupe_key)
            if existing is None:
                raise
            return existing
    outbox.publish_after_commit(job)
    return job


def dispatch_batch(
    type: str,
    items: Iterable[dict[str, Any]],
    *,
    batch_size: int = 50,
    interval: float = 1.0,
) -> list[Job]:
    """Dispatch one job per item, ``batch_size`` at a time, each batch ``interval`` seconds after the last.

    Spreading the jobs out keeps a burst of work under a rate limit without
    holding anything in the worker.
    """
    if batch_size < 1:
        raise DispatchError("batch_size must be at least 1")
    if interval < 0:
        raise DispatchError("interval cannot be negative")
    _actor(type)
    jobs = []
    for index, args in enumerate(items):
        delay = (index // batch_size) * interval
        jobs.append(dispatch(type, args, delay=delay or None))
    return jobs


def cancel(job_id: str) -> Job:
    """Cancel a queued or retrying job; a worker that receives it skips it.

    A refusal changes nothing and leaves the caller's transaction as it was.
    """
    job = _get(job_id)
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
    job = _get(job_id)
    try:
        with db.session.begin_nested():
            result = db.session.execute(
                update(Job)
                .where(Job.id == job_id, Job.status.in_((JobStatus.FAILED.value, JobStatus.CANCELED.value)))
                .values(status=JobStatus.QUEUED.value, eta=None, finished_at=None, published_at=None,
                        result=None, result_expires_at=None)
            )
    except IntegrityError:
        pending = _pending_with_key(job.dedupe_key)
        raise DispatchError(
            f"job {job_id} cannot be retried: job {pending.id if pending else '?'} with the same dedupe key is pending"
        ) from None
    db.session.refresh(job)
    if result.rowcount != 1:
        raise DispatchError(f"job {job_id} is {job.status}; only failed or canceled jobs can be retried")
    outbox.publish_after_commit(job)
    return job


def retry_failed(type: str | None = None, *, limit: int = 1000) -> list[Job]:
    """Retry up to ``limit`` failed jobs, newest first, optionally of one type.

    Jobs that cannot be retried any more (retried meanwhile by someone else, or
    a unique job whose successor is pending) are left as they are.
    """
    retried = []
    for job in failed(limit, type=type):
        try:
            retried.append(retry(job.id))
        except DispatchError:
            continue
    return retried


def status(job_id: str) -> str:
    return _get(job_id).status


def result(job_id: str) -> Any:
    """The result of a succeeded job, while it is kept; raise if there is none."""
    job = _get(job_id)
    if job.status != JobStatus.SUCCEEDED.value:
        raise DispatchError(f"job {job_id} is {job.status}; only succeeded jobs have a result")
    if job.result_expires_at is None or job.result_expires_at <= utcnow():
        raise DispatchError(f"the result of job {job_id} has expired")
    return job.result


def is_scheduled(type: str, args: dict[str, Any] | None = None) -> bool:
    """Whether a job of this type with these arguments is waiting to run."""
    _actor(type)
    digest = args_digest(type, _validated_args(args))
    query = select(Job.id).where(Job.digest == digest, Job.status.in_(PENDING)).limit(1)
    return db.session.execute(query).first() is not None


def pending_counts() -> dict[str, dict[str, int]]:
    """``{type: {"queued": n, "scheduled": n, "retrying": n, "running": n}}`` for every type with pending work."""
    later = case((Job.eta > utcnow(), 1), else_=0).label("later")
    rows = db.session.execute(
        select(Job.type, Job.status, later, func.count())
        .where(Job.status.in_((*PENDING, JobStatus.RUNNING.value)))
        .group_by(Job.type, Job.status, text("later"))
    )
    counts: dict[str, dict[str, int]] = {}
    for type_, status_, later, count in rows:
        bucket = counts.setdefault(type_, {"queued": 0, "scheduled": 0, "retrying": 0, "running": 0})
        key = "scheduled" if status_ == JobStatus.QUEUED.value and later else status_
        bucket[key] += count
    return counts


def failed(limit: int = 50, *, type: str | None = None) -> list[Job]:
    """Failed jobs, newest first."""
    query = select(Job).where(Job.status == JobStatus.FAILED.value)
    if type is not None:
        query = query.where(Job.type == type)
    return list(db.session.scalars(query.order_by(Job.finished_at.desc()).limit(limit)))


def job_types() -> list[str]:
    """Every job type the workers can run."""
    return sorted(dramatiq.get_broker().get_declared_actors())


def args_digest(type: str, args: dict[str, Any]) -> str:
    canonical = json.dumps([type, args], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _actor(type: str) -> dramatiq.Actor:
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


def find_pending(type: str, unique: str) -> Job | None:
    """The pending job ``dispatch(type, ..., unique=unique)`` would return instead of adding one."""
    return _pending_with_key(f"{type}:{unique}")


def _pending_with_key(dedupe_key: str) -> Job | None:
    # FOR UPDATE (PostgreSQL): a worker claiming this job waits until the caller
    # commits, so it reads the change the caller folded into it, not the one before.
    query = select(Job).where(Job.dedupe_key == dedupe_key, Job.status.in_(PENDING)).limit(1).with_for_update()
    return db.session.scalars(query).first()


def _get(job_id: str) -> Job:
    job = db.session.get(Job, job_id)
    if job is None:
        raise JobNotFound(f"no job with id {job_id}")
    return job

