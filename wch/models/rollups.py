"""Numbers kept ahead of time, so the dashboard and ``/metrics`` read a few rows whatever the size of the data."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from wch.db import UTCDateTime, db


class JobHourCount(db.Model):
    """How many jobs finished with ``outcome`` in the clock hour (UTC) starting at ``hour``."""

    __tablename__ = "job_hour_counts"

    hour: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    outcome: Mapped[str] = mapped_column(String(16), primary_key=True)
    count: Mapped[int] = mapped_column(Integer, default=0)


class RollupMark(db.Model):
    """How far a rollup has counted: every row before ``upto`` is in it, none after."""

    __tablename__ = "rollup_marks"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    upto: Mapped[datetime] = mapped_column(UTCDateTime)


class Snapshot(db.Model):
    """Numbers computed by a periodic job (``data``), and when (``taken_at``)."""

    __tablename__ = "snapshots"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    taken_at: Mapped[datetime] = mapped_column(UTCDateTime)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
