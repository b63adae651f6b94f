"""Keep the jobs ledger true from inside the worker."""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import dramatiq
from dramatiq import Middleware
from dramatiq.errors import Retry
from dramatiq.middleware import MiddlewareError, SkipMessage
from sqlalchemy import select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from wch.db import core_transaction, db, driver_message, utcnow
from wch.jobs import attempts, outbox
from wch.jobs.attempts import Attempt
from wch.jobs.messages import (
    ATTEMPT,
    CLAIM_FAILURES,
    REDELIVERED,
    RETRY_AT,
    RETRY_UNPUBLISHED,
    JobCopy,
    args_digest,
)
from wch.jobs.policy import SAFE_TO_REPEAT, interrupted_error, repeat_policy
from wch.models import JobStatus, WorkerProcess
from wch.models.jobs import FINISHED, PENDING
from wch.redact import redact_text

logger = logging.getLogger(__name__)

MAX_TRACEBACK = 20_000
# The claim's backoff while the database is unreachable: 1, 2, 4 ... seconds, never more than this
# (nor than WCH_MAX_BROKER_DELAY), so the jobs start soon after the database answers again.
CLAIM_BACKOFF_CAP = 60
# Seconds a thread may hold the GIL while others wait (Python's default is 0.005).
SWITCH_INTERVAL = 0.0005
# Between tries at recording an outcome while the database is unreachable.
RECORD_BACKOFF_CAP = 5.0
# Errors that mean "the database cannot be reached (or is locked) right now": worth trying again.
UNREACHABLE = (OperationalError, InterfaceError, PoolTimeout)
JOBS = outbox.JOBS
Write = Callable[[Connection, datetime], list[JobCopy]]


class LedgerUnavailable(MiddlewareError, Retry):
    """The database could not be reached to claim a job, so it was not run (and no retry was spent).

    A :class:`~dramatiq.errors.Retry` too, so Dramatiq does not log every
    message of an outage as a failed job; the ledger logs it once per message.
    """


class _ResultsKeptByLedger(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "haven't added the Results middleware" not in str(record.msg)


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Ledger(Middleware):
    """Records each job's progress in the ``jobs`` table.

    Parameters:
      result_ttl: seconds a job's result stays readable after it succeeds.
      worker_lost_after: seconds without a heartbeat after which a worker is taken for dead.
      max_broker_delay: the longest delay, in seconds, RabbitMQ may hold a message.

    Each copy of a message carries the attempt count it was published after
    (the ``wch_attempt`` option). A copy runs only if it is the job's next
    attempt, or it is the running attempt's own copy redelivered by RabbitMQ
    after its worker died: a worker still heart-beating keeps its job, and the
    copy is looked at again once that worker would count as lost. So
    canceled and finished jobs, and second publishes of the same job (relay,
    retries, lifeline), are skipped. A job whose dedupe key a running job
    holds waits, pending: it is published again when that one's outcome is
    recorded. A message with no row (sent by periodiq or a plain
    ``actor.send``) gets one.

    When the database cannot be reached, the job is not run: its message goes
    back to RabbitMQ with a short backoff of its own (never longer than
    ``max_broker_delay``), so an outage spends none of the job's retries. An
    outcome that cannot be recorded is tried again until it is.

    Actors may declare ``safe_to_repeat=True``: an attempt interrupted by its
    worker's death is then run again, instead of failing for staff to decide.
    Runs inside the app context pushed by :class:`~wch.jobs.middleware.AppContext`.
    """

    def __init__(self, *, result_ttl: int, worker_lost_after: float, max_broker_delay: float) -> None:
        self.result_ttl = result_ttl
        self.worker_lost_after = worker_lost_after
        self.max_broker_delay = max_broker_delay
        self._local = threading.local()
        self._in_flight: set[str] = set()
        self._stopping = threading.Event()
        self._worker: dramatiq.Worker | None = None
        self._id: str | None = None

    @property
    def actor_options(self) -> set[str]:
        return {SAFE_TO_REPEAT}

    @property
    def worker(self) -> str:
        if self._id is None:
            self._id = worker_id()
        return self._id

    def before_worker_boot(self, broker, worker) -> None:
        # Dramatiq warns about every returned value unless its Results middleware
        # is installed; the ledger keeps results, so the warning is only noise.
        logging.getLogger("dramatiq.worker.WorkerThread").addFilter(_ResultsKeptByLedger())
        # Each job waits twice on the database; with Python's default 5 ms switch interval, a
        # thread whose answer has arrived can wait that long for the GIL behind the consumer
        # threads (measured: a backlog drains 15-25 % faster with 0.5 ms).
        sys.setswitchinterval(SWITCH_INTERVAL)
        self._worker = worker
        self._id = worker_id()
        self._stopping.clear()

    def before_worker_shutdown(self, broker, worker) -> None:
        self._stopping.set()

    # -- claim -----------------------------------------------------------------------------------

    def before_process_message(self, broker, message) -> None:
        self._local.attempt = None
        try:
            attempt = self._claim(broker, message)
        except SQLAlchemyError as error:
            # Not running the job is safer than running it unrecorded.
            raise LedgerUnavailable(f"could not claim job {message.message_id}: {driver_message(error)}") from error
        if attempt is None:
            raise SkipMessage()
        self._local.attempt = attempt
        self._in_flight.add(message.message_id)
        # Copies published from here on (retries) are this attempt's successors.
        message.options[ATTEMPT] = attempt.number
        message.options.pop(CLAIM_FAILURES, None)

    def _claim(self, broker, message) -> Attempt | None:
        after = message.options.get(ATTEMPT, 0)
        for _ in range(3):
            now = utcnow()
            try:
                with core_transaction(single_statement=True) as connection:
                    attempt = attempts.claim_next(connection, job_id=message.message_id, type=message.actor_name,
                                                  after=after, worker=self.worker, now=now)
            except IntegrityError:
                logger.info("Job %s waits: a running job holds its dedupe key.", message.message_id)
                return None
            if attempt is not None:
                return attempt
            decision = self._claim_otherwise(broker, message, after, now)
            if isinstance(decision, _Defer):
                self._defer(broker, message, decision)
                return None
            if decision is not _AGAIN:
                return decision
        return None

    def _claim_otherwise(self, broker, message, after: int, now: datetime) -> Attempt | _Defer | None | object:
        """The job was not pending at the copy's attempt: a row to create, a copy to skip, or a worker that died.

        A copy of a running attempt that RabbitMQ redelivered means that
        attempt's worker lost its connection: it died, or only its link broke.
        While it still heart-beats, the copy is looked at again later (``_Defer``).
        """
        successors: list[JobCopy] = []
        with core_transaction() as connection:
            row = connection.execute(
                select(JOBS.c.id, JOBS.c.type, JOBS.c.status, JOBS.c.attempts, JOBS.c.worker, JOBS.c.started_at,
                       JOBS.c.dedupe_key)
                .where(JOBS.c.id == message.message_id)
                .with_for_update()
            ).first()
            if row is None:
                # Sent by periodiq or a plain actor.send, not the dispatcher.
                connection.execute(JOBS.insert().values(**_external_job(message, now, self.worker)))
                return Attempt(message.message_id, 1, self.worker, now)
            if row.type != message.actor_name:
                # A copy sent under the job's old type name, before a release renamed it.
                logger.info("Skipping job %s: sent as %s, now %s.", row.id, message.actor_name, row.type)
                return None
            if row.status in FINISHED:
                logger.info("Skipping job %s: already %s.", row.id, row.status)
                return None
            if row.status in PENDING:
                if row.attempts == after:
                    return _AGAIN  # it became pending since the claim looked
                logger.info("Skipping job %s: a stale or duplicate copy (job is %s).", row.id, row.status)
                return None
            running = attempts.running_attempt(row)
            if after == row.attempts:
                # The retry its running attempt published before that attempt's outcome was recorded.
                return attempts.claim_again(connection, running, worker=self.worker, now=now)
            redelivered = getattr(message, "redelivered", False) or message.options.get(REDELIVERED, False)
            if after != row.attempts - 1 or not redelivered:
                logger.info("Skipping job %s: a stale or duplicate copy (job is running).", row.id)
                return None
            if running.worker == self.worker and message.message_id in self._in_flight:
                logger.info("Skipping job %s: redelivered, but still running in this process.", row.id)
                return None
            silent = self._silence(connection, running.worker, now)
            if silent < self.worker_lost_after:
                check_in = min(self.worker_lost_after - silent + 1, self.max_broker_delay)
                return _Defer(check_in, running.worker)
            attempt, successors = self._interrupted(connection, broker, message, running, now)
        if successors:
            outbox.hand_over(successors)
        return attempt

    def _silence(self, connection: Connection, worker: str, now: datetime) -> float:
        """Seconds since ``worker``'s last heartbeat (infinite if it never announced itself or is gone)."""
        if worker == self.worker:
            return float("inf")  # this process, which is not running the attempt any more
        beat = connection.scalar(select(WorkerProcess.heartbeat_at).where(WorkerProcess.id == worker))
        return float("inf") if beat is None else (now - beat).total_seconds()

    def _defer(self, broker, message, defer: _Defer) -> None:
        """Look again once the attempt's worker would count as lost: it may only have lost its link to RabbitMQ.

        If it is still heart-beating then, the copy is sent back again; once the
        attempt has ended (its worker recorded the outcome, or the lifeline
        ended it), the copy is stale and skipped.
        """
        logger.info("Job %s was redelivered but its worker %s is heart-beating; looking again in %.0f s.",
                    message.message_id, defer.worker, defer.seconds)
        try:
            broker.enqueue(message.copy(options={REDELIVERED: True}), delay=int(defer.seconds * 1000))
        except Exception:
            logger.warning("Could not send job %s back to RabbitMQ; the lifeline will look after it.",
                           message.message_id)

    def _interrupted(self, connection: Connection, broker, message, running: Attempt,
                     now: datetime) -> tuple[Attempt | None, list[JobCopy]]:
        """RabbitMQ redelivered the running attempt of a dead worker: run it again if its type allows, else fail it."""
        policy = repeat_policy(message.actor_name, broker)
        spent = message.options.get("retries", 0) + 1
        why = f"its worker {running.worker} stopped"
        if policy.safe_to_repeat and spent <= policy.retries:
            attempts.log(connection, running, outcome="interrupted", now=now, error=f"interrupted: {why}")
            message.options["retries"] = spent  # the interrupted attempt spent a retry
            logger.warning("Job %s was interrupted (%s); running it again.", running.job_id, why)
            return attempts.claim_again(connection, running, worker=self.worker, now=now), []
        error = interrupted_error(policy.safe_to_repeat, why)
        attempts.finish(connection, running, status=JobStatus.FAILED.value, outcome="interrupted", now=now,
                        error=error)
        logger.warning("Job %s: %s.", running.job_id, error)
        return None, attempts.wake_successor(connection, running.dedupe_key, now=now, max_delay=self.max_broker_delay)

    # -- outcome ---------------------------------------------------------------------------------

    def after_skip_message(self, broker, message) -> None:
        # A middleware after this one skipped a job it had claimed (periodiq
        # drops late triggers): close it, or its row would stay running.
        attempt = self._take(message)
        if attempt is None:
            return

        def skipped(connection: Connection, now: datetime) -> list[JobCopy]:
            attempts.finish(connection, attempt, status=JobStatus.CANCELED.value, outcome="skipped", now=now,
                            eta=None, last_error="skipped by the worker's middleware (too late to run)")
            return self._wake(connection, attempt, now)

        self._record(message, skipped)

    def after_process_message(self, broker, message, *, result=None, exception=None) -> None:
        attempt = self._take(message)
        # Whatever the actor left uncommitted is discarded, not committed with the outcome.
        db.session.remove()
        if isinstance(exception, LedgerUnavailable):
            self._back_off(broker, message)
            return
        if attempt is None:
            return
        # Without a dedupe key there is no job to wake: the outcome is one statement.
        alone = attempt.dedupe_key is None
        if exception is None:
            self._record(message, partial(self._succeeded, attempt, result), single_statement=alone)
        elif message.failed:
            self._record(message, partial(self._failed, attempt, *_describe(exception)), single_statement=alone)
        else:
            error, tb = _describe(exception)
            self._record(message, partial(self._retrying, attempt, message.options, error, tb),
                         single_statement=True, on_conflict=partial(self._superseded, attempt, error, tb))

    def _take(self, message) -> Attempt | None:
        attempt = getattr(self._local, "attempt", None)
        self._local.attempt = None
        self._in_flight.discard(message.message_id)
        return attempt if attempt is not None and attempt.job_id == message.message_id else None

    def _succeeded(self, attempt: Attempt, result: Any, connection: Connection, now: datetime) -> list[JobCopy]:
        attempts.record(connection, attempt, status=JobStatus.SUCCEEDED.value, outcome="succeeded", now=now,
                        result=_jsonable(result), result_expires_at=now + timedelta(seconds=self.result_ttl))
        return self._wake(connection, attempt, now)

    def _failed(self, attempt: Attempt, error: str, tb: str, connection: Connection, now: datetime) -> list[JobCopy]:
        attempts.record(connection, attempt, status=JobStatus.FAILED.value, outcome="failed", now=now,
                        error=error, traceback=tb)
        return self._wake(connection, attempt, now)

    def _retrying(self, attempt: Attempt, options: dict, error: str, tb: str, connection: Connection,
                  now: datetime) -> list[JobCopy]:
        retry_at = options.get(RETRY_AT)
        attempts.record(connection, attempt, status=JobStatus.RETRYING.value, outcome="retrying", now=now,
                        error=error, traceback=tb,
                        eta=datetime.fromtimestamp(retry_at / 1000, UTC) if retry_at else None,
                        published_at=None if options.get(RETRY_UNPUBLISHED) else now)
        return []

    def _superseded(self, attempt: Attempt, error: str, tb: str, connection: Connection,
                    now: datetime) -> list[JobCopy]:
        # A newer job with the same dedupe key was dispatched while this one
        # ran, and only one may be pending: the newer one supersedes this retry.
        attempts.finish(connection, attempt, status=JobStatus.CANCELED.value, outcome="retrying", now=now,
                        error=f"{error} (not retried: a newer job with the same dedupe key is pending)",
                        traceback=tb, eta=None)
        return self._wake(connection, attempt, now)

    def _wake(self, connection: Connection, attempt: Attempt, now: datetime) -> list[JobCopy]:
        return attempts.wake_successor(connection, attempt.dedupe_key, now=now, max_delay=self.max_broker_delay)

    def _record(self, message, write: Write, *, single_statement: bool = False,
                on_conflict: Write | None = None) -> None:
        """Run ``write`` in a transaction of its own until it commits, then publish the jobs it woke.

        Raising here would make Dramatiq retry a job that has already run (and,
        say, message a customer twice), so a database that cannot be reached
        is waited for; any other error is logged, and the row stays running
        for the lifeline.
        """
        pause = 0.5
        while True:
            try:
                with core_transaction(single_statement=single_statement) as connection:
                    woken = write(connection, utcnow())
                break
            except IntegrityError:
                if on_conflict is None:
                    logger.exception("Could not record the outcome of job %s.", message.message_id)
                    return
                write, on_conflict, single_statement = on_conflict, None, False
            except UNREACHABLE as error:
                if self._stopping.is_set():
                    logger.error("Could not record the outcome of job %s before shutting down (%s); "
                                 "the lifeline will end it.", message.message_id, error)
                    return
                logger.warning("Could not record the outcome of job %s (%s); trying again in %.1f s.",
                               message.message_id, driver_message(error), pause)
                time.sleep(pause)
                pause = min(pause * 2, RECORD_BACKOFF_CAP)
            except Exception:
                logger.exception("Could not record the outcome of job %s.", message.message_id)
                return
        if woken:
            outbox.hand_over(woken)

    # -- the database is unreachable -------------------------------------------------------------

    def _back_off(self, broker, message) -> None:
        """Send the message back to RabbitMQ, delayed, with its claim failures counted and its retries untouched."""
        failures = message.options.get(CLAIM_FAILURES, 0) + 1
        delay = min(2 ** (failures - 1), CLAIM_BACKOFF_CAP, self.max_broker_delay)
        logger.warning("Could not claim job %s: the database is unreachable (try %d); trying again in %s s.",
                       message.message_id, failures, delay)
        try:
            broker.enqueue(message.copy(options={CLAIM_FAILURES: failures}), delay=int(delay * 1000))
        except Exception:
            # RabbitMQ is away too: give the message back rather than acknowledge it.
            logger.warning("Could not send job %s back to RabbitMQ either; leaving it unacknowledged.",
                           message.message_id)
            time.sleep(delay)
            self._give_back(message)

    def _give_back(self, message) -> None:
        """Reject the message with ``requeue``, so RabbitMQ hands it out again instead of losing it.

        Dramatiq's RabbitMQ consumer offers no requeue of one message (its nack
        dead-letters it), so this goes through the consumer's channel. When
        that connection is gone too, RabbitMQ requeues the message by itself,
        since it was never acknowledged. Dramatiq's own acknowledgement that
        follows finds the tag gone and only logs a warning.
        """
        thread = self._worker.consumers.get(message.queue_name) if self._worker is not None else None
        consumer = getattr(thread, "consumer", None)
        tag = getattr(message, "_tag", None)
        if consumer is None or tag is None or not hasattr(consumer, "known_tags"):
            return  # not RabbitMQ (the stub broker never fails to enqueue)
        consumer.known_tags.discard(tag)
        try:
            consumer.connection.add_callback_threadsafe(partial(consumer.channel.basic_nack, tag, requeue=True))
        except Exception:
            logger.info("The consumer's connection is gone; RabbitMQ requeues job %s itself.", message.message_id)


_AGAIN = object()


@dataclass(frozen=True)
class _Defer:
    """Look at this copy again in ``seconds``: the running attempt's ``worker`` is still heart-beating."""

    seconds: float
    worker: str


def _external_job(message, now: datetime, worker: str) -> dict[str, Any]:
    """The row, already running, of a message the dispatcher did not write (periodiq, ``actor.send``)."""
    args = dict(message.kwargs or {})
    if message.args:
        args["_args"] = list(message.args)
    return dict(
        id=message.message_id,
        type=message.actor_name,
        queue=message.queue_name.removesuffix(".DQ"),
        args=args,
        status=JobStatus.RUNNING.value,
        attempts=1,
        enqueued_at=datetime.fromtimestamp(message.message_timestamp / 1000, UTC),
        started_at=now,
        published_at=now,
        worker=worker,
        digest=args_digest(message.actor_name, args),
    )


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
