"""What Meta says about the sending number: its messaging limit, its quality rating, its account's standing.

Meta tells us through the ``phone_number_quality_update`` and
``account_update`` webhooks, and the Graph API when asked. A number Meta
flags for its quality, downgrades, or whose account it restricts, pauses
every running campaign, and a scheduled one whose time comes meanwhile
starts paused: staff resume them when they have looked into it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update

from wch.db import db, utcnow
from wch.messaging.campaigns.lifecycle import pause_for_error
from wch.messaging.limits import customers_messaged, format_limit, limit_of, number_row, parse_limit
from wch.models import Campaign, CampaignStatus, PhoneNumber

# phone_number_quality_update events that mean Meta is unhappy with what the number sends.
FLAGGING_EVENTS = frozenset({"FLAGGED", "DOWNGRADE"})
CLEARING_EVENTS = frozenset({"UNFLAGGED", "UPGRADE"})
# account_update events (and ban states) that stop business-initiated messages.
ACCOUNT_STOPS = frozenset({"ACCOUNT_VIOLATION", "ACCOUNT_RESTRICTION", "DISABLED_UPDATE", "ACCOUNT_DELETED"})
BAN_STATES = frozenset({"DISABLE", "SCHEDULE_FOR_DISABLE"})


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


def current(sender: str, *, configured: int | None, now: datetime | None = None) -> Standing:
    """The number's limit (Meta's last word, else ``configured``), quality, and use of the last 24 hours."""
    row = db.session.get(PhoneNumber, sender)
    limit, source = limit_of(row, configured)
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


def start_hold(sender: str) -> str | None:
    """Why a scheduled campaign must not begin sending on its own now (Meta has flagged the number), or None."""
    row = db.session.get(PhoneNumber, sender)
    if row is None or row.flagged_at is None:
        return None
    return (f"paused at its scheduled start: Meta reported {(row.last_event or 'flagged').lower().replace('_', ' ')} "
            "on the number; resume it once you have looked into it")


def record_display_number(sender: str, display: str | None) -> None:
    """Remember the number's display form (Meta's quality webhooks name it so). The caller commits."""
    if display:
        row = number_row(sender)
        if row.display_phone_number != display:
            row.display_phone_number, row.updated_at = display, utcnow()


def apply_quality_update(sender: str, value: dict[str, Any]) -> list[int]:
    """Apply a ``phone_number_quality_update`` webhook: the limit, and a flag that pauses running campaigns.

    A webhook about another number of the business is applied only for its
    limit (which is shared by the portfolio). Returns the campaigns it
    paused. The caller commits.
    """
    row = number_row(sender)
    now = utcnow()
    event = str(value.get("event") or "").upper()
    _learn_limit(row, value.get("max_daily_conversations_per_business") or value.get("current_limit"), now)
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
    row = number_row(sender)
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
    row = number_row(sender)
    now = utcnow()
    _learn_limit(row, answer.get("whatsapp_business_manager_messaging_limit"), now)
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


def _learn_limit(row: PhoneNumber, value: Any, now: datetime) -> None:
    """Keep the limit Meta reported (``TIER_2K``, ``2000``…); one wch cannot read leaves the last one."""
    if value in (None, ""):
        return
    try:
        limit = parse_limit(value)
    except ValueError:
        return
    row.messaging_limit, row.limit_updated_at = ("unlimited" if limit is None else str(limit)), now


def _digits(number: Any) -> str:
    return "".join(c for c in str(number or "") if c.isdigit())


def _detail(value: dict[str, Any]) -> str:
    shown = {key: item for key, item in value.items() if key not in ("display_phone_number",)}
    return ", ".join(f"{key}={item}" for key, item in sorted(shown.items()))[:1000]
