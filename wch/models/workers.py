"""Worker processes announce themselves here, with a heartbeat."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import JSON, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from wch.db import UTCDateTime, db, utcnow


class WorkerProcess(db.Model):
    """A running ``dramatiq wch.actors`` process: where it runs and when it was last seen."""

    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    host: Mapped[str] = mapped_column(String(200))
    pid: Mapped[int] = mapped_column(Integer)
    queues: Mapped[list[str]] = mapped_column(JSON, default=list)
    threads: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)

    def is_alive(self, now: datetime, *, lost_after: float) -> bool:
        """Heard from within ``lost_after`` seconds (``WCH_WORKER_LOST_AFTER``); later, the lifeline ends its jobs."""
        return now - self.heartbeat_at < timedelta(seconds=lost_after)

    def to_dict(self) -> dict[str, Any]:
        return self.values("id", "host", "pid", "queues", "threads", "started_at", "heartbeat_at")
