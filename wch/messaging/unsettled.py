"""Messages nobody knows the fate of: their answer was lost, or their worker died while sending them.

They are never sent again automatically. Meta's status webhook settles most
of them within minutes; what is still open after ``WCH_UNCERTAIN_AFTER`` is
listed here for a person to decide (the panel's Messages page,
``wch messages uncertain``): *sent* (the customer has it; nothing more is
done) or *not sent* (an order or reminder message is sent again; a campaign
recipient is marked failed, and the campaign's "retry failed" sends it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update

from wch.db import db, utcnow
from wch.messaging import messages
from wch.messaging.campaigns.recipients import move_recipients
from wch.models import Message, MessageState, Recipient, RecipientStatus

_M = MessageState
MESSAGE, RECIPIENT = "message", "recipient"


class SettleError(ValueError):
    """A settlement that was refused (unknown reference, or already settled); nothing changed."""


@dataclass(frozen=True)
class Unsettled:
    """One message in doubt: ``ref`` names it for :func:`settle` (``message:12``, ``recipient:34``)."""

    ref: str
    kind: str  # order, reminder or campaign
    about: str
    phone: str
    since: datetime
    error: str | None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__) | {"since": self.since.isoformat()}


def _open_messages(cutoff: datetime):
    return Message.state.in_(messages.OPEN), Message.created_at < cutoff


def _open_recipients(cutoff: datetime):
    return (Recipient.status == RecipientStatus.SENDING.value, Recipient.attention_at.is_not(None),
            Recipient.claimed_at < cutoff)


def count_unsettled(*, older_than: timedelta) -> int:
    """How many messages have been in doubt for longer than ``older_than``."""
    cutoff = utcnow() - older_than
    return (db.session.scalar(select(func.count()).select_from(Message).where(*_open_messages(cutoff)))
            + db.session.scalar(select(func.count()).select_from(Recipient).where(*_open_recipients(cutoff))))


def list_unsettled(*, older_than: timedelta, limit: int = 200) -> list[Unsettled]:
    """The messages in doubt for longer than ``older_than``, oldest first (at most ``limit`` of each kind)."""
    cutoff = utcnow() - older_than
    found = [
        Unsettled(f"{MESSAGE}:{m.id}", m.kind, m.subject, m.phone, m.created_at, m.error)
        for m in db.session.scalars(select(Message).where(*_open_messages(cutoff))
                                    .order_by(Message.created_at).limit(limit))
    ] + [
        Unsettled(f"{RECIPIENT}:{r.id}", "campaign", f"campaign {r.campaign_id}", r.phone, r.claimed_at, r.error)
        for r in db.session.scalars(select(Recipient).where(*_open_recipients(cutoff))
                                    .order_by(Recipient.claimed_at).limit(limit))
    ]
    return sorted(found, key=lambda item: item.since)


def settle(ref: str, *, sent: bool, by: str) -> str:
    """Decide a message in doubt: ``sent`` (the customer has it) or not, ``by`` whom; returns what was done.

    Not sent, an order or reminder message is sent again; a campaign recipient
    is marked failed. Raises :class:`SettleError`. The caller commits.
    """
    table, _, number = ref.partition(":")
    if table not in (MESSAGE, RECIPIENT) or not number.isdigit():
        raise SettleError(f"{ref!r} is not a message reference (expected message:ID or recipient:ID)")
    if table == MESSAGE:
        return _settle_message(int(number), sent=sent, by=by)
    return _settle_recipient(int(number), sent=sent, by=by)


def _settle_message(message_id: int, *, sent: bool, by: str) -> str:
    row = db.session.get(Message, message_id, with_for_update=True)
    if row is None or row.state not in messages.OPEN:
        raise SettleError(f"message {message_id} is not in doubt" + (f" (it is {row.state})" if row else ""))
    now = utcnow()
    values = ({"state": _M.SENT.value, "sent_at": now, "error": None} if sent
              else {"state": _M.FAILED.value, "failed_at": now, "error": f"not sent, said {by}"})
    db.session.execute(update(Message).where(Message.id == message_id).values(settled_by=by[:200], **values))
    if sent:
        return f"message {message_id} ({row.subject}) settled as sent"
    db.session.refresh(row)
    again = messages.resend(row)
    return f"message {message_id} ({row.subject}) settled as not sent" + ("; it is sent again" if again else "")


def _settle_recipient(recipient_id: int, *, sent: bool, by: str) -> str:
    row = db.session.get(Recipient, recipient_id, with_for_update=True)
    if row is None or row.status != RecipientStatus.SENDING.value or row.attention_at is None:
        raise SettleError(f"recipient {recipient_id} is not in doubt" + (f" (it is {row.status})" if row else ""))
    now = utcnow()
    this = Recipient.id == recipient_id
    if sent:
        move_recipients(row.campaign_id, (RecipientStatus.SENDING,), RecipientStatus.SENT, where=this,
                        values={"sent_at": now, "attention_at": None, "claim": None, "error": None})
        return f"recipient {recipient_id} of campaign {row.campaign_id} settled as sent"
    move_recipients(row.campaign_id, (RecipientStatus.SENDING,), RecipientStatus.FAILED, where=this,
                    values={"failed_at": now, "attention_at": None, "claim": None,
                            "error": f"not sent, said {by[:200]}"})
    return (f"recipient {recipient_id} of campaign {row.campaign_id} settled as not sent "
            "(the campaign's retry-failed sends it again)")
