"""Abandoned-cart reminders: the scan for idle carts, and the reminder itself, sent at most once per idle spell.

The scan (periodic, and ``wch carts remind``) dispatches one ``send_cart_reminder``
job per eligible cart, unique per cart and its ``updated_at``. The job claims
the reminder before sending: its message row (:mod:`wch.messaging.messages`,
subject ``cart:<id>:<idle since>``) is committed ``sending`` and the cart is
stamped ``reminder_sent_at``, so a replayed or duplicated job finds them and
sends nothing, and Meta's status webhook settles a reminder whose answer was
lost. Reminders go after order updates and before campaigns in the number's
send budget.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import dramatiq
from sqlalchemy import and_, or_, select, update

from wch.carts.cleanup import UNCONVERTED
from wch.carts.reminder_settings import PLACEHOLDERS, check_delay, get_settings
from wch.db import db, read_only, transaction, utcnow
from wch.jobs import JobType, dispatch, dispatch_many
from wch.messaging import contacts, messages
from wch.messaging.budget import Priority, SendBudget
from wch.messaging.placeholders import fill
from wch.messaging.sanitise import safe_name
from wch.models import Cart, CartStatus, Contact, Job, MessageState
from wch.whatsapp import RetryLater, WhatsAppClient, WhatsAppError

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


def _reminder_key(args: dict[str, Any]) -> str:
    return f"{args['cart_id']}:{args['updated_at']}"


def scan_later(trigger: str) -> Job:
    """Dispatch the scan; one pending at a time."""
    return dispatch(SCAN_ABANDONED_CARTS, {"trigger": trigger}, unique=True)


def scan(*, cart_expiry_hours: int, now: datetime | None = None) -> int:
    """Dispatch a reminder job for every eligible cart; returns how many were dispatched.

    Refuses (:class:`~wch.carts.reminder_settings.ReminderSettingsError`) a
    delay that is not shorter than ``cart_expiry_hours``: the cleanup would
    delete the carts before they are reminded. Runs its own transactions,
    one per chunk of :data:`SCAN_CHUNK` carts.
    """
    with read_only():
        settings = get_settings()
        enabled, delay_hours = settings.enabled, settings.delay_hours
    if not enabled:
        return 0
    check_delay(delay_hours, cart_expiry_hours=cart_expiry_hours)
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
            reminders = [{"cart_id": cart_id, "updated_at": updated_at.isoformat()}
                         for cart_id, updated_at, items in rows if items]
            # One statement for the chunk; a cart whose reminder is still pending keeps that one.
            dispatch_many(SEND_CART_REMINDER, reminders, unique=_reminder_key)
            dispatched += len(reminders)
        if not rows:
            return dispatched
        after_id = rows[-1][0]


@dataclass
class Reminder:
    """A cart claimed for its reminder, and what to send: ``text`` inside the window, else the template."""

    cart_id: int
    message_id: int
    subject: str
    phone: str
    text: str | None
    template_name: str | None
    template_language: str
    parameters: list[str]
    previous_reminder_at: datetime | None
    previous_status: str


def send_reminder(client_factory: Callable[[], WhatsAppClient], cart_id: int, updated_at: str, *,
                  send_rate: int) -> dict[str, Any]:
    """Re-check the cart, claim its reminder, and send it (text in the 24 h window, else the template).

    ``send_rate`` is the number's sends a second. Raises :class:`dramatiq.Retry`
    when Meta refused it for now (the cart's stamp is taken back); any other
    refusal propagates with the stamp kept. Runs its own transactions.
    """
    # Before the claim: a client that cannot be built (no token) must not stamp the cart reminded, unsent.
    client = client_factory()
    reminder = claim_reminder(cart_id, updated_at)
    if reminder is None:
        return {"sent": False, "reason": "not eligible (already reminded, changed, emptied or opted out)"}
    budget = SendBudget(sender=client.sender, rate=send_rate)
    try:
        if reminder.text is not None:
            wamid = budget.send(Priority.REMINDER, lambda: client.send_text(
                reminder.phone, reminder.text, callback_data=reminder.subject))
        else:
            wamid = budget.send(Priority.REMINDER, lambda: client.send_template(
                reminder.phone, reminder.template_name, reminder.template_language, reminder.parameters,
                callback_data=reminder.subject))
    except WhatsAppError as error:
        with transaction():
            messages.mark_not_sent(reminder.message_id, error)
        if error.sent_unknown:
            # No usable answer: Meta may have it. Keep the claim; never risk a second reminder.
            return {"sent": None, "reason": f"no usable answer from WhatsApp, it may have been sent: {error}"}
        if isinstance(error, RetryLater):
            unclaim_reminder(reminder)  # Meta refused it for now; the retry sends it
            delay = int(error.retry_after * 1000) if error.retry_after else None
            raise dramatiq.Retry(str(error), delay=delay) from None
        raise  # the cart stays stamped: the scan does not try an unreachable customer again
    with transaction():
        messages.mark_sent(reminder.message_id, wamid)
    return {"sent": True, "wamid": wamid, "as": "text" if reminder.text is not None else "template"}


def claim_reminder(cart_id: int, updated_at: str, *, now: datetime | None = None) -> Reminder | None:
    """Re-check the cart, claim its reminder's message and stamp the cart reminded and abandoned; None if it
    should not be reminded.

    Runs its own transaction. The claim comes before the send so that a
    replay finds it; :func:`unclaim_reminder` takes it back when the send
    certainly did not happen. A reminder that failed for certain (its
    message ``failed``) may be claimed again, to resend it.
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
        or cart.total <= 0
        or cart.status not in UNCONVERTED
        or cart.updated_at >= now - timedelta(hours=settings.delay_hours)
    ):
        return None
    subject = f"cart:{cart.id}:{updated_at}"
    reminded = cart.reminder_sent_at is not None and cart.reminder_sent_at >= cart.updated_at
    if reminded and messages.state_of(subject) != MessageState.FAILED.value:
        return None
    try:
        phone = contacts.normalize_phone(cart.customer_phone)
    except contacts.InvalidPhone:
        return None
    contact = contacts.find(phone)
    if contact is not None and contact.opted_out_at is not None:
        return None
    inside = contacts.in_session_window(contact, now=now)
    message_id = messages.claim("reminder", subject, phone, form="text" if inside else "template",
                                resend=messages.Resend(SEND_CART_REMINDER.name,
                                                       {"cart_id": cart.id, "updated_at": updated_at}))
    if message_id is None:
        return None
    previous, previous_status = cart.reminder_sent_at, cart.status
    # updated_at is set explicitly so the stamp is not mistaken for cart activity.
    db.session.execute(
        update(Cart)
        .where(Cart.id == cart_id)
        .values(reminder_sent_at=now, status=CartStatus.ABANDONED.value, updated_at=cart.updated_at)
        .execution_options(synchronize_session=False)
    )
    values = {
        "name": safe_name((contact.name if contact and contact.name else cart.customer_name), fallback=""),
        "items": describe_items(cart.items),
        "total": f"{cart.total} {cart.currency}",
        "cart_link": fill(settings.cart_url, {"cart_id": cart.id}) if settings.cart_url else "",
    }
    return Reminder(
        cart_id=cart.id,
        message_id=message_id,
        subject=subject,
        phone=phone,
        text=fill(settings.message, values) if inside else None,
        template_name=None if inside else settings.template_name,
        template_language=settings.template_language,
        parameters=[values[name] for name in PLACEHOLDERS],
        previous_reminder_at=previous,
        previous_status=previous_status,
    )


def unclaim_reminder(reminder: Reminder) -> None:
    """Undo :func:`claim_reminder` after a send that certainly did not reach Meta. Runs its own transaction."""
    with transaction():
        db.session.execute(
            update(Cart)
            .where(Cart.id == reminder.cart_id, Cart.status == CartStatus.ABANDONED.value)
            .values(reminder_sent_at=reminder.previous_reminder_at, status=reminder.previous_status,
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
