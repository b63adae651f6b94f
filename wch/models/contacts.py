"""Customers we can message on WhatsApp, and whether they want us to."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from wch.db import UTCDateTime, db, utcnow


class Contact(db.Model):
    """A customer, keyed by phone number in E.164 form (``+4915112345678``).

    ``opted_out_at`` set means no broadcasts or reminders; ``last_inbound_at``
    is the customer's last message to us, which opens WhatsApp's 24-hour
    window for free-form text. Normalise phones with :func:`wch.messaging.contacts.normalize_phone`.
    """

    __tablename__ = "contacts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    phone: Mapped[str] = mapped_column(String(20), unique=True)
    name: Mapped[str | None] = mapped_column(String(200))
    opted_out_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_inbound_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When the customer last said STOP or START, so a late webhook cannot undo a newer choice.
    opt_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (Index("ix_contacts_opted_out_at", "opted_out_at"), Index("ix_contacts_created_at", "created_at"))

    @property
    def opted_out(self) -> bool:
        return self.opted_out_at is not None

    def to_dict(self) -> dict:
        return self.values("id", "phone", "name", "opted_out_at", "last_inbound_at")
