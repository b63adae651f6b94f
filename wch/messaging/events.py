"""Applying what Meta's WhatsApp webhook reports: message statuses and inbound messages.

Statuses move a campaign recipient forward only (sent → delivered → read;
failed from sending or sent), so duplicates and out-of-order deliveries
change nothing twice, and the campaign counters follow each real move. A
recipient is found by the callback data the broadcast put on its message,
else by its wamid; that is how one left "needs attention" by a dead worker
is settled.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update

from wch.db import db, transaction, utcnow
from wch.jobs import JobType, dispatch
from wch.messaging import contacts
from wch.messaging.campaigns.recipients import CALLBACK_PREFIX, move_recipients
from wch.models import Job, Recipient, RecipientStatus

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
_STAMP = {"sent": "sent_at", "delivered": "delivered_at", "read": "read_at", "failed": "failed_at"}


def process_later(payload: dict[str, Any], *, delay: float | None = None) -> Job:
    """Dispatch the job that applies a webhook delivery (``delay`` seconds later); a delivery Meta repeats (it does
    when it misses our answer) is dispatched once while the first is pending."""
    return dispatch(PROCESS_WHATSAPP_WEBHOOK, {"payload": payload}, unique=True, delay=delay)


def apply_webhook(payload: dict[str, Any]) -> dict[str, int]:
    """Apply every status and inbound message in a webhook payload; returns what changed.

    Runs its own transactions, one per status or message.
    """
    summary = {"statuses": 0, "moved": 0, "messages": 0}
    for entry in payload.get("entry") or []:
        for change in entry.get("changes") or []:
            value = change.get("value") or {}
            for status in value.get("statuses") or []:
                summary["statuses"] += 1
                summary["moved"] += apply_status(status)
            names = {c.get("wa_id"): (c.get("profile") or {}).get("name") for c in value.get("contacts") or []}
            for message in value.get("messages") or []:
                summary["messages"] += apply_inbound(message, name=names.get(message.get("from")))
    return summary


def apply_status(status: dict[str, Any]) -> int:
    """Apply one status object; returns 1 if a recipient moved, else 0. Runs its own transaction."""
    name = status.get("status")
    if name not in _FORWARD:
        return 0
    with transaction():
        return _apply_status(name, status)


def _apply_status(name: str, status: dict[str, Any]) -> int:
    recipient = _find_recipient(status)
    if recipient is None:
        return 0
    at = _timestamp(status.get("timestamp"))
    values: dict[str, Any] = {_STAMP[name]: at, "attention_at": None, "claim": None}
    if name == "failed":
        error = (status.get("errors") or [{}])[0]
        values["error_code"] = error.get("code")
        values["error"] = " ".join(str(p) for p in (error.get("title"), (error.get("error_data") or {}).get("details"))
                                   if p) or "failed"
    moved = move_recipients(recipient.campaign_id, _FORWARD[name], name, where=Recipient.id == recipient.id,
                            values=values)
    wamid = status.get("id")
    if wamid:
        db.session.execute(update(Recipient).where(Recipient.id == recipient.id, Recipient.wamid.is_(None))
                           .values(wamid=wamid))
    return moved


def _find_recipient(status: dict[str, Any]) -> Recipient | None:
    data = status.get("biz_opaque_callback_data") or ""
    if data.startswith(CALLBACK_PREFIX) and data[len(CALLBACK_PREFIX):].isdigit():
        found = db.session.get(Recipient, int(data[len(CALLBACK_PREFIX):]), with_for_update=True)
        if found is not None:
            return found
    if status.get("id"):
        return db.session.scalars(
            select(Recipient).where(Recipient.wamid == status["id"]).with_for_update().limit(1)
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
