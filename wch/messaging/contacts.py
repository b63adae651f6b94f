"""Contacts: phone normalisation, opt-out and opt-in, the 24-hour window."""

from __future__ import annotations

from datetime import datetime, timedelta

import phonenumbers
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from wch.db import db, utcnow
from wch.models import Contact

SESSION_WINDOW = timedelta(hours=24)
# Words a customer sends to stop or restart marketing messages (compared upper-cased, trimmed).
OPT_OUT_WORDS = frozenset({"STOP", "STOPALL", "STOP ALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPT OUT", "OPTOUT"})
OPT_IN_WORDS = frozenset({"START", "UNSTOP", "SUBSCRIBE", "OPT IN", "OPTIN"})


class InvalidPhone(ValueError):
    """A phone number that is not a valid international number."""


def normalize_phone(raw: str, *, default_region: str | None = None) -> str:
    """``raw`` in E.164 form (``+4915112345678``), or :class:`InvalidPhone`.

    Numbers without a leading ``+`` are read as international (WhatsApp's
    ``wa_id`` has no plus) unless ``default_region`` (``"DE"``) is given.
    """
    text = (raw or "").strip()
    if not text:
        raise InvalidPhone("the phone number is empty")
    digits_only = text.replace(" ", "").replace("-", "").replace("(", "").replace(")", "")
    if not digits_only.startswith("+") and default_region is None:
        text = "+" + digits_only.removeprefix("00")
    try:
        number = phonenumbers.parse(text, default_region)
    except phonenumbers.NumberParseException as error:
        raise InvalidPhone(f"{raw!r} is not a phone number ({error})") from None
    if not phonenumbers.is_valid_number(number):
        raise InvalidPhone(f"{raw!r} is not a valid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def get_or_create(phone: str, *, name: str | None = None) -> Contact:
    """The contact for ``phone`` (normalised here), created if new; fills in a missing name."""
    phone = normalize_phone(phone)
    contact = db.session.scalars(select(Contact).where(Contact.phone == phone)).first()
    if contact is None:
        try:
            with db.session.begin_nested():
                contact = Contact(phone=phone, name=name or None, created_at=utcnow())
                db.session.add(contact)
        except IntegrityError:
            contact = db.session.scalars(select(Contact).where(Contact.phone == phone)).one()
    if name and not contact.name:
        contact.name = name
    return contact


def find(phone: str) -> Contact | None:
    try:
        phone = normalize_phone(phone)
    except InvalidPhone:
        return None
    return db.session.scalars(select(Contact).where(Contact.phone == phone)).first()


def is_opted_out(phone: str) -> bool:
    """Whether the customer at ``phone`` asked for no broadcasts or reminders."""
    contact = find(phone)
    return contact is not None and contact.opted_out_at is not None


def in_session_window(contact: Contact | None, *, now: datetime | None = None) -> bool:
    """Whether free-form text may be sent: the customer wrote to us in the last 24 hours."""
    if contact is None or contact.last_inbound_at is None:
        return False
    return (now or utcnow()) - contact.last_inbound_at < SESSION_WINDOW


def opt_out(phone: str, *, at: datetime | None = None) -> Contact:
    """Stop broadcasts and reminders to ``phone`` (staff action; customers send STOP). The caller commits."""
    contact = get_or_create(phone)
    if contact.opted_out_at is None:
        contact.opted_out_at = contact.opt_changed_at = at or utcnow()
    return contact


def opt_in(phone: str) -> Contact:
    """Let broadcasts and reminders reach ``phone`` again. The caller commits."""
    contact = get_or_create(phone)
    contact.opted_out_at = None
    contact.opt_changed_at = utcnow()
    return contact


def record_inbound(phone: str, *, at: datetime, name: str | None = None, text: str | None = None) -> Contact:
    """Note a message from the customer: it opens the 24-hour window; STOP/START words change the opt-out."""
    contact = get_or_create(phone, name=name)
    db.session.flush()
    # Monotonic, so a late webhook cannot move the window back.
    db.session.execute(
        update(Contact)
        .where(Contact.id == contact.id, (Contact.last_inbound_at.is_(None)) | (Contact.last_inbound_at < at))
        .values(last_inbound_at=at)
    )
    word = " ".join((text or "").upper().split())
    if word in OPT_OUT_WORDS or word in OPT_IN_WORDS:
        newest = (Contact.opt_changed_at.is_(None)) | (Contact.opt_changed_at <= at)
        db.session.execute(
            update(Contact)
            .where(Contact.id == contact.id, newest)
            .values(opted_out_at=at if word in OPT_OUT_WORDS else None, opt_changed_at=at)
        )
    db.session.refresh(contact)
    return contact
