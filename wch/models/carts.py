"""Shopping carts and the record of their hourly cleanup."""

from __future__ import annotations

import enum
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, Float, Index, Integer, Numeric, String
from sqlalchemy.orm import Mapped, mapped_column

from wch.db import UTCDateTime, db, utcnow


class CartStatus(enum.StrEnum):
    ACTIVE = "active"
    ABANDONED = "abandoned"
    COMPLETED = "completed"


class Cart(db.Model):
    """A customer's cart; ``updated_at`` is its last activity."""

    __tablename__ = "carts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_phone: Mapped[str] = mapped_column(String(32))
    customer_name: Mapped[str | None] = mapped_column(String(200))
    items: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    total: Mapped[Decimal] = mapped_column(Numeric(10, 2), default=Decimal("0.00"))
    currency: Mapped[str] = mapped_column(String(3), default="USD")
    status: Mapped[str] = mapped_column(String(16), default=CartStatus.ACTIVE.value)
    reminder_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Set by wch.carts.recovery.mark_recovered when a reminded customer orders.
    recovered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    recovered_order_id: Mapped[str | None] = mapped_column(String(64))
    recovered_revenue: Mapped[Decimal | None] = mapped_column(Numeric(10, 2))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    __table_args__ = (
        # Cleanup and the dashboard read carts by status, oldest activity first.
        Index("ix_carts_status_updated_at", "status", "updated_at"),
        Index("ix_carts_updated_at", "updated_at"),
        Index("ix_carts_customer_phone", "customer_phone"),
        # "Reminders sent and carts recovered in the last 7 days" on the dashboard read
        # this range only, without visiting the table.
        Index("ix_carts_reminder_sent_recovered", "reminder_sent_at", "recovered_at"),
    )


class CleanupRun(db.Model):
    """One run of the expired-cart cleanup: what it deleted and how long it took."""

    __tablename__ = "cleanup_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    trigger: Mapped[str] = mapped_column(String(20))
    cutoff: Mapped[datetime] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    deleted: Mapped[int] = mapped_column(Integer, default=0)
    batches: Mapped[int] = mapped_column(Integer, default=0)
    duration_seconds: Mapped[float | None] = mapped_column(Float)
    longest_batch_seconds: Mapped[float | None] = mapped_column(Float)

    __table_args__ = (Index("ix_cleanup_runs_started_at", "started_at"),)

    def to_dict(self) -> dict[str, Any]:
        return self.values("id", "trigger", "cutoff", "started_at", "finished_at", "deleted", "batches",
                           "duration_seconds", "longest_batch_seconds")
