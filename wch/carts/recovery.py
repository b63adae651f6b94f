"""A reminded cart is recovered when its customer then orders: counted with the order's revenue."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal, InvalidOperation

from sqlalchemy import select, update

from wch.db import db, utcnow
from wch.messaging import contacts
from wch.models import Cart, CartStatus


def mark_recovered(phone: str, order_id: str | int, total: Decimal | str | float, *, window_hours: int) -> int:
    """Mark the reminded carts of the customer at ``phone`` recovered by ``order_id`` worth ``total``.

    Called when a new order is recorded (the order webhook), in its
    transaction: the caller commits. Only carts reminded in the last
    ``window_hours`` and not already recovered count (the cleanup keeps them
    that long); the order's revenue goes on the most recently reminded one.
    Returns how many carts were marked.
    """
    try:
        phone = contacts.normalize_phone(phone)
        revenue = Decimal(str(total)).quantize(Decimal("0.01"))
    except (contacts.InvalidPhone, InvalidOperation):
        return 0
    cart = db.session.scalars(
        select(Cart)
        .where(Cart.customer_phone == phone, Cart.reminder_sent_at >= utcnow() - timedelta(hours=window_hours),
               Cart.recovered_at.is_(None),
               Cart.status.in_((CartStatus.ABANDONED.value, CartStatus.ACTIVE.value)))
        .order_by(Cart.reminder_sent_at.desc())
        .limit(1)
    ).first()
    if cart is None:
        return 0
    return db.session.execute(
        update(Cart)
        .where(Cart.id == cart.id, Cart.recovered_at.is_(None))
        .values(recovered_at=utcnow(), recovered_order_id=str(order_id), recovered_revenue=revenue,
                status=CartStatus.COMPLETED.value, updated_at=Cart.updated_at)
        .execution_options(synchronize_session=False)
    ).rowcount
