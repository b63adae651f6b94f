"""Abandoned-cart reminders: their settings, the scan for idle carts, the reminder, and recovery.

The scan (periodic, and ``wch carts remind``) dispatches one ``send_cart_reminder``
job per eligible cart, unique per cart and its ``updated_at``. The job claims
the cart by stamping ``reminder_sent_at`` with a conditional ``UPDATE`` before
sending, so a replayed or duplicated job finds it stamped and sends nothing.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import and_, func, or_, select, update

from wch import contacts
from wch.db import db, utcnow
from wch.dispatcher import dispatch
from wch.models import Cart, CartStatus, Contact, ReminderSettings
from wch.models.reminders import DEFAULT_MESSAGE

REMINDER_JOB = "send_cart_reminder"
PLACEHOLDERS = ("name", "items", "total", "cart_link")
MIN_DELAY_HOURS, MAX_DELAY_HOURS = 1, 720
SCAN_CHUNK = 500


class ReminderSettingsError(ValueError):
    """Reminder settings that were refused; ``errors`` maps each bad field to why. Nothing was saved."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{field}: {message}" for field, message in errors.items()))
        self.errors = errors


# -- settings ----------------------------------------------------------------


def get_settings() -> ReminderSettings:
    """The reminder settings row, created with the defaults the first time."""
    row = db.session.get(ReminderSettings, 1)
    if row is None:
        row = ReminderSettings(id=1, enabled=False, delay_hours=24, message=DEFAULT_MESSAGE,
                               template_language="en_US", updated_at=utcnow())
        db.session.add(row)
        db.session.flush()
    return row


def validate_settings(data: Mapping[str, Any]) -> dict[str, Any]:
    """Check edited reminder settings (the panel's form, the CLI); returns the cleaned values.

    Fields: ``enabled`` (bool), ``delay_hours`` (1–720), ``message`` (only the
    placeholders {name} {items} {total} {cart_link}), ``template_name`` (the
    approved template used outside the 24-hour window; required when enabled),
    ``template_language`` (e.g. en_US), ``cart_url`` (may use {cart_id}).
    Missing fields keep their current value. Raises :class:`ReminderSettingsError`.
    """
    current = get_settings().to_dict()
    values = {**current, **{k: v for k, v in data.items() if k in current}}
    errors: dict[str, str] = {}

    enabled = values["enabled"]
    if isinstance(enabled, str):
        enabled = enabled.strip().lower() in ("1", "true", "yes", "on", "y")
    values["enabled"] = bool(enabled)

    try:
        delay = int(str(values["delay_hours"]).strip())
    except (TypeError, ValueError):
        errors["delay_hours"] = f"{values['delay_hours']!r} is not a whole number of hours"
    else:
        if not MIN_DELAY_HOURS <= delay <= MAX_DELAY_HOURS:
            errors["delay_hours"] = f"must be between {MIN_DELAY_HOURS} and {MAX_DELAY_HOURS} hours, got {delay}"
        values["delay_hours"] = delay

    message = str(values["message"] or "").strip()
    if not message:
        errors["message"] = "the message cannot be empty"
    elif problem := _placeholder_problem(message, PLACEHOLDERS):
        errors["message"] = problem
    values["message"] = message

    values["template_name"] = str(values["template_name"] or "").strip() or None
    values["template_language"] = str(values["template_language"] or "").strip() or "en_US"
    if values["enabled"] and not values["template_name"]:
        errors["template_name"] = "an approved template is needed for customers outside the 24-hour window"

    cart_url = str(values["cart_url"] or "").strip() or None
    if cart_url is not None:
        if not cart_url.startswith(("https://", "http://")):
            errors["cart_url"] = "must be a web address starting with https://"
        elif problem := _placeholder_problem(cart_url, ("cart_id",)):
            errors["cart_url"] = problem
    values["cart_url"] = cart_url

    if errors:
        raise ReminderSettingsError(errors)
    return values


def save_settings(data: Mapping[str, Any]) -> ReminderSettings:
    """Validate and store reminder settings; commits."""
    values = validate_settings(data)
    row = get_settings()
    for name, value in values.items():
        setattr(row, name, value)
    db.session.commit()
    return row


def _placeholder_problem(text: str, allowed: tuple[str, ...]) -> str | None:
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
    except ValueError as error:
        return f"{error} (write {{{{ and }}}} for literal braces)"
    unknown = names - set(allowed)
    if unknown:
        known = " ".join("{" + name + "}" for name in allowed)
        return f"unknown placeholder(s) {', '.join('{' + n + '}' for n in sorted(unknown))} (allowed: {known})"
    return None


# -- scan --------------------------------------------------------------------


def _eligible(cutoff: datetime):
    """Active carts idle since before ``cutoff``, not reminded since their last change, contact not opted out."""
    opted_out = select(Contact.phone).where(Contact.opted_out_at.is_not(None))
    return and_(
        Cart.status == CartStatus.ACTIVE.value,
        Cart.updated_at < cutoff,
        or_(Cart.reminder_sent_at.is_(None), Cart.reminder_sent_at < Cart.updated_at),
        Cart.total > 0,
        Cart.customer_phone.not_in(opted_out),
    )


def scan(*, now: datetime | None = None) -> int:
    """Dispatch a reminder job for every eligible cart; returns how many were dispatched."""
    settings = get_settings()
    db.session.commit()
    if not settings.enabled:
        return 0
    cutoff = (now or utcnow()) - timedelta(hours=settings.delay_hours)
    dispatched = 0
    after_id = 0
    while True:
        rows = db.session.execute(
            select(Cart.id, Cart.updated_at, Cart.items)
            .where(_eligible(cutoff), Cart.id > after_id)
            .order_by(Cart.id)
            .limit(SCAN_CHUNK)
        ).all()
        if not rows:
            break
        for cart_id, updated_at, items in rows:
            if items:
                stamp = updated_at.isoformat()
                dispatch(REMINDER_JOB, {"cart_id": cart_id, "updated_at": stamp}, unique=f"{cart_id}:{stamp}")
                dispatched += 1
        after_id = rows[-1][0]
        db.session.commit()
    db.session.rollback()  # the last, empty read opened a transaction: on SQLite it holds the write lock
    return dispatched


# -- the reminder ------------------------------------------------------------


@dataclass
class Reminder:
    """A cart claimed for its reminder, and what to send: ``text`` inside the window, else the template."""

    cart_id: int
    phone: str
    text: str | None
    template_name: str | None
    template_language: str
    parameters: list[str]
    previous_reminder_at: datetime | None


def claim_reminder(cart_id: int, updated_at: str, *, now: datetime | None = None) -> Reminder | None:
    """Re-check the cart and stamp it reminded and abandoned; None if it should not be reminded.

    Commits. The stamp comes before the send so that a replay finds the cart
    already reminded; :func:`unclaim_reminder` takes it back when the send
    certainly did not happen and will be retried.
    """
    now = now or utcnow()
    settings = get_settings()
    cart = db.session.get(Cart, cart_id)
    if (
        cart is None
        or not settings.enabled
        or cart.updated_at.isoformat() != updated_at
        or not cart.items
        or not db.session.scalar(select(func.count()).select_from(Cart).where(
            Cart.id == cart_id, _eligible(now - timedelta(hours=settings.delay_hours))))
    ):
        db.session.rollback()
        return None
    try:
        phone = contacts.normalize_phone(cart.customer_phone)
    except contacts.InvalidPhone:
        db.session.rollback()
        return None
    contact = contacts.find(phone)
    if contact is not None and contact.opted_out_at is not None:
        # The scan's opt-out filter compares the cart's phone as stored; this one compares it normalised.
        db.session.rollback()
        return None
    previous = cart.reminder_sent_at
    # updated_at is set explicitly so the stamp is not mistaken for cart activity.
    claimed = db.session.execute(
        update(Cart)
        .where(Cart.id == cart_id, Cart.updated_at == cart.updated_at, Cart.status == CartStatus.ACTIVE.value,
               or_(Cart.reminder_sent_at.is_(None), Cart.reminder_sent_at < Cart.updated_at))
        .values(reminder_sent_at=now, status=CartStatus.ABANDONED.value, updated_at=cart.updated_at)
        .execution_options(synchronize_session=False)
    ).rowcount
    if claimed != 1:
        db.session.rollback()
        return None
    values = {
        "name": (contact.name if contact and contact.name else cart.customer_name) or "",
        "items": describe_items(cart.items),
        "total": f"{cart.total} {cart.currency}",
        "cart_link": settings.cart_url.format(cart_id=cart.id) if settings.cart_url else "",
    }
    inside = contacts.in_session_window(contact, now=now)
    reminder = Reminder(
        cart_id=cart.id,
        phone=phone,
        text=settings.message.format(**values) if inside else None,
        template_name=None if inside else settings.template_name,
        template_language=settings.template_language,
        parameters=[values[name] for name in PLACEHOLDERS],
        previous_reminder_at=previous,
    )
    db.session.commit()
    return reminder


def unclaim_reminder(reminder: Reminder) -> None:
    """Undo :func:`claim_reminder` after a send that certainly did not reach Meta."""
    db.session.execute(
        update(Cart)
        .where(Cart.id == reminder.cart_id, Cart.status == CartStatus.ABANDONED.value)
        .values(reminder_sent_at=reminder.previous_reminder_at, status=CartStatus.ACTIVE.value,
                updated_at=Cart.updated_at)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()


def describe_items(items: list[dict[str, Any]]) -> str:
    """``2 × T-shirt, 1 × Mug`` from a cart's items."""
    parts = []
    for item in items or []:
        name = item.get("name") or item.get("product_name") or item.get("sku") or item.get("product_id") or "item"
        quantity = item.get("quantity") or item.get("qty") or 1
        parts.append(f"{quantity} × {name}")
    return ", ".join(parts)


# -- recovery ----------------------------------------------------------------


def mark_recovered(phone: str, order_id: str | int, total: Decimal | str | float) -> int:
    """Mark the reminded carts of the customer at ``phone`` recovered by ``order_id`` worth ``total``.

    Called when a new order is recorded (the order webhook), in its
    transaction: the caller commits. Only carts that were reminded and not
    already recovered count; the order's revenue goes on the most recently
    reminded one. Returns how many carts were marked.
    """
    try:
        phone = contacts.normalize_phone(phone)
        revenue = Decimal(str(total)).quantize(Decimal("0.01"))
    except (contacts.InvalidPhone, InvalidOperation):
        return 0
    cart = db.session.scalars(
        select(Cart)
        .where(Cart.customer_phone == phone, Cart.reminder_sent_at.is_not(None), Cart.recovered_at.is_(None),
               Cart.status.in_((CartStatus.ABANDONED.value, CartStatus.ACTIVE.value)))
        .order_by(Cart.reminder_sent_at.desc())
        .limit(1)
    ).first()
    if cart is None:
        return 0
    marked = db.session.execute(
        update(Cart)
        .where(Cart.id == cart.id, Cart.recovered_at.is_(None))
        .values(recovered_at=utcnow(), recovered_order_id=str(order_id), recovered_revenue=revenue,
                status=CartStatus.COMPLETED.value, updated_at=Cart.updated_at)
        .execution_options(synchronize_session=False)
    ).rowcount
    return marked


def recovery_stats() -> dict[str, Any]:
    """How many carts were reminded and recovered, and the recovered revenue."""
    reminded = db.session.scalar(select(func.count()).select_from(Cart).where(Cart.reminder_sent_at.is_not(None)))
    recovered, revenue = db.session.execute(
        select(func.count(), func.coalesce(func.sum(Cart.recovered_revenue), 0)).where(Cart.recovered_at.is_not(None))
    ).one()
    return {"reminded": reminded, "recovered": recovered, "recovered_revenue": str(revenue)}
