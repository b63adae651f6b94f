"""Keep the jobs ledger true from inside the worker."""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import traceback
from datetime import UTC, datetime, timedelta
from typing import Any

from dramatiq import Middleware
from dramatiq.middleware import MiddlewareError, SkipMessage
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from wch.db import db, utcnow
from wch.jobs.messages import ATTEMPT, RETRY_AT, RETRY_UNPUBLISHED, args_digest
from wch.models import Job, JobAttempt, JobStatus
from wch.models.jobs import FINISHED
from wch.redact import redact_text

logger = logging.getLogger(__name__)

MAX_TRACEBACK = 20_000


class LedgerUnavailable(MiddlewareError):
    """The database could not be reached to claim a job, so it was not run."""


class _ResultsKeptByLedger(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "haven't added the Results middleware" not in str(record.msg)


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Ledger(Middleware):
    """Records each job's progress in the ``jobs`` table.

    Parameters:
      result_ttl: seconds a job's result stays readable after it succeeds.

    Each copy of a message carries the attempt count it was published after
    (the ``wch_attempt`` option). A copy runs only if it is the job's next
    attempt, or it is the running attempt's own copy redelivered by RabbitMQ
    because its worker died. So canceled and finished jobs, and second
    publishes of the same job (relay, retries), are skipped. An attempt's
    outcome is recorded on the job only while it is the job's latest attempt.
    A message with no row (sent by periodiq or a plain ``actor.send``) gets one.
    Runs inside the app context pushed by :class:`~wch.jobs.middleware.AppContext`.
    """

    def __init__(self, *, result_ttl: int) -> None:
        self.result_ttl = result_ttl
        self._local = threading.local()

    def before_worker_boot(self, broker, worker) -> None:
        # Dramatiq warns about every returned value unless its Results middleware
        # is installed; the ledger keeps results, so the warning is only noise.
        logging.getLogger("dramatiq.worker.WorkerThread").addFilter(_ResultsKeptByLedger())

    def before_process_message(self, broker, message) -> None:
        try:
            claimed = self._claim(message)
        except SQLAlchemyError as error:
            # Not running the job is safer than running it unrecorded; Retries schedules another try.
            raise LedgerUnavailable(f"could not record job {message.message_id} as running: {error}") from error
        if not claimed:
            raise SkipMessage()
        self._local.claimed = message.message_id

    def after_skip_message(self, broker, message) -> None:
        # A middleware after this one skipped a job it had claimed (periodiq
        # drops late triggers): close it, or its row would stay running.
        if getattr(self._local, "claimed", None) != message.message_id:
            return
        self._local.claimed = None
        try:
            now = utcnow()
            job, attempt = self._load(message)
            _close(attempt, now, "skipped")
            if job is not None:
                job.status, job.finished_at = JobStatus.CANCELED.value, now
                job.last_error = "skipped by the worker's middleware (too late to run)"
            db.session.commit()
        except Exception:
            logger.exception("Could not record that job %s was skipped.", message.message_id)
            db.session.rollback()
        finally:
            db.session.remove()

    def after_process_message(self, broker, message, *, result=None, exception=None) -> None:
        self._local.claimed = None
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
            # Raising here would make Dramatiq retry a job that has already run
            # (and, say, message a customer twice); the row stays running instead.
            logger.exception("Could not record the outcome of job %s.", message.message_id)
            db.session.rollback()
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
            elif job.type != message.actor_name:
                # A copy sent under the job's old type name, before a release renamed it.
                logger.info("Skipping job %s: sent as %s, now %s.", job.id, message.actor_name, job.type)
                db.session.rollback()
                return False
            elif job.status in FINISHED:
                logger.info("Skipping job %s: already %s.", job.id, job.status)
                db.session.rollback()
                return False
            elif not _is_current_copy(job, message):
                logger.info("Skipping job %s: a stale or duplicate copy (job is %s).", job.id, job.status)
                db.session.rollback()
                return False
            elif job.status == JobStatus.RUNNING.value and message.options.get(ATTEMPT, 0) < job.attempts:
                # RabbitMQ redelivered the running attempt: its worker died mid-job.
                _close(_attempt(job.id, job.attempts), now, "interrupted", only_open=True)
            number = (job.attempts or 0) + 1
            job.status = JobStatus.RUNNING.value
            job.attempts = number
            job.started_at = now
            job.eta = None
            job.worker = worker_id()
            db.session.add(JobAttempt(job_id=job.id, number=number, worker=job.worker, started_at=now))
            db.session.commit()
            # Copies published from here on (retries) are this attempt's successors.
            # (``number``, not ``job.attempts``: the commit expired the row, and reading it would query again.)
            message.options[ATTEMPT] = number
            return True
        finally:
            db.session.remove()

    def _succeed(self, message, result: Any) -> None:
        # Every job ends here, so two UPDATEs and no SELECT: the job's row changes
        # only while this is its latest attempt, as in :meth:`_load`.
        now = utcnow()
        number = message.options[ATTEMPT]
        db.session.execute(
            update(Job)
            .where(Job.id == message.message_id, Job.attempts == number, Job.status == JobStatus.RUNNING.value)
            .values(
                status=JobStatus.SUCCEEDED.value,
                result=_jsonable(result),
                result_expires_at=now + timedelta(seconds=self.result_ttl),
                finished_at=now,
            )
        )
        db.session.execute(
            update(JobAttempt)
            .where(JobAttempt.job_id == message.message_id, JobAttempt.number == number)
            .values(finished_at=now, outcome="succeeded", error=None, traceback=None)
        )
        db.session.commit()

    def _fail(self, message, exception: BaseException) -> None:
        now = utcnow()
        job, attempt = self._load(message)
        error, tb = _describe(exception)
        _close(attempt, now, "failed", error, tb)
        if job is not None:
            job.status = JobStatus.FAILED.value
            job.finished_at = now
            job.last_error, job.traceback = error, tb
        db.session.commit()

    def _schedule_retry(self, message, exception: BaseException) -> None:
        now = utcnow()
        job, attempt = self._load(message)
        error, tb = _describe(exception)
        _close(attempt, now, "retrying", error, tb)
        if job is not None:
            job.status = JobStatus.RETRYING.value
            retry_at = message.options.get(RETRY_AT)
            job.eta = datetime.fromtimestamp(retry_at / 1000, UTC) if retry_at else None
            job.published_at = None if message.options.get(RETRY_UNPUBLISHED) else now
            job.last_error, job.traceback = error, tb
        try:
            db.session.commit()
        except IntegrityError:
            # A newer job with the same dedupe key was dispatched while this one
            # ran, and only one may be pending: the newer one supersedes this retry.
            db.session.rollback()
            self._supersede(message, error, tb)

    def _supersede(self, message, error: str, tb: str) -> None:
        now = utcnow()
        job, attempt = self._load(message)
        _close(attempt, now, "retrying", error, tb)
        if job is not None:
            job.status, job.finished_at, job.eta = JobStatus.CANCELED.value, now, None
            job.last_error = f"{error} (not retried: a newer job with the same dedupe key is pending)"
            job.traceback = tb
        db.session.commit()

    def _load(self, message) -> tuple[Job | None, JobAttempt | None]:
        """The job, or None if a later attempt has taken it over, and this attempt's log entry."""
        number = message.options[ATTEMPT]
        job = db.session.get(Job, message.message_id, with_for_update=True)
        if job is None or job.attempts != number or job.status != JobStatus.RUNNING.value:
            # The retry published for this attempt is already running (or the
            # row was purged): this attempt's outcome belongs to its log entry only.
            job = None
        return job, _attempt(message.message_id, number)


def _is_current_copy(job: Job, message) -> bool:
    """Whether this copy of the message is the job's next attempt or its running attempt redelivered."""
    published_after = message.options.get(ATTEMPT, 0)
    if published_after == job.attempts:
        # The next attempt; for a running job, the retry published before the
        # running attempt's outcome was recorded.
        return True
    return (
        job.status == JobStatus.RUNNING.value
        and published_after == job.attempts - 1
        and getattr(message, "redelivered", False)
    )


def _attempt(job_id: str, number: int) -> JobAttempt | None:
    return db.session.query(JobAttempt).filter_by(job_id=job_id, number=number).one_or_none()


def _external_job(message, now: datetime) -> Job:
    """A row for a message the dispatcher did not write (periodiq, ``actor.send``)."""
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
        enqueued_at=datetime.fromtimestamp(message.message_timestamp / 1000, UTC),
        published_at=now,
        digest=args_digest(message.actor_name, args),
    )


def _close(
    attempt: JobAttempt | None,
    now: datetime,
    outcome: str,
    error: str | None = None,
    tb: str | None = None,
    *,
    only_open: bool = False,
) -> None:
    if attempt is not None and not (only_open and attempt.finished_at is not None):
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
