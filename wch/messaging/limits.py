"""WhatsApp's messaging limit: how many different customers the number may message a day.

The limit is how many different customers a business portfolio may message
outside their 24-hour window in any moving 24 hours (250, 2,000, 10,000,
100,000 or unlimited). ``WCH_MESSAGING_LIMIT`` says what it is until Meta
tells us (:mod:`wch.messaging.standing`); campaigns are planned and sent
against what is left of it.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, union
from sqlalchemy.exc import IntegrityError

from wch.config import parse_messaging_limit
from wch.db import db, utcnow
from wch.models import Campaign, Message, MessageState, PhoneNumber, Recipient, RecipientStatus

WINDOW = timedelta(hours=24)
UNLIMITED = "unlimited"


def parse_limit(value: Any) -> int | None:
    """Customers per 24 hours for a limit as Meta or staff write it; None: unlimited. Raises :class:`ValueError`."""
    return parse_messaging_limit(str(value))


def format_limit(limit: int | None) -> str:
    return UNLIMITED if limit is None else f"{limit:,}"


def room(sender: str, *, configured: int | None, now: datetime | None = None) -> int | None:
    """How many more customers may be sent a template now; None when the limit is unlimited.

    Locks the number's row until the caller commits, so two batches claiming
    at once on PostgreSQL count each other's claims (SQLite runs one writer
    at a time anyway).
    """
    limit, _ = limit_of(number_row(sender), configured)
    return None if limit is None else max(0, limit - customers_messaged(now=now))


def limit_of(row: PhoneNumber | None, configured: int | None) -> tuple[int | None, str]:
    """The limit Meta last reported for the number, else ``configured``; and which of the two it is."""
    if row is not None and row.messaging_limit is not None:
        return parse_limit(row.messaging_limit), "Meta"
    return configured, "setting"


def _counted(since: datetime):
    """The phones that count against the limit since ``since``: every template that went out or may have, and
    the recipients a batch has claimed to send."""
    messages = select(Message.phone).where(Message.form == "template", Message.created_at >= since,
                                           Message.state != MessageState.FAILED.value)
    templated = select(Campaign.id).where(Campaign.template_name.is_not(None))
    sent = select(Recipient.phone).where(Recipient.sent_at >= since, Recipient.campaign_id.in_(templated))
    in_flight = select(Recipient.phone).where(Recipient.status == RecipientStatus.SENDING.value,
                                              Recipient.claimed_at >= since, Recipient.campaign_id.in_(templated))
    claimed = select(Recipient.phone).where(Recipient.claim.is_not(None),
                                            Recipient.status == RecipientStatus.PENDING.value,
                                            Recipient.campaign_id.in_(templated))
    return union(messages, sent, in_flight, claimed).subquery()


def customers_messaged(*, now: datetime | None = None) -> int:
    """Different customers sent a template (business-initiated) in the last 24 hours.

    Counts a little high: a customer inside their own 24-hour window costs
    nothing, but wch cannot tell which window Meta counted.
    """
    since = (now or utcnow()) - WINDOW
    return db.session.scalar(select(func.count()).select_from(_counted(since)))


def next_room(*, now: datetime | None = None) -> datetime:
    """When the oldest send counted now leaves the 24-hour window (room for one more customer)."""
    now = now or utcnow()
    since = now - WINDOW
    oldest = [
        db.session.scalar(select(func.min(Message.created_at)).where(
            Message.form == "template", Message.created_at >= since, Message.state != MessageState.FAILED.value)),
        db.session.scalar(select(func.min(Recipient.sent_at)).where(Recipient.sent_at >= since)),
    ]
    found = [moment for moment in oldest if moment is not None]
    return min(found) + WINDOW if found else now


def plan(recipients: int, *, limit: int | None, used: int) -> list[int]:
    """How many of ``recipients`` can be sent each day: today what is left of ``limit``, then ``limit`` a day."""
    if recipients <= 0:
        return []
    if limit is None:
        return [recipients]
    today = min(recipients, max(0, limit - used))
    rest = recipients - today
    return [today] + [min(limit, rest - day * limit) for day in range(math.ceil(rest / limit))]


def describe_plan(days: list[int]) -> str:
    """``12,000 recipients: today 10,000, tomorrow 2,000``."""
    total = sum(days)
    if not days:
        return "no recipients left to send"
    names = ["today", "tomorrow"] + [f"day {n}" for n in range(3, len(days) + 1)]
    parts = ", ".join(f"{name} {count:,}" for name, count in zip(names, days, strict=False))
    return f"{total:,} recipient{'s' if total != 1 else ''}: {parts}"


def plan_campaign(campaign_id: int, *, sender: str, configured: int | None) -> dict[str, Any]:
    """How a campaign's recipients still to send spread over the days the messaging limit allows.

    ``text`` reads like ``12,000 recipients: today 10,000, tomorrow 2,000``. A
    text campaign reaches only customers inside their 24-hour window, which
    the limit does not count.
    """
    campaign = db.session.get(Campaign, campaign_id)
    to_send = db.session.scalar(select(func.count()).select_from(Recipient).where(
        Recipient.campaign_id == campaign_id, Recipient.status == RecipientStatus.PENDING.value))
    limit, _ = limit_of(db.session.get(PhoneNumber, sender), configured)
    if campaign is None or campaign.template_name is None:
        limit = None
    used = customers_messaged() if limit is not None else 0
    days = plan(to_send, limit=limit, used=used)
    return {"days": days, "text": describe_plan(days), "limit": format_limit(limit), "used_24h": used}


def number_row(sender: str) -> PhoneNumber:
    """The number's row, created if new, locked until the caller commits."""
    row = db.session.get(PhoneNumber, sender, with_for_update=True)
    if row is None:
        try:
            with db.session.begin_nested():
                db.session.add(PhoneNumber(sender=sender, updated_at=utcnow()))
        except IntegrityError:
            pass  # another transaction created it first
        row = db.session.get(PhoneNumber, sender, with_for_update=True, populate_existing=True)
    return row
