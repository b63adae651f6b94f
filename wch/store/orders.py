"""Tell customers on WhatsApp when their order changes status: once per (order, status).

The message's row (:mod:`wch.messaging.messages`, subject
``order:<store id>:<status>``) is committed as ``sending`` before Meta is
called. A retried job, a job redelivered after its worker died, or a second
job from a repeated webhook finds that row and sends nothing; only an error
answer from Meta (the message certainly was not sent) lets a later attempt
send it. Order messages go first in the number's send budget.

What the store sends is not trusted: the name and order number are
sanitised (:mod:`wch.messaging.sanitise`), only the statuses in
``WCH_ORDER_NOTIFY_STATUSES`` (paid and fulfilment ones by default) are told,
and no customer gets more than ``WCH_ORDER_MESSAGES_PER_DAY`` a day.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select, update

from wch.carts.recovery import mark_recovered
from wch.config import Settings
from wch.db import db, read_only, transaction, utcnow
from wch.jobs import JobType, dispatch
from wch.messaging import contacts, messages
from wch.messaging.budget import Priority, SendBudget
from wch.messaging.sanitise import safe_name, safe_reference
from wch.models import Job, MessageState, Order
from wch.store.woocommerce import OrderSnapshot
from wch.whatsapp import MissingSetting, NeedsTemplate, WhatsAppClient, WhatsAppError

logger = logging.getLogger(__name__)

NOTIFY_ORDER = JobType("notify_order", queue="sync", subject="order:{store_id}")


class MessageMayHaveBeenSent(Exception):
    """Meta's answer was lost after the message left; it is not sent again, to avoid a duplicate."""


def record_order(snapshot: OrderSnapshot, *, recovery_window_hours: int | None) -> tuple[Order, bool]:
    """Store ``snapshot``; return the order and whether it is newer than the one kept (else nothing is written).

    A new order marks its customer's cart reminded in the last ``recovery_window_hours``
    recovered (:func:`wch.carts.recovery.mark_recovered`); ``None`` recovers nothing (an
    import of past orders). The caller commits.
    """
    order = db.session.scalars(select(Order).where(Order.store_id == snapshot.store_id)).first()
    first_seen = order is None
    if first_seen:
        order = Order(store_id=snapshot.store_id)
        db.session.add(order)
    elif (snapshot.modified_at is not None and order.store_modified_at is not None
          and snapshot.modified_at < order.store_modified_at):
        return order, False
    order.number = snapshot.number
    order.status = snapshot.status
    order.customer_phone = customer_phone(snapshot.phone, snapshot.country)
    order.customer_name = snapshot.customer_name
    order.total = snapshot.total
    order.currency = snapshot.currency
    order.store_modified_at = snapshot.modified_at or order.store_modified_at
    order.updated_at = utcnow()
    if first_seen and recovery_window_hours is not None and order.customer_phone:
        # A new order from a reminded customer recovers their cart; later deliveries of it count nothing.
        mark_recovered(order.customer_phone, snapshot.store_id, snapshot.total, window_hours=recovery_window_hours)
    return order, True


def request_notification(order: Order, settings: Settings) -> Job | None:
    """Dispatch the order's notification job if its status is one customers hear about and is news to them."""
    if order.status not in settings.order_notify_statuses or order.status == order.notified_status:
        return None
    return notify_now(order.store_id)


def notify_now(store_id: int) -> Job:
    """Dispatch the order's notification job (one pending per order); it sends only what is news to the customer."""
    return dispatch(NOTIFY_ORDER, {"store_id": store_id}, unique=str(store_id))


def customer_phone(raw: str | None, country: str | None) -> str | None:
    """The billing phone in E.164 form; one without a ``+`` or ``00`` prefix is read in the billing country first."""
    if not raw:
        return None
    international = raw.strip().startswith(("+", "00"))
    regions = (None,) if international or not country else (country, None)
    for region in regions:
        try:
            return contacts.normalize_phone(raw, default_region=region)
        except contacts.InvalidPhone:
            continue
    return None


def message_subject(store_id: int, status: str) -> str:
    """What the message about one status of one order is recorded as (and settled by, as callback data)."""
    return f"order:{store_id}:{status}"


def notify(client_factory, settings: Settings, store_id: int) -> dict[str, Any]:
    """Send the customer one message about the order's current status, unless it has been sent already.

    ``client_factory`` builds the WhatsApp client when there is something to
    send. Runs its own transactions: the claim is committed before Meta is called.
    """
    with read_only():
        order = db.session.scalars(select(Order).where(Order.store_id == store_id)).first()
        if order is None:
            return {"store_id": store_id, "skipped": "unknown order"}
        status, phone = order.status, order.customer_phone
        result: dict[str, Any] = {"store_id": store_id, "status": status}
        if status not in settings.order_notify_statuses:
            return result | {"skipped": "status not notified"}
        subject = message_subject(store_id, status)
        if order.notified_status == status and messages.state_of(subject) != MessageState.FAILED.value:
            return result | {"skipped": "customer already told"}
        if not phone:
            return result | {"skipped": "no valid phone number"}
        opted_out, in_window = _recipient(phone)
        if opted_out:
            return result | {"skipped": "customer opted out"}
        name, number = safe_name(order.customer_name), safe_reference(order.number, fallback=str(store_id))
        text = f"Hi {name}, your order #{number} is now {_label(status)}."
        parameters = [name, number, _label(status)]
        order_id = order.id
    # Before the claim: a client that cannot be built (no token) must not leave the message claimed, unsent.
    client = client_factory()
    form = "text" if in_window else "template"
    with transaction():
        if messages.sent_today(phone, "order") >= settings.order_messages_per_day:
            return result | {"skipped": f"this customer had {settings.order_messages_per_day} order messages today"}
        message_id = messages.claim("order", subject, phone, form=form, resend=messages.Resend(
            NOTIFY_ORDER.name, {"store_id": store_id}, unique=str(store_id)))
    if message_id is None:
        return result | {"skipped": "message already sent or being sent"}

    budget = SendBudget(sender=client.sender, rate=settings.send_rate_limit)
    try:
        try:
            if form == "text":
                wamid = budget.send(Priority.TRANSACTIONAL,
                                    lambda: client.send_text(phone, text, callback_data=subject))
            else:
                wamid = _send_template(budget, client, settings, phone, parameters, subject)
        except NeedsTemplate:
            # The 24-hour window closed since the customer's last message; Meta sent nothing.
            form = "template"
            with transaction():
                messages.set_form(message_id, form)
            wamid = _send_template(budget, client, settings, phone, parameters, subject)
    except WhatsAppError as error:
        with transaction():
            messages.mark_not_sent(message_id, error)
        if error.sent_unknown:
            raise MessageMayHaveBeenSent(f"{error}; not resending order {store_id}'s {status!r} message") from None
        raise
    with transaction():
        messages.mark_sent(message_id, wamid)
        db.session.execute(update(Order).where(Order.id == order_id)
                           .values(notified_status=status, notified_at=utcnow()))
    return result | {"sent": form, "wamid": wamid}


def _send_template(budget: SendBudget, client: WhatsAppClient, settings: Settings, phone: str,
                   parameters: list[str], subject: str) -> str:
    if not settings.order_template:
        raise MissingSetting("WCH_ORDER_TEMPLATE is not set: outside the 24-hour window only a template can be sent")
    return budget.send(Priority.TRANSACTIONAL, lambda: client.send_template(
        phone, settings.order_template, settings.order_template_language, parameters, callback_data=subject))


def _recipient(phone: str) -> tuple[bool, bool]:
    """(opted out, inside the 24-hour window) from the contacts table."""
    contact = contacts.find(phone)
    if contact is None:
        return False, False
    return contact.opted_out_at is not None, contacts.in_session_window(contact)


def _label(status: str) -> str:
    return status.replace("-", " ")
