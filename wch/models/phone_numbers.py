"""What Meta last told wch about its sending phone number: messaging limit, quality, account standing."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from wch.db import UTCDateTime, db, utcnow


class PhoneNumber(db.Model):
    """The standing of one WhatsApp business phone number (``sender`` is its phone number id).

    ``messaging_limit`` is Meta's tier name (``TIER_2K``…) as learned from the
    ``phone_number_quality_update`` webhook or the Graph API; until then the
    ``WCH_MESSAGING_LIMIT`` setting applies. ``flagged_at`` is set while Meta
    reports the number flagged or downgraded for its quality, or the account
    restricted: running campaigns are paused then.
    """

    __tablename__ = "phone_numbers"

    sender: Mapped[str] = mapped_column(String(64), primary_key=True)
    display_phone_number: Mapped[str | None] = mapped_column(String(32))
    messaging_limit: Mapped[str | None] = mapped_column(String(32))
    limit_updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    quality_rating: Mapped[str | None] = mapped_column(String(16))
    last_event: Mapped[str | None] = mapped_column(String(64))
    last_event_detail: Mapped[str | None] = mapped_column(Text)
    flagged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    def to_dict(self) -> dict[str, Any]:
        return self.values("sender", "display_phone_number", "messaging_limit", "limit_updated_at",
                           "quality_rating", "last_event", "last_event_detail", "flagged_at", "updated_at")
