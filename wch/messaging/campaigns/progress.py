"""Reading campaigns: the list, one campaign's progress, a page of its recipients, those in progress."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from wch.db import db
from wch.messaging.campaigns.lifecycle import get_campaign
from wch.models import Campaign, CampaignStatus, Recipient, RecipientStatus
from wch.models.campaigns import COUNTERS

_S = RecipientStatus
IN_PROGRESS = (CampaignStatus.SCHEDULED.value, CampaignStatus.SENDING.value, CampaignStatus.PAUSED.value)


def list_campaigns(*, limit: int = 50) -> list[Campaign]:
    """Campaigns, newest first."""
    return list(db.session.scalars(select(Campaign).order_by(Campaign.id.desc()).limit(limit)))


def list_recipients(campaign_id: int, *, status: str | None = None, attention: bool = False,
                    limit: int = 100, offset: int = 0) -> list[Recipient]:
    """A page of a campaign's recipients, optionally of one status or only those needing attention."""
    query = select(Recipient).where(Recipient.campaign_id == campaign_id)
    if status is not None:
        query = query.where(Recipient.status == status)
    if attention:
        query = query.where(Recipient.attention_at.is_not(None), Recipient.status == _S.SENDING.value)
    return list(db.session.scalars(query.order_by(Recipient.id).limit(limit).offset(offset)))


def progress(campaign_id: int) -> dict[str, Any]:
    """The campaign with its counters, what is still to send, and how far along it is.

    ``pending`` is waiting to be sent (some after a retry delay), ``in_flight``
    is being sent now, ``needs_attention`` was in flight when its worker died
    (the status webhook settles it; it is never resent automatically).
    """
    campaign = get_campaign(campaign_id)
    by_status = dict(db.session.execute(
        select(Recipient.status, func.count())
        .where(Recipient.campaign_id == campaign_id, Recipient.status.in_((_S.PENDING.value, _S.SENDING.value)))
        .group_by(Recipient.status)
    ).all())
    attention = db.session.scalar(
        select(func.count()).select_from(Recipient).where(
            Recipient.campaign_id == campaign_id, Recipient.status == _S.SENDING.value,
            Recipient.attention_at.is_not(None),
        )
    )
    sending = by_status.get(_S.SENDING.value, 0)
    settled = campaign.sent + campaign.failed + campaign.skipped
    return {
        **campaign.to_dict(),
        "pending": by_status.get(_S.PENDING.value, 0),
        "in_flight": sending - attention,
        "needs_attention": attention,
        "settled": settled,
        "percent": round(100.0 * settled / campaign.total, 1) if campaign.total else 100.0,
    }


def campaigns_in_progress(*, limit: int = 10) -> list[dict[str, Any]]:
    """Campaigns being sent, paused or scheduled (the newest ``limit``), each with its :func:`progress`."""
    query = select(Campaign.id).where(Campaign.status.in_(IN_PROGRESS)).order_by(Campaign.id.desc()).limit(limit)
    found = []
    for campaign_id in db.session.scalars(query).all():
        item = progress(campaign_id)
        item["done"] = item["settled"]
        item["counters"] = {name: item[name] for name in ("total", *COUNTERS)} | {"pending": item["pending"]}
        found.append(item)
    return found
