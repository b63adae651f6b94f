"""Tell customers on WhatsApp when their order changes status: once per (order, status).

The notification row is committed as ``sending`` before Meta is called. A
retried job, a job redelivered after its worker died, or a second job from a
repeated webhook finds that row and sends nothing; only an error answer from
Meta (the message certainly was not sent) releases it for the next attempt.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from wch.carts.recovery import mark_recovered
from wch.config import Settings
from wch.db import db, read_only, transaction, utcnow
from wch.jobs import JobType, dispatch
from wch.messaging import contacts
from wch.models import Job, Order, OrderNotification
from wch.store.woocommerce import OrderSnapshot
from wch.whatsapp import MissingSetting, NeedsTemplate, WhatsAppClient, WhatsAppError

logger = logging.getLogger(__name__)

NOTIFY_ORDER = JobType("notify_order", queue="sync")

SENDING, SENT, FAILED, UNCERTAIN = "sending", "sent", "failed", "uncertain"


class MessageMayHaveBeenSent(Exception):
    """Meta's answer was lost after the message left; it is not sent again, to avoid a duplicate."""


def record_order(snapshot: OrderSnapshot, *, recover: bool = True) -> tuple[Order, bool]:
    """Store ``snapshot``; return the order and whether it is newer than the one kept (else nothing is written).

    A new order marks its customer's reminded cart recovered (:func:`wch.carts.recovery.mark_recovered`)
    unless ``recover`` is false (an import of past orders). The caller commits.
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
    if first_seen and recover and order.customer_phone:
        # A new order from a reminded customer recovers their cart; later deliveries of it count nothing.
        mark_recovered(order.customer_phone, snapshot.store_id, snapshot.total)
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
        if order.notified_status == status:
            return result | {"skipped": "customer already told"}
        if not phone:
            return result | {"skipped": "no valid phone number"}
        opted_out, in_window = _recipient(phone)
        if opted_out:
            return result | {"skipped": "customer opted out"}
        text = _text(order)
        parameters = [_first_name(order.customer_name), order.number, _label(status)]
        order_id = order.id
    # Before the claim: a client that cannot be built (no token) must not leave the message claimed, unsent.
    client = client_factory()
    notification = _claim(order_id, status)
    if notification is None:
        return result | {"skipped": "message already sent or being sent"}

    kind = "text" if in_window else "template"
    try:
        try:
            if kind == "text":
                wamid = client.send_text(phone, text, callback_data=f"order:{store_id}:{status}")
            else:
                wamid = _send_template(client, settings, phone, parameters, store_id, status)
        except NeedsTemplate:
            # The 24-hour window closed since the customer's last message; Meta sent nothing.
            kind = "template"
            wamid = _send_template(client, settings, phone, parameters, store_id, status)
    except WhatsAppError as error:
        _release(notification, error)
        if error.sent_unknown:
            raise MessageMayHaveBeenSent(f"{error}; not resending order {store_id}'s {status!r} message") from None
        raise
    now = utcnow()
    with transaction():
        db.session.execute(update(OrderNotification).where(OrderNotification.id == notification)
                           .values(state=SENT, kind=kind, wamid=wamid, sent_at=now, error=None))
        db.session.execute(update(Order).where(Order.id == order_id).values(notified_status=status, notified_at=now))
    return result | {"sent": kind, "wamid": wamid}


def _send_template(client: WhatsAppClient, settings: Settings, phone: str, parameters: list[str],
                   store_id: int, status: str) -> str:
    if not settings.order_template:
        raise MissingSetting("WCH_ORDER_TEMPLATE is not set: outside the 24-hour window only a template can be sent")
    return client.send_template(phone, settings.order_template, settings.order_template_language, parameters,
                                callback_data=f"order:{store_id}:{status}")


def _claim(order_id: int, status: str) -> int | None:
    """Take the (order, status) message for this attempt; ``None`` if it was sent or is being sent."""
    try:
        with transaction():
            row = OrderNotification(order_id=order_id, status=status, state=SENDING, created_at=utcnow())
            db.session.add(row)
            db.session.flush()
            # Read before commit: reading it after would open a transaction (a SQLite lock) for the send.
            row_id = row.id
        return row_id
    except IntegrityError:
        pass
    with transaction():
        return db.session.execute(
            update(OrderNotification)
            .where(OrderNotification.order_id == order_id, OrderNotification.status == status,
                   OrderNotification.state == FAILED)
            .values(state=SENDING, error=None)
            .returning(OrderNotification.id)
        ).scalar()


def _release(notification_id: int, error: WhatsAppError) -> None:
    """Record why the send failed; a certain failure lets a later attempt send, an uncertain one does not."""
    state = UNCERTAIN if error.sent_unknown else FAILED
    with transaction():
        db.session.execute(update(OrderNotification).where(OrderNotification.id == notification_id)
                           .values(state=state, error=str(error)[:2000]))


def _recipient(phone: str) -> tuple[bool, bool]:
    """(opted out, inside the 24-hour window) from the contacts table."""
    contact = contacts.find(phone)
    if contact is None:
        return False, False
    return contact.opted_out_at is not None, contacts.in_session_window(contact)


def _label(status: str) -> str:
    return status.replace("-", " ")


def _first_name(name: str | None) -> str:
    return (name or "").split(" ")[0] or "there"


def _text(order: Order) -> str:
    return f"Hi {_first_name(order.customer_name)}, your order #{order.number} is now {_label(order.status)}."
