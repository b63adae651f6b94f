"""WhatsApp's limits on a phone number: the messaging limit, the quality rating, the account's standing.

The messaging limit is how many different customers a business portfolio may
message outside their 24-hour window in any moving 24 hours (250, 2,000,
10,000, 100,000 or unlimited). ``WCH_MESSAGING_LIMIT`` says what it is until
Meta tells us, through the ``phone_number_quality_update`` webhook or the
Graph API; campaigns are planned and sent against what is left of it.

A number Meta flags for its quality, downgrades, or whose account it
restricts, pauses every running campaign: staff resume them when they have
looked into it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, union, update
from sqlalchemy.exc import IntegrityError

from wch.config import parse_messaging_limit
from wch.db import db, utcnow
from wch.messaging.campaigns.lifecycle import pause_for_error
from wch.models import Campaign, CampaignStatus, Message, MessageState, PhoneNumber, Recipient, RecipientStatus

WINDOW = timedelta(hours=24)
UNLIMITED = "unlimited"
# phone_number_quality_update events that mean Meta is unhappy with what the number sends.
FLAGGING_EVENTS = frozenset({"FLAGGED", "DOWNGRADE"})
CLEARING_EVENTS = frozenset({"UNFLAGGED", "UPGRADE"})
# account_update events (and ban states) that stop business-initiated messages.
ACCOUNT_STOPS = frozenset({"ACCOUNT_VIOLATION", "ACCOUNT_RESTRICTION", "DISABLED_UPDATE", "ACCOUNT_DELETED"})
BAN_STATES = frozenset({"DISABLE", "SCHEDULE_FOR_DISABLE"})


def parse_limit(value: Any) -> int | None:
    """Customers per 24 hours for a limit as Meta or staff write it; None: unlimited. Raises :class:`ValueError`."""
    return parse_messaging_limit(str(value))


def format_limit(limit: int | None) -> str:
    return UNLIMITED if limit is None else f"{limit:,}"


@dataclass(frozen=True)
class Standing:
    """What wch knows of a number: its messaging ``limit`` (None: unlimited) and where that came from, its
    quality, whether it is flagged, and the customers messaged in the last 24 hours."""

    sender: str
    limit: int | None
    limit_source: str  # "setting" or "Meta"
    quality_rating: str | None
    flagged: bool
    last_event: str | None
    last_event_detail: str | None
    used: int

    @property
    def left(self) -> int | None:
        return None if self.limit is None else max(0, self.limit - self.used)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__) | {"limit": format_limit(self.limit), "left": self.left}


def standing(sender: str, *, configured: int | None, now: datetime | None = None) -> Standing:
    """The number's limit (Meta's last word, else ``configured``), quality, and use of the last 24 hours."""
    row = db.session.get(PhoneNumber, sender)
    limit, source = _limit(row, configured)
    return Standing(
        sender=sender,
        limit=limit,
        limit_source=source,
        quality_rating=row.quality_rating if row else None,
        flagged=row is not None and row.flagged_at is not None,
        last_event=row.last_event if row else None,
        last_event_detail=row.last_event_detail if row else None,
        used=customers_messaged(now=now),
    )


def room(sender: str, *, configured: int | None, now: datetime | None = None) -> int | None:
    """How many more customers may be sent a template now; None when the limit is unlimited.

    Locks the number's row until the caller commits, so two batches claiming
    at once on PostgreSQL count each other's claims (SQLite runs one writer
    at a time anyway).
    """
    limit, _ = _limit(_row(sender), configured)
    return None if limit is None else max(0, limit - customers_messaged(now=now))


def _limit(row: PhoneNumber | None, configured: int | None) -> tuple[int | None, str]:
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
    limit, _ = _limit(db.session.get(PhoneNumber, sender), configured)
    if campaign is None or campaign.template_name is None:
        limit = None
    used = customers_messaged() if limit is not None else 0
    days = plan(to_send, limit=limit, used=used)
    return {"days": days, "text": describe_plan(days), "limit": format_limit(limit), "used_24h": used}


# -- what Meta tells us -----------------------------------------------------


def _row(sender: str) -> PhoneNumber:
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


def record_display_number(sender: str, display: str | None) -> None:
    """Remember the number's display form (Meta's quality webhooks name it so). The caller commits."""
    if display:
        row = _row(sender)
        if row.display_phone_number != display:
            row.display_phone_number, row.updated_at = display, utcnow()


def apply_quality_update(sender: str, value: dict[str, Any]) -> list[int]:
    """Apply a ``phone_number_quality_update`` webhook: the limit, and a flag that pauses running campaigns.

    A webhook about another number of the business is applied only for its
    limit (which is shared by the portfolio). Returns the campaigns it
    paused. The caller commits.
    """
    row = _row(sender)
    now = utcnow()
    event = str(value.get("event") or "").upper()
    limit = value.get("max_daily_conversations_per_business") or value.get("current_limit")
    if limit:
        try:
            row.messaging_limit = format_limit(parse_limit(limit)).replace(",", "")
            row.limit_updated_at = now
        except ValueError:
            pass
    display = _digits(value.get("display_phone_number"))
    if display and row.display_phone_number and display != _digits(row.display_phone_number):
        return []  # another number of the business
    row.last_event, row.last_event_detail, row.updated_at = event or None, _detail(value), now
    if event in FLAGGING_EVENTS:
        row.flagged_at = row.flagged_at or now
        return pause_running(f"paused: Meta reported the number {event.lower()} for its quality")
    if event in CLEARING_EVENTS:
        row.flagged_at = None
    return []


def apply_account_update(sender: str, value: dict[str, Any]) -> list[int]:
    """Apply an ``account_update`` webhook: a violation, restriction or ban pauses running campaigns.

    Returns the campaigns it paused. The caller commits.
    """
    event = str(value.get("event") or "").upper()
    ban = str((value.get("ban_info") or {}).get("waba_ban_state") or "").upper()
    row = _row(sender)
    now = utcnow()
    row.last_event, row.last_event_detail, row.updated_at = (event or None), _detail(value), now
    if event in ACCOUNT_STOPS or ban in BAN_STATES:
        row.flagged_at = row.flagged_at or now
        return pause_running(f"paused: Meta reported {(event or ban).lower().replace('_', ' ')} on the account")
    if ban == "REINSTATE":
        row.flagged_at = None
    return []


def apply_api_standing(sender: str, answer: dict[str, Any]) -> None:
    """Record what the Graph API says of the number (quality rating, limit). The caller commits."""
    row = _row(sender)
    now = utcnow()
    if answer.get("whatsapp_business_manager_messaging_limit") is not None:
        try:
            row.messaging_limit = format_limit(
                parse_limit(answer["whatsapp_business_manager_messaging_limit"])).replace(",", "")
            row.limit_updated_at = now
        except ValueError:
            pass
    if answer.get("quality_rating"):
        row.quality_rating = str(answer["quality_rating"]).upper()[:16]
    if answer.get("display_phone_number"):
        row.display_phone_number = str(answer["display_phone_number"])[:32]
    row.updated_at = now


def forget_learned_limit(sender: str) -> None:
    """Go back to ``WCH_MESSAGING_LIMIT`` until Meta next says otherwise. The caller commits."""
    db.session.execute(update(PhoneNumber).where(PhoneNumber.sender == sender)
                       .values(messaging_limit=None, limit_updated_at=None))


def pause_running(reason: str) -> list[int]:
    """Pause every sending campaign for ``reason``; returns their ids. The caller commits."""
    sending = db.session.scalars(select(Campaign.id).where(Campaign.status == CampaignStatus.SENDING.value)).all()
    return [campaign_id for campaign_id in sending if pause_for_error(campaign_id, reason)]


def _digits(number: Any) -> str:
    return "".join(c for c in str(number or "") if c.isdigit())


def _detail(value: dict[str, Any]) -> str:
    shown = {key: item for key, item in value.items() if key not in ("display_phone_number",)}
    return ", ".join(f"{key}={item}" for key, item in sorted(shown.items()))[:1000]
