"""The audit trail: who changed what in the panel or on the command line, when, and from where."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from wch.db import UTCDateTime, db, utcnow


class AuditEntry(db.Model):
    """One staff action that changed something.

    ``actor`` is the staff member's e-mail (kept as text, so the entry
    outlives a deleted account) or ``cli:<os user>``; ``address`` the client
    address, or ``cli``; ``target`` what was acted on (``job:<id>``,
    ``campaign:3``, ``user:ana@example.com``); ``details`` what changed.
    """

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    actor: Mapped[str] = mapped_column(String(254))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str | None] = mapped_column(String(200))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    address: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (
        Index("ix_audit_log_at", "at"),
        Index("ix_audit_log_action_at", "action", "at"),
        Index("ix_audit_log_actor_at", "actor", "at"),
    )

    def to_dict(self) -> dict[str, Any]:
        return self.values("id", "at", "actor", "action", "target", "details", "address")
