"""Abandoned-cart reminders: the scan for idle carts, and the reminder itself, sent at most once per idle spell.

The scan (periodic, and ``wch carts remind``) dispatches one ``send_cart_reminder``
job per eligible cart, unique per cart and its ``updated_at``. The job claims
the cart by stamping ``reminder_sent_at`` with a conditional ``UPDATE`` before
sending, so a replayed or duplicated job finds it stamped and sends nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import dramatiq
from sqlalchemy import and_, func, or_, select, update

from wch.carts.reminder_settings import PLACEHOLDERS, get_settings
from wch.db import db, read_only, transaction, utcnow
from wch.jobs import JobType, dispatch
from wch.messaging import contacts
from wch.models import Cart, CartStatus, Contact, Job
from wch.whatsapp import RetryLater, WhatsAppClient

SCAN_ABANDONED_CARTS = JobType("scan_abandoned_carts", queue="carts")
SEND_CART_REMINDER = JobType("send_cart_reminder", queue="carts", subject="cart:{cart_id}")
SCAN_CHUNK = 500


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


def scan_later(trigger: str) -> Job:
    """Dispatch the scan; one pending at a time."""
    return dispatch(SCAN_ABANDONED_CARTS, {"trigger": trigger}, unique=True)


def scan(*, now: datetime | None = None) -> int:
    """Dispatch a reminder job for every eligible cart; returns how many were dispatched.

    Runs its own transactions, one per chunk of :data:`SCAN_CHUNK` carts.
    """
    with read_only():
        settings = get_settings()
        enabled, delay_hours = settings.enabled, settings.delay_hours
    if not enabled:
        return 0
    cutoff = (now or utcnow()) - timedelta(hours=delay_hours)
    dispatched = 0
    after_id = 0
    while True:
        with transaction():
            rows = db.session.execute(
                select(Cart.id, Cart.updated_at, Cart.items)
                .where(_eligible(cutoff), Cart.id > after_id)
                .order_by(Cart.id)
                .limit(SCAN_CHUNK)
            ).all()
            for cart_id, updated_at, items in rows:
                if items:
                    stamp = updated_at.isoformat()
                    dispatch(SEND_CART_REMINDER, {"cart_id": cart_id, "updated_at": stamp},
                             unique=f"{cart_id}:{stamp}")
                    dispatched += 1
        if not rows:
            return dispatched
        after_id = rows[-1][0]


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


def send_reminder(client_factory: Callable[[], WhatsAppClient], cart_id: int, updated_at: str) -> dict[str, Any]:
    """Re-check the cart, stamp it reminded, and send the reminder (text in the 24 h window, else the template).

    Raises :class:`dramatiq.Retry` when Meta refused it for now (the stamp is
    taken back); any other refusal propagates with the stamp kept. Runs its own transactions.
    """
    # Before the claim: a client that cannot be built (no token) must not stamp the cart reminded, unsent.
    client = client_factory()
    reminder = claim_reminder(cart_id, updated_at)
    if reminder is None:
        return {"sent": False, "reason": "not eligible (already reminded, changed, emptied or opted out)"}
    try:
        if reminder.text is not None:
            wamid = client.send_text(reminder.phone, reminder.text)
        else:
            wamid = client.send_template(reminder.phone, reminder.template_name, reminder.template_language,
                                         reminder.parameters)
    except RetryLater as error:
        if error.sent_unknown:
            # No answer: Meta may have it. Keep the stamp; never risk a second reminder.
            return {"sent": None, "reason": f"no answer from WhatsApp, it may have been sent: {error}"}
        unclaim_reminder(reminder)  # Meta refused it for now; the retry sends it
        delay = int(error.retry_after * 1000) if error.retry_after else None
        raise dramatiq.Retry(str(error), delay=delay) from None
    return {"sent": True, "wamid": wamid, "as": "text" if reminder.text is not None else "template"}


def claim_reminder(cart_id: int, updated_at: str, *, now: datetime | None = None) -> Reminder | None:
    """Re-check the cart and stamp it reminded and abandoned; None if it should not be reminded.

    Runs its own transaction. The stamp comes before the send so that a replay
    finds the cart already reminded; :func:`unclaim_reminder` takes it back
    when the send certainly did not happen and will be retried.
    """
    now = now or utcnow()
    with transaction():
        return _claim(cart_id, updated_at, now)


def _claim(cart_id: int, updated_at: str, now: datetime) -> Reminder | None:
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
        return None
    try:
        phone = contacts.normalize_phone(cart.customer_phone)
    except contacts.InvalidPhone:
        return None
    contact = contacts.find(phone)
    if contact is not None and contact.opted_out_at is not None:
        # The scan's opt-out filter compares the cart's phone as stored; this one compares it normalised.
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
        return None
    values = {
        "name": (contact.name if contact and contact.name else cart.customer_name) or "",
        "items": describe_items(cart.items),
        "total": f"{cart.total} {cart.currency}",
        "cart_link": settings.cart_url.format(cart_id=cart.id) if settings.cart_url else "",
    }
    inside = contacts.in_session_window(contact, now=now)
    return Reminder(
        cart_id=cart.id,
        phone=phone,
        text=settings.message.format(**values) if inside else None,
        template_name=None if inside else settings.template_name,
        template_language=settings.template_language,
        parameters=[values[name] for name in PLACEHOLDERS],
        previous_reminder_at=previous,
    )


def unclaim_reminder(reminder: Reminder) -> None:
    """Undo :func:`claim_reminder` after a send that certainly did not reach Meta. Runs its own transaction."""
    with transaction():
        db.session.execute(
            update(Cart)
            .where(Cart.id == reminder.cart_id, Cart.status == CartStatus.ABANDONED.value)
            .values(reminder_sent_at=reminder.previous_reminder_at, status=CartStatus.ACTIVE.value,
                    updated_at=Cart.updated_at)
            .execution_options(synchronize_session=False)
        )


def describe_items(items: list[dict[str, Any]]) -> str:
    """``2 × T-shirt, 1 × Mug`` from a cart's items."""
    parts = []
    for item in items or []:
        name = item.get("name") or item.get("product_name") or item.get("sku") or item.get("product_id") or "item"
        quantity = item.get("quantity") or item.get("qty") or 1
        parts.append(f"{quantity} × {name}")
    return ", ".join(parts)
