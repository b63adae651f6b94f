"""One record of every message to a customer about an order or a cart: claimed before Meta is called, settled after.

A message is claimed by writing its row (``sending``), committed before the
call to Meta: a retried, redelivered or repeated job about the same subject
finds it and sends nothing. Meta's answer moves it to ``sent``; an error
answer to ``failed``, which a later attempt may claim again; a lost answer
to ``uncertain``: Meta may have it, so nothing sends it again until Meta's
status webhook (:func:`apply_status`) or a person (:mod:`.unsettled`)
settles it. The subject is the callback data Meta echoes in its statuses.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from wch.db import db, utcnow
from wch.jobs import dispatch
from wch.models import Message, MessageState
from wch.redact import redact_text
from wch.whatsapp import WhatsAppError

_S = MessageState
# Statuses move a message forward only, so a repeated or late webhook changes nothing twice.
FORWARD = {
    "sent": (_S.SENDING, _S.UNCERTAIN),
    "delivered": (_S.SENDING, _S.UNCERTAIN, _S.SENT),
    "read": (_S.SENDING, _S.UNCERTAIN, _S.SENT, _S.DELIVERED),
    "failed": (_S.SENDING, _S.UNCERTAIN, _S.SENT),
}
STAMP = {"sent": "sent_at", "delivered": "delivered_at", "read": "read_at", "failed": "failed_at"}
# Failures Meta reports in a status that a later try can get past: its own trouble and its rate limits.
RETRYABLE_FAILURES = frozenset({1, 2, 4, 130429, 131000, 131016, 131056})
MAX_ATTEMPTS = 3
RESEND_DELAY = 60.0  # seconds; Meta's pair rate limit wants a pause before the same customer is tried again
OPEN = (_S.SENDING.value, _S.UNCERTAIN.value)
LEFT_SENDING = "in flight when its worker stopped; waiting for Meta's status"


@dataclass(frozen=True)
class Resend:
    """The job that sends a message again: ``type`` with ``args``, one pending per ``unique`` key."""

    type: str
    args: dict[str, Any]
    unique: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "args": self.args, "unique": self.unique}


def claim(kind: str, subject: str, phone: str, *, form: str, resend: Resend | None = None) -> int | None:
    """Claim the message about ``subject``: its row's id, or None if it was sent, is being sent or may have been.

    A message that failed for certain is claimed again (one more attempt).
    The caller commits, before calling Meta.
    """
    now = utcnow()
    try:
        with db.session.begin_nested():
            row = Message(kind=kind, subject=subject, phone=phone, state=_S.SENDING.value, form=form,
                          resend=resend.to_json() if resend else None, attempts=1, created_at=now)
            db.session.add(row)
        return row.id
    except IntegrityError:
        pass
    return db.session.execute(
        update(Message)
        .where(Message.subject == subject, Message.state == _S.FAILED.value)
        .values(state=_S.SENDING.value, phone=phone, form=form, attempts=Message.attempts + 1, error=None,
                error_code=None, failed_at=None, wamid=None, created_at=now)
        .returning(Message.id)
    ).scalar()


def state_of(subject: str) -> str | None:
    """The state of the message about ``subject``, or None if there is none."""
    return db.session.scalar(select(Message.state).where(Message.subject == subject))


def set_form(message_id: int, form: str) -> None:
    """Record that the message goes out as ``form`` after all (a template when the 24-hour window closed)."""
    db.session.execute(update(Message).where(Message.id == message_id).values(form=form))


def mark_sent(message_id: int, wamid: str) -> None:
    """Record Meta's acceptance. A status webhook may have been faster: it keeps its state. The caller commits."""
    now = utcnow()
    db.session.execute(update(Message).where(Message.id == message_id, Message.state == _S.SENDING.value)
                       .values(state=_S.SENT.value, sent_at=now, error=None, error_code=None))
    db.session.execute(update(Message).where(Message.id == message_id, Message.wamid.is_(None)).values(wamid=wamid))


def mark_not_sent(message_id: int, error: WhatsAppError) -> str:
    """Record a failed send: ``uncertain`` if Meta may have it, else ``failed``; returns which. The caller commits."""
    state = _S.UNCERTAIN if error.sent_unknown else _S.FAILED
    db.session.execute(
        update(Message).where(Message.id == message_id, Message.state == _S.SENDING.value)
        .values(state=state.value, error=redact_text(str(error))[:2000], error_code=error.code,
                failed_at=None if error.sent_unknown else utcnow())
    )
    return state.value


def sent_today(phone: str, kind: str, *, now: datetime | None = None) -> int:
    """How many ``kind`` messages ``phone`` got (or may have got) in the last 24 hours."""
    since = (now or utcnow()) - timedelta(hours=24)
    return db.session.scalar(select(func.count()).select_from(Message).where(
        Message.phone == phone, Message.created_at >= since, Message.kind == kind,
        Message.state != _S.FAILED.value))


def find(callback_data: str | None, wamid: str | None) -> Message | None:
    """The message a status is about: by the callback data Meta echoes, else by its wamid; locked for the update."""
    if callback_data:
        found = db.session.scalars(select(Message).where(Message.subject == callback_data).with_for_update()).first()
        if found is not None:
            return found
    if wamid:
        return db.session.scalars(select(Message).where(Message.wamid == wamid).with_for_update().limit(1)).first()
    return None


def apply_status(message: Message, name: str, *, at: datetime, wamid: str | None,
                 error_code: int | None = None, error: str | None = None) -> int:
    """Move ``message`` forward for a ``sent``/``delivered``/``read``/``failed`` status; returns 1 if it moved.

    A failure that a later try can get past sends it again (at most
    :data:`MAX_ATTEMPTS` in all). The caller commits.
    """
    values: dict[str, Any] = {"state": name, STAMP[name]: at}
    if name == "failed":
        values |= {"error_code": error_code, "error": (error or "failed")[:2000]}
    else:
        values |= {"error": None, "error_code": None}
    moved = db.session.execute(
        update(Message).where(Message.id == message.id, Message.state.in_([s.value for s in FORWARD[name]]))
        .values(**values).execution_options(synchronize_session=False)
    ).rowcount
    if wamid:
        db.session.execute(update(Message).where(Message.id == message.id, Message.wamid.is_(None))
                           .values(wamid=wamid))
    if moved and name == "failed" and error_code in RETRYABLE_FAILURES:
        resend(message, delay=RESEND_DELAY)
    return moved


def resend(message: Message, *, delay: float | None = None) -> bool:
    """Dispatch the job that sends ``message`` again, if it has one and attempts are left. The caller commits."""
    if not message.resend or message.attempts >= MAX_ATTEMPTS:
        return False
    job = message.resend
    dispatch(job["type"], job["args"], delay=delay, unique=job.get("unique") or False)
    return True


def flag_left_sending(*, older_than: timedelta) -> int:
    """Mark ``uncertain`` the messages left ``sending`` longer than ``older_than`` (their worker died mid-send).

    They are never sent again automatically; the status webhook settles them. The caller commits.
    """
    cutoff = utcnow() - older_than
    return db.session.execute(
        update(Message).where(Message.state == _S.SENDING.value, Message.created_at < cutoff)
        .values(state=_S.UNCERTAIN.value, error=LEFT_SENDING)
    ).rowcount
