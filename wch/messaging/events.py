"""Applying what Meta's WhatsApp webhook reports: message statuses, inbound messages, and the number's standing.

A status settles whatever message it is about, found by the callback data
wch put on it (``wch:recipient:<id>`` for a campaign recipient, the subject
of an order or reminder message), else by its wamid. Statuses move a message
forward only (sent → delivered → read; failed from sending or sent), so
duplicates and out-of-order deliveries change nothing twice; that is also how
a message left ``uncertain`` or ``sending`` by a lost answer or a dead worker
is settled. A failure that a later try can get past sends it again; one that
says Meta is limiting the number pauses the campaign.

``phone_number_quality_update`` and ``account_update`` deliveries go to
:mod:`wch.messaging.standing`: the messaging limit, and the flags that pause
running campaigns.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from wch.db import db, transaction, utcnow
from wch.jobs import JobType, dispatch
from wch.messaging import contacts, messages, standing
from wch.messaging.campaigns.lifecycle import pause_for_error
from wch.messaging.campaigns.recipients import CALLBACK_PREFIX, move_recipients
from wch.models import Campaign, CampaignStatus, Job, Recipient, RecipientStatus

logger = logging.getLogger(__name__)

PROCESS_WHATSAPP_WEBHOOK = JobType("process_whatsapp_webhook", queue="broadcast")

_S = RecipientStatus
# The statuses each webhook status may move a recipient from.
_FORWARD = {
    "sent": (_S.SENDING, _S.PENDING),
    "delivered": (_S.SENDING, _S.PENDING, _S.SENT),
    "read": (_S.SENDING, _S.PENDING, _S.SENT, _S.DELIVERED),
    "failed": (_S.SENDING, _S.PENDING, _S.SENT),
}
# Failures that say Meta is limiting what the number sends (spam rate, ecosystem engagement): pause the campaign.
PAUSING_FAILURES = frozenset({131048, 131049})
# A campaign that may still send a recipient put back in line.
_OPEN_CAMPAIGN = (CampaignStatus.SENDING.value, CampaignStatus.PAUSED.value, CampaignStatus.SCHEDULED.value)
MAX_RECIPIENT_ATTEMPTS = 3


def process_later(payload: dict[str, Any], *, delay: float | None = None) -> Job:
    """Dispatch the job that applies a webhook delivery (``delay`` seconds later); a delivery Meta repeats (it does
    when it misses our answer) is dispatched once while the first is pending."""
    return dispatch(PROCESS_WHATSAPP_WEBHOOK, {"payload": payload}, unique=True, delay=delay)


def apply_webhook(payload: dict[str, Any], *, sender: str) -> dict[str, int]:
    """Apply every status, inbound message and standing update in a webhook payload; returns what changed.

    ``sender`` is the phone number id wch sends from. Runs its own
    transactions, one per status, message or update.
    """
    summary = {"statuses": 0, "moved": 0, "messages": 0, "paused": 0}
    for entry in payload.get("entry") or []:
        for change in entry.get("changes") or []:
            value = change.get("value") or {}
            field = change.get("field") or "messages"
            if field == "phone_number_quality_update":
                with transaction():
                    summary["paused"] += len(standing.apply_quality_update(sender, value))
                continue
            if field == "account_update":
                with transaction():
                    summary["paused"] += len(standing.apply_account_update(sender, value))
                continue
            metadata = value.get("metadata") or {}
            if metadata.get("phone_number_id") == sender and metadata.get("display_phone_number"):
                with transaction():
                    standing.record_display_number(sender, str(metadata["display_phone_number"])[:32])
            for status in value.get("statuses") or []:
                summary["statuses"] += 1
                summary["moved"] += apply_status(status)
            names = {c.get("wa_id"): (c.get("profile") or {}).get("name") for c in value.get("contacts") or []}
            for message in value.get("messages") or []:
                summary["messages"] += apply_inbound(message, name=names.get(message.get("from")))
    return summary


def apply_status(status: dict[str, Any]) -> int:
    """Apply one status object; returns 1 if a message or recipient moved, else 0. Runs its own transaction."""
    name = status.get("status")
    if name not in _FORWARD:
        return 0
    at = _timestamp(status.get("timestamp"))
    code, text = _failure(status) if name == "failed" else (None, None)
    data = str(status.get("biz_opaque_callback_data") or "")
    wamid = status.get("id") or None
    with transaction():
        if not data.startswith(CALLBACK_PREFIX):
            message = messages.find(data, wamid)
            if message is not None:
                return messages.apply_status(message, name, at=at, wamid=wamid, error_code=code, error=text)
        recipient = _find_recipient(data, wamid)
        if recipient is None:
            return 0
        return _apply_to_recipient(recipient, name, at=at, wamid=wamid, code=code, text=text)


def _apply_to_recipient(recipient: Recipient, name: str, *, at: datetime, wamid: str | None, code: int | None,
                        text: str | None) -> int:
    values: dict[str, Any] = {messages.STAMP[name]: at, "attention_at": None, "claim": None}
    target = name
    if name == "failed":
        values |= {"error_code": code, "error": text}
        campaign_status = db.session.scalar(select(Campaign.status).where(Campaign.id == recipient.campaign_id))
        if code in PAUSING_FAILURES and pause_for_error(recipient.campaign_id, f"paused: {text}"):
            logger.warning("Campaign %s paused by a failed status: %s", recipient.campaign_id, text)
        elif (code in messages.RETRYABLE_FAILURES and campaign_status in _OPEN_CAMPAIGN
              and recipient.attempts < MAX_RECIPIENT_ATTEMPTS):
            # Meta could not deliver it for now: back in line, after a pause for this customer.
            target = _S.PENDING.value
            values |= {"failed_at": None, "next_attempt_at": at + timedelta(seconds=messages.RESEND_DELAY)}
    moved = move_recipients(recipient.campaign_id, _FORWARD[name], target, where=Recipient.id == recipient.id,
                            values=values)
    if wamid:
        db.session.execute(update(Recipient).where(Recipient.id == recipient.id, Recipient.wamid.is_(None))
                           .values(wamid=wamid))
    return moved


def _failure(status: dict[str, Any]) -> tuple[int | None, str]:
    error = (status.get("errors") or [{}])[0]
    code = error.get("code")
    text = " ".join(str(p) for p in (error.get("title"), (error.get("error_data") or {}).get("details")) if p)
    label = f"({code}) " if code is not None else ""
    return (code if isinstance(code, int) else None), f"{label}{text or 'failed'}"[:1000]


def _find_recipient(data: str, wamid: str | None) -> Recipient | None:
    if data.startswith(CALLBACK_PREFIX) and data[len(CALLBACK_PREFIX):].isdigit():
        found = db.session.get(Recipient, int(data[len(CALLBACK_PREFIX):]), with_for_update=True)
        if found is not None:
            return found
    if wamid:
        return db.session.scalars(
            select(Recipient).where(Recipient.wamid == wamid).with_for_update().limit(1)
        ).first()
    return None


def apply_inbound(message: dict[str, Any], *, name: str | None = None) -> int:
    """Record a customer's message: the 24-hour window, and STOP/START words; returns 1 if recorded.

    Runs its own transaction.
    """
    sender = message.get("from")
    try:
        phone = contacts.normalize_phone(str(sender or ""))
    except contacts.InvalidPhone:
        logger.warning("Ignoring an inbound message from an invalid number.")
        return 0
    text = (message.get("text") or {}).get("body") if message.get("type") == "text" else None
    if message.get("type") == "button":
        text = (message.get("button") or {}).get("text")
    with transaction():
        contacts.record_inbound(phone, at=_timestamp(message.get("timestamp")), name=name, text=text)
    return 1


def _timestamp(value: Any) -> datetime:
    try:
        return datetime.fromtimestamp(int(value), UTC)
    except (TypeError, ValueError, OverflowError):
        return utcnow()
