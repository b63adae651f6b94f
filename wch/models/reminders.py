"""The abandoned-cart reminder settings: one row, edited in the panel."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from wch.db import UTCDateTime, db, utcnow

DEFAULT_MESSAGE = "Hi {name}, you left {items} in your cart ({total}). Complete your order here: {cart_link}"


class ReminderSettings(db.Model):
    """How and when idle carts are reminded. Validate edits with :func:`wch.carts.reminder_settings.validate_settings`.

    ``message`` is the text sent inside WhatsApp's 24-hour window, with the
    placeholders {name} {items} {total} {cart_link}; outside it the approved
    template ``template_name`` / ``template_language`` is sent with those four
    values as its body parameters. ``cart_url`` builds {cart_link} from {cart_id}.
    """

    __tablename__ = "reminder_settings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    delay_hours: Mapped[int] = mapped_column(Integer, default=24)
    message: Mapped[str] = mapped_column(Text, default=DEFAULT_MESSAGE)
    template_name: Mapped[str | None] = mapped_column(String(200))
    template_language: Mapped[str] = mapped_column(String(20), default="en_US")
    cart_url: Mapped[str | None] = mapped_column(String(500))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    def to_dict(self) -> dict:
        return self.values("enabled", "delay_hours", "message", "template_name", "template_language", "cart_url")
