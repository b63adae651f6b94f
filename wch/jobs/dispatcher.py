"""The one way jobs are created, retried and canceled.

Webhooks, the admin panel, the command line and jobs themselves call these
inside an app context. Dispatch writes the ledger row in the caller's
transaction; the message is published by :mod:`wch.jobs.outbox` once that
transaction commits. A refusal raises :class:`DispatchError` and writes nothing.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

import dramatiq
from dramatiq.errors import ActorNotFound
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from wch.db import db, utcnow
from wch.jobs import outbox
from wch.jobs.messages import args_digest
from wch.jobs.types import JobType
from wch.models import Job, JobStatus
from wch.models.jobs import PENDING


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
    (``unique="42"``: one pending job of this type for product 42). The
    caller commits; the job is published after.
    """
    type = str(job_type)
    actor = actor_of(type)
    args = _validated_args(args)
    seconds = delay.total_seconds() if isinstance(delay, timedelta) else delay
    if seconds is not None and not seconds >= 0:
        raise DispatchError(f"delay must be a number of seconds, 0 or more, got {delay}")
    digest = args_digest(type, args)
    dedupe_key = None
    if unique:
        dedupe_key = digest if unique is True else dedupe_key_of(type, unique)
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
        subject=job_type.subject_of(args) if isinstance(job_type, JobType) else None,
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


def dispatch_spread(
    job_type: JobType | str,
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
    actor_of(str(job_type))
    jobs = []
    for index, args in enumerate(items):
        delay = (index // batch_size) * interval
        jobs.append(dispatch(job_type, args, delay=delay or None))
    return jobs


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


def retry_failed(job_type: JobType | str | None = None, *, limit: int = 1000) -> list[Job]:
    """Retry up to ``limit`` failed jobs, newest first, optionally of one type.

    Jobs that cannot be retried any more (retried meanwhile by someone else, or
    a unique job whose successor is pending) are left as they are.
    """
    query = select(Job.id).where(Job.status == JobStatus.FAILED.value)
    if job_type is not None:
        query = query.where(Job.type == str(job_type))
    retried = []
    for job_id in db.session.scalars(query.order_by(Job.finished_at.desc()).limit(limit)).all():
        try:
            retried.append(retry(job_id))
        except DispatchError:
            continue
    return retried


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
