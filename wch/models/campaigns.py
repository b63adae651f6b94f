"""Broadcast campaigns, their recipients, and the shared send-rate limit."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from wch.db import UTCDateTime, db, utcnow


class CampaignStatus(enum.StrEnum):
    DRAFT = "draft"
    SCHEDULED = "scheduled"
    SENDING = "sending"
    PAUSED = "paused"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    FAILED = "failed"


class RecipientStatus(enum.StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    FAILED = "failed"
    SKIPPED = "skipped"


COUNTERS = ("sent", "delivered", "read", "failed", "skipped")
_CLAIMED_SQL = text("claim IS NOT NULL")
_SENDING_SQL = text("status = 'sending'")


class Campaign(db.Model):
    """A message sent to an audience: a template (name, language, parameters) or a text.

    Counters: ``sent`` counts recipients Meta accepted (including those since
    delivered or read), ``delivered`` those delivered or read, ``read`` those
    read; ``failed`` and ``skipped`` the rest that are settled. They only
    change through :func:`wch.messaging.campaigns.recipients.move_recipients` with ``SET n = n + d``.
    """

    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    template_name: Mapped[str | None] = mapped_column(String(200))
    template_language: Mapped[str | None] = mapped_column(String(20))
    template_parameters: Mapped[list[str]] = mapped_column(JSON, default=list)
    text: Mapped[str | None] = mapped_column(Text)
    audience: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(16), default=CampaignStatus.DRAFT.value)
    status_reason: Mapped[str | None] = mapped_column(Text)
    start_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    total: Mapped[int] = mapped_column(Integer, default=0)
    sent: Mapped[int] = mapped_column(Integer, default=0)
    delivered: Mapped[int] = mapped_column(Integer, default=0)
    read: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    skipped: Mapped[int] = mapped_column(Integer, default=0)

    __table_args__ = (Index("ix_campaigns_status_start_at", "status", "start_at"),)

    def to_dict(self) -> dict[str, Any]:
        return self.values("id", "name", "template_name", "template_language", "template_parameters", "text",
                           "audience", "status", "status_reason", "start_at", "created_at", "started_at",
                           "finished_at", "total", *COUNTERS)


class Recipient(db.Model):
    """One phone number of a campaign and what became of its message.

    ``claim`` names the batch job that took it for sending; ``attention_at``
    is set when it was in flight while its worker died, so nobody knows
    whether Meta got it: it is never resent automatically, and the status
    webhook settles it.
    """

    __tablename__ = "campaign_recipients"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    phone: Mapped[str] = mapped_column(String(20))
    name: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default=RecipientStatus.PENDING.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claim: Mapped[str | None] = mapped_column(String(64))
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attention_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    wamid: Mapped[str | None] = mapped_column(String(200))
    error_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        # A phone appears once per campaign, so nobody gets the same campaign twice.
        UniqueConstraint("campaign_id", "phone", name="uq_campaign_recipients_campaign_phone"),
        # The batch claims "next pending of this campaign, by id" from this index, stepping
        # over the few that wait for a retry.
        Index("ix_campaign_recipients_claim", "campaign_id", "status", "id"),
        # A batch finds its own claimed rows, and the sweep stale claims, by this one.
        Index("ix_campaign_recipients_claimed", "claim", sqlite_where=_CLAIMED_SQL, postgresql_where=_CLAIMED_SQL),
        Index("ix_campaign_recipients_wamid", "wamid"),
        # The customers messaged in the last 24 hours (WhatsApp's messaging limit).
        Index("ix_campaign_recipients_sent_at", "sent_at"),
        # "What did we send to +49…?": a contact's messages across campaigns.
        Index("ix_campaign_recipients_phone", "phone"),
        # The sweep looks for sends left in flight by a worker that died.
        Index("ix_campaign_recipients_in_flight", "claimed_at", sqlite_where=_SENDING_SQL,
              postgresql_where=_SENDING_SQL),
    )

    def to_dict(self) -> dict[str, Any]:
        return self.values("id", "campaign_id", "phone", "name", "status", "attempts", "wamid", "error_code", "error",
                           "sent_at", "delivered_at", "read_at", "failed_at") | {
            "needs_attention": self.attention_at is not None}


class SendRate(db.Model):
    """The next free send slot of one WhatsApp phone number, shared by every process.

    ``next_slot_us`` is a Unix time in microseconds; see :mod:`wch.messaging.budget`.
    """

    __tablename__ = "send_rates"

    sender: Mapped[str] = mapped_column(String(64), primary_key=True)
    next_slot_us: Mapped[int] = mapped_column(BigInteger, default=0)
