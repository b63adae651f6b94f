"""Keep the jobs ledger true from inside the worker."""

from __future__ import annotations

import json
import logging
import os
import socket
import traceback
from datetime import datetime, timedelta, timezone
from typing import Any

from dramatiq import Middleware
from dramatiq.middleware import MiddlewareError, SkipMessage
from sqlalchemy.exc import SQLAlchemyError

from wch.db import db, utcnow
from wch.middleware.retries import RETRY_AT, RETRY_UNPUBLISHED
from wch.models import Job, JobAttempt, JobStatus
from wch.models.jobs import FINISHED
from wch.redact import redact_text

logger = logging.getLogger(__name__)

RUNNABLE = (JobStatus.QUEUED.value, JobStatus.RETRYING.value)
MAX_TRACEBACK = 20_000


class LedgerUnavailable(MiddlewareError):
    """The database could not be reached to claim a job, so it was not run."""


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Ledger(Middleware):
    """Records each job's progress in the ``jobs`` table.

    Parameters:
      result_ttl: seconds a job's result stays readable after it succeeds.

    A message is run only if its row is queued or retrying, or running and
    redelivered by RabbitMQ (its worker died). Canceled and finished jobs are
    skipped, which makes a second publish of the same job harmless. A message
    with no row (sent by periodiq or a plain ``actor.send``) gets one.
    Runs inside the app context pushed by :class:`~wch.middleware.AppContext`.
    """

    def __init__(self, *, result_ttl: int) -> None:
        self.result_ttl = result_ttl

    def before_process_message(self, broker, message) -> None:
        try:
            claimed = self._claim(message)
        except SQLAlchemyError as error:
            # Not running the job is safer than running it unrecorded; Retries schedules another try.
            raise LedgerUnavailable(f"could not record job {message.message_id} as running: {error}") from error
        if not claimed:
            raise SkipMessage()

    def after_process_message(self, broker, message, *, result=None, exception=None) -> None:
        # Whatever the actor left uncommitted is discarded, not committed with the outcome.
        db.session.remove()
        if isinstance(exception, LedgerUnavailable):
            return
        try:
            if exception is None:
                self._succeed(message, result)
            elif message.failed:
                self._fail(message, exception)
            else:
                self._schedule_retry(message, exception)
        except Exception:
            db.session.rollback()
            raise
        finally:
            db.session.remove()

    def _claim(self, message) -> bool:
        now = utcnow()
        try:
            job = db.session.get(Job, message.message_id, with_for_update=True)
            if job is None:
                # Sent by periodiq or a plain actor.send, not the dispatcher.
                job = _external_job(message, now)
                db.session.add(job)
            elif job.status in FINISHED:
                logger.info("Skipping job %s: already %s.", job.id, job.status)
                db.session.rollback()
                return False
            elif job.status == JobStatus.RUNNING.value and not getattr(message, "redelivered", False):
                logger.info("Skipping job %s: a copy of it is already running.", job.id)
                db.session.rollback()
                return False
            job.status = JobStatus.RUNNING.value
            job.attempts = (job.attempts or 0) + 1
            job.started_at = now
            job.eta = None
            job.worker = worker_id()
            db.session.add(JobAttempt(job_id=job.id, number=job.attempts, worker=job.worker, started_at=now))
            db.session.commit()
            return True
        finally:
            db.session.remove()

    def _succeed(self, message, result: Any) -> None:
        now = utcnow()
        job, attempt = self._load(message)
        job.status = JobStatus.SUCCEEDED.value
        job.result = _jsonable(result)
        job.result_expires_at = now + timedelta(seconds=self.result_ttl)
        job.finished_at = now
        _close(attempt, now, "succeeded")
        db.session.commit()

    def _fail(self, message, exception: BaseException) -> None:
        now = utcnow()
        job, attempt = self._load(message)
        job.status = JobStatus.FAILED.value
        job.finished_at = now
        job.last_error, job.traceback = _describe(exception)
        _close(attempt, now, "failed", job.last_error, job.traceback)
        db.session.commit()

    def _schedule_retry(self, message, exception: BaseException) -> None:
        now = utcnow()
        job, attempt = self._load(message)
        job.status = JobStatus.RETRYING.value
        retry_at = message.options.get(RETRY_AT)
        job.eta = datetime.fromtimestamp(retry_at / 1000, timezone.utc) if retry_at else None
        job.published_at = None if message.options.get(RETRY_UNPUBLISHED) else now
        job.last_error, job.traceback = _describe(exception)
        _close(attempt, now, "retrying", job.last_error, job.traceback)
        db.session.commit()

    def _load(self, message) -> tuple[Job, JobAttempt | None]:
        job = db.session.get(Job, message.message_id, with_for_update=True)
        attempt = (
            db.session.query(JobAttempt)
            .filter_by(job_id=job.id, number=job.attempts)
            .one_or_none()
        )
        return job, attempt


def _external_job(message, now: datetime) -> Job:
    """A row for a message the dispatcher did not write (periodiq, ``actor.send``)."""
    from wch.dispatcher import args_digest

    args = dict(message.kwargs or {})
    if message.args:
        args["_args"] = list(message.args)
    return Job(
        id=message.message_id,
        type=message.actor_name,
        queue=message.queue_name.removesuffix(".DQ"),
        args=args,
        status=JobStatus.QUEUED.value,
        attempts=0,
        enqueued_at=datetime.fromtimestamp(message.message_timestamp / 1000, timezone.utc),
        published_at=now,
        digest=args_digest(message.actor_name, args),
    )


def _close(attempt: JobAttempt | None, now: datetime, outcome: str, error: str | None = None, tb: str | None = None) -> None:
    if attempt is not None:
        attempt.finished_at = now
        attempt.outcome = outcome
        attempt.error = error
        attempt.traceback = tb


def _describe(exception: BaseException) -> tuple[str, str]:
    error = redact_text(f"{type(exception).__name__}: {exception}")
    tb = "".join(traceback.format_exception(exception))[-MAX_TRACEBACK:]
    return error, redact_text(tb)


def _jsonable(result: Any) -> Any:
    try:
        json.dumps(result)
    except (TypeError, ValueError):
        return repr(result)
    return result
