"""Questions about jobs: a job's state and result, what is pending by type, what failed, which workers are alive.

Each query reads an index range (one job, the unfinished jobs, recent workers)
rather than counting the whole ledger, so they stay fast on millions of rows.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import case, func, select, text

from wch.db import db, utcnow
from wch.jobs.dispatcher import DispatchError, actor_of, get_job
from wch.jobs.messages import args_digest
from wch.jobs.types import JobType
from wch.models import Job, JobStatus, WorkerProcess
from wch.models.jobs import LIVE_SQL, PENDING


def status(job_id: str) -> str:
    return get_job(job_id).status


def result(job_id: str) -> Any:
    """The result of a succeeded job, while it is kept; raise if there is none."""
    job = get_job(job_id)
    if job.status != JobStatus.SUCCEEDED.value:
        raise DispatchError(f"job {job_id} is {job.status}; only succeeded jobs have a result")
    if job.result_expires_at is None or job.result_expires_at <= utcnow():
        raise DispatchError(f"the result of job {job_id} has expired")
    return job.result


def is_scheduled(job_type: JobType | str, args: dict[str, Any] | None = None) -> bool:
    """Whether a job of this type with these arguments is waiting to run."""
    type = str(job_type)
    actor_of(type)
    digest = args_digest(type, args or {})
    query = select(Job.id).where(Job.digest == digest, Job.status.in_(PENDING)).limit(1)
    return db.session.execute(query).first() is not None


def pending_counts() -> dict[str, dict[str, int]]:
    """``{type: {"queued": n, "scheduled": n, "retrying": n, "running": n}}`` for every type with pending work.

    Counted in ``ix_jobs_live_status_type_eta``, which holds only the unfinished jobs.
    """
    later = case((Job.eta > utcnow(), 1), else_=0).label("later")
    rows = db.session.execute(
        select(Job.type, Job.status, later, func.count())
        .where(text(LIVE_SQL))
        .group_by(Job.type, Job.status, text("later"))
    )
    counts: dict[str, dict[str, int]] = {}
    for type_, status_, later, count in rows:
        bucket = counts.setdefault(type_, {"queued": 0, "scheduled": 0, "retrying": 0, "running": 0})
        key = "scheduled" if status_ == JobStatus.QUEUED.value and later else status_
        bucket[key] += count
    return counts


def failed(limit: int = 50, *, job_type: JobType | str | None = None) -> list[Job]:
    """Failed jobs, newest first."""
    query = select(Job).where(Job.status == JobStatus.FAILED.value)
    if job_type is not None:
        query = query.where(Job.type == str(job_type))
    return list(db.session.scalars(query.order_by(Job.finished_at.desc()).limit(limit)))


def oldest_pending(*, now: datetime, counts: dict[str, dict[str, int]] | None = None) -> dict[str, float]:
    """Seconds the longest-waiting due job of each type has waited (scheduled jobs not yet due don't count).

    Two index look-ups per pending type and state (the first entry of
    ``ix_jobs_live_status_type_eta`` with no ``eta``, and with the earliest
    one), however many jobs wait. ``counts`` is :func:`pending_counts`, if
    the caller has it.
    """
    counts = pending_counts() if counts is None else counts
    lookups: list[tuple[str, Any]] = []
    for type_, states in counts.items():
        for status_ in PENDING:
            if not states.get(status_) and not (status_ == JobStatus.QUEUED.value and states.get("scheduled")):
                continue
            live = (text(LIVE_SQL), Job.type == type_, Job.status == status_)
            lookups += [(type_, select(func.min(Job.enqueued_at)).where(*live, Job.eta.is_(None))),
                        (type_, select(func.min(Job.eta)).where(*live, Job.eta <= now))]
    if not lookups:
        return {}
    # One statement, one round trip: each look-up is its own scalar subquery.
    row = db.session.execute(select(*(query.scalar_subquery() for _, query in lookups))).one()
    ages: dict[str, float] = {}
    for (type_, _), since in zip(lookups, row, strict=True):
        if since is not None:
            age = max(0.0, (now - _aware(since, now)).total_seconds())
            ages[type_] = max(age, ages.get(type_, 0.0))
    return ages


def _aware(value, now: datetime) -> datetime:
    # min() over a TypeDecorator column comes back raw on SQLite.
    value = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return value if value.tzinfo else value.replace(tzinfo=now.tzinfo)


def workers_seen(*, now: datetime, lost_after: float, limit: int = 100) -> list[dict[str, Any]]:
    """Worker processes that have announced themselves, latest heartbeat first, each with whether it is alive."""
    rows = db.session.scalars(select(WorkerProcess).order_by(WorkerProcess.heartbeat_at.desc()).limit(limit))
    return [
        {**worker.to_dict(), "seconds_ago": (now - worker.heartbeat_at).total_seconds(),
         "alive": worker.is_alive(now, lost_after=lost_after)}
        for worker in rows
    ]
