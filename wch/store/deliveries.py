"""The store's webhook deliveries: each recorded once, as a snapshot and the sync job it calls for.

A delivery's id is remembered for ``WCH_WEBHOOK_DEDUPE_DAYS``, so a delivery
WooCommerce repeats (it does when our answer is slow) changes nothing. The
snapshot, the delivery id and the dispatched job are one transaction, which
the outbox publishes after commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from wch.config import Settings
from wch.db import db, insert_unless_present, transaction, utcnow
from wch.models import WebhookDelivery
from wch.store import catalog, orders
from wch.store.woocommerce import PRODUCT_DELETED, PRODUCT_RESTORED, PRODUCT_TOPICS

SOURCE = "woocommerce"
FORGET_BATCH = 5000
DELIVERIES = WebhookDelivery.__table__


@dataclass(frozen=True)
class Recorded:
    """What became of a delivery: ``duplicate`` (seen before) or ``recorded``, with the job it dispatched."""

    outcome: str
    job_id: str | None = None


def record_delivery(topic: str, store_id: int, snapshot: Any, delivery_id: str | None, *,
                    settings: Settings) -> Recorded:
    """Record a parsed delivery once: the snapshot, its delivery id, and the sync or notification it calls for.

    Runs its own transaction (two at most: a concurrent delivery of the same
    product may create its row first, and the second try updates it).
    """
    for attempt in range(2):
        try:
            with transaction():
                delivery = _remember(delivery_id, topic, store_id) if delivery_id else None
                if delivery_id and delivery is None:
                    return Recorded("duplicate")
                job_id = _record(topic, store_id, snapshot, settings)
                if delivery is not None and job_id is not None:
                    # The deliveries screen links each delivery to the job it dispatched.
                    db.session.connection().execute(
                        DELIVERIES.update().where(DELIVERIES.c.id == delivery).values(job_id=job_id))
                return Recorded("recorded", job_id)
        except IntegrityError:
            if attempt:
                raise
    raise AssertionError("unreachable")


def _remember(delivery_id: str, topic: str, store_id: int) -> int | None:
    """Remember the delivery id; returns its row, or None if it was remembered already (one statement either way).

    A concurrent delivery with the same id waits for this transaction, then finds it.
    """
    connection = db.session.connection()
    statement = insert_unless_present(DELIVERIES, dialect=connection.dialect.name,
                                      index_elements=[DELIVERIES.c.source, DELIVERIES.c.delivery_id])
    row = dict(source=SOURCE, delivery_id=delivery_id, topic=topic, resource_id=store_id, received_at=utcnow())
    return connection.execute(statement.returning(DELIVERIES.c.id), row).scalar()


def _record(topic: str, store_id: int, snapshot: Any, settings: Settings) -> str | None:
    if topic == PRODUCT_DELETED:
        product = catalog.record_product_deleted(store_id, modified_at=snapshot)
        db.session.flush()
        job = catalog.request_sync(product, "catalog")
    elif topic in PRODUCT_TOPICS:
        product, change = catalog.record_product(snapshot, restored=topic == PRODUCT_RESTORED)
        db.session.flush()
        job = catalog.request_sync(product, change)
    else:
        order, newer = orders.record_order(snapshot, recovery_window_hours=settings.recovery_window_hours)
        db.session.flush()
        job = orders.request_notification(order, settings) if newer else None
    return job.id if job is not None else None


def forget_old_deliveries(*, days: int) -> int:
    """Delete delivery ids older than ``days`` (WooCommerce stops redelivering long before).

    Runs its own transactions, one per batch of :data:`FORGET_BATCH`.
    """
    cutoff = utcnow() - timedelta(days=days)
    old = select(WebhookDelivery.id).where(WebhookDelivery.received_at < cutoff).limit(FORGET_BATCH).scalar_subquery()
    forgotten = 0
    while True:
        with transaction():
            count = db.session.execute(delete(WebhookDelivery).where(WebhookDelivery.id.in_(old))).rowcount
        if not count:
            return forgotten
        forgotten += count
