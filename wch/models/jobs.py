"""The jobs ledger: one row per job, the source of truth for its state."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from wch.db import UTCDateTime, db, utcnow


class JobStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"


PENDING = (JobStatus.QUEUED.value, JobStatus.RETRYING.value)
FINISHED = (JobStatus.SUCCEEDED.value, JobStatus.FAILED.value, JobStatus.CANCELED.value)
# The partial indexes' predicates, as text: an INSERT ... ON CONFLICT names its index by repeating it.
PENDING_SQL = text("status IN ('queued', 'retrying')")
_RUNNING_SQL = text("status = 'running'")
# The jobs not finished: queued, retrying or running. Written out, not bound, so the
# databases can match a query's condition to the partial index below.
LIVE_SQL = "status IN ('queued', 'retrying', 'running')"
_UNPUBLISHED_SQL = text("published_at IS NULL")
_EXPIRING_SQL = text("result_expires_at IS NOT NULL")


class Job(db.Model):
    """A job: its id is the Dramatiq message id, stable across retries."""

    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    type: Mapped[str] = mapped_column(String(100))
    queue: Mapped[str] = mapped_column(String(100))
    args: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.QUEUED.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    traceback: Mapped[str | None] = mapped_column(Text)
    result: Mapped[Any | None] = mapped_column(JSON)
    result_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    enqueued_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    eta: Mapped[datetime | None] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    digest: Mapped[str] = mapped_column(String(64))
    dedupe_key: Mapped[str | None] = mapped_column(String(200))
    worker: Mapped[str | None] = mapped_column(String(200))
    # What the job is about (``order:1234``, ``product:42``, ``cart:7``), from its type's
    # rule at dispatch, so staff find the jobs of an order without reading every row's args.
    subject: Mapped[str | None] = mapped_column(String(100))

    attempt_log: Mapped[list[JobAttempt]] = relationship(
        back_populates="job", order_by="JobAttempt.number", cascade="all, delete-orphan", passive_deletes=True
    )

    __table_args__ = (
        # "pending by type" reads only this index's pending slice.
        Index("ix_jobs_status_type_finished", "status", "type", "finished_at"),
        # "failed, newest first" (and retention by status) walk this one.
        Index("ix_jobs_status_finished", "status", "finished_at"),
        Index("ix_jobs_enqueued_at", "enqueued_at"),
        # The panel's jobs list: newest first, filtered by status or by type.
        Index("ix_jobs_status_enqueued_at", "status", "enqueued_at"),
        Index("ix_jobs_type_enqueued_at", "type", "enqueued_at"),
        Index("ix_jobs_digest", "digest"),
        Index("ix_jobs_subject_enqueued_at", "subject", "enqueued_at"),
        # The dashboard's "pending by type" and "oldest due job" read only this small
        # index of unfinished jobs, never the finished millions.
        Index("ix_jobs_live_status_type_eta", "status", "type", "eta", "enqueued_at",
              sqlite_where=text(LIVE_SQL), postgresql_where=text(LIVE_SQL)),
        # At most one pending job per dedupe key; finished ones keep theirs for the record.
        Index(
            "uq_jobs_pending_dedupe_key",
            "dedupe_key",
            unique=True,
            sqlite_where=PENDING_SQL,
            postgresql_where=PENDING_SQL,
        ),
        # A running job holds its key too: a second job with it waits, pending, until the first has finished.
        Index(
            "uq_jobs_running_dedupe_key",
            "dedupe_key",
            unique=True,
            sqlite_where=_RUNNING_SQL,
            postgresql_where=_RUNNING_SQL,
        ),
        Index("ix_jobs_unpublished", "enqueued_at", sqlite_where=_UNPUBLISHED_SQL, postgresql_where=_UNPUBLISHED_SQL),
        Index("ix_jobs_result_expiry", "result_expires_at", sqlite_where=_EXPIRING_SQL, postgresql_where=_EXPIRING_SQL),
    )

    @property
    def is_pending(self) -> bool:
        return self.status in PENDING

    def to_dict(self) -> dict[str, Any]:
        return self.values("id", "type", "queue", "args", "status", "attempts", "last_error", "traceback", "result",
                           "enqueued_at", "eta", "started_at", "finished_at", "published_at", "dedupe_key", "subject")


class JobAttempt(db.Model):
    """One run of a job by a worker, with how it ended."""

    __tablename__ = "job_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    worker: Mapped[str | None] = mapped_column(String(200))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    outcome: Mapped[str | None] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text)
    traceback: Mapped[str | None] = mapped_column(Text)

    job: Mapped[Job] = relationship(back_populates="attempt_log")

    def to_dict(self) -> dict[str, Any]:
        return self.values("number", "worker", "started_at", "finished_at", "outcome", "error", "traceback")


class ScheduleSlot(db.Model):
    """A periodic run that has been claimed, so a second scheduler cannot run it again."""

    __tablename__ = "schedule_slots"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    slot: Mapped[str] = mapped_column(String(40), primary_key=True)
    claimed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
