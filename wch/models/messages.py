"""Every message wch sends a customer about an order or a cart, and how Meta settled it."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from wch.db import UTCDateTime, db, utcnow


class MessageState(enum.StrEnum):
    SENDING = "sending"  # claimed and on its way to Meta
    SENT = "sent"  # Meta accepted it
    DELIVERED = "delivered"
    READ = "read"
    FAILED = "failed"  # certainly not sent, or Meta reported it failed
    UNCERTAIN = "uncertain"  # the answer was lost after the request left: Meta may have it


_OPEN_SQL = text("state IN ('sending', 'uncertain')")


class Message(db.Model):
    """One message to one customer about an order status (``kind`` ``order``) or an idle cart (``reminder``).

    ``subject`` names what it is about and is unique, so the row is the claim:
    it is committed as ``sending`` before Meta is called, and a retried,
    redelivered or repeated job finds it and sends nothing. It is also the
    ``biz_opaque_callback_data`` of the message, so Meta's status webhook
    settles it, ``uncertain`` ones included. ``resend`` is the job (type,
    args, unique key) that sends it again when it failed for a reason that
    retrying can fix.
    """

    __tablename__ = "messages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    subject: Mapped[str] = mapped_column(String(200), unique=True)
    phone: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16), default=MessageState.SENDING.value)
    form: Mapped[str | None] = mapped_column(String(16))  # text or template
    resend: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    attempts: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    wamid: Mapped[str | None] = mapped_column(String(200))
    error_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    settled_by: Mapped[str | None] = mapped_column(String(200))  # who decided an uncertain one by hand

    __table_args__ = (
        Index("ix_messages_wamid", "wamid"),
        # A customer's messages of the last day (the daily cap on order messages).
        Index("ix_messages_phone_created_at", "phone", "created_at"),
        # The customers messaged in the last 24 hours (WhatsApp's messaging limit).
        Index("ix_messages_created_at", "created_at"),
        # What is still open: uncertain ones, and sends a dead worker left behind.
        Index("ix_messages_open", "created_at", sqlite_where=_OPEN_SQL, postgresql_where=_OPEN_SQL),
    )

    def to_dict(self) -> dict[str, Any]:
        return self.values("id", "kind", "subject", "phone", "state", "form", "attempts", "wamid", "error_code",
                           "error", "created_at", "sent_at", "delivered_at", "read_at", "failed_at", "settled_by")
