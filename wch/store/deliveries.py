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
from wch.db import db, transaction, utcnow
from wch.models import WebhookDelivery
from wch.store import catalog, orders
from wch.store.woocommerce import PRODUCT_DELETED, PRODUCT_TOPICS

SOURCE = "woocommerce"
FORGET_BATCH = 5000


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
                if delivery_id and _seen(delivery_id):
                    return Recorded("duplicate")
                return Recorded("recorded", _record(topic, store_id, snapshot, delivery_id, settings))
        except IntegrityError:
            if attempt:
                raise
    raise AssertionError("unreachable")


def _seen(delivery_id: str) -> bool:
    query = select(WebhookDelivery.id).where(WebhookDelivery.source == SOURCE,
                                             WebhookDelivery.delivery_id == delivery_id)
    return db.session.execute(query).first() is not None


def _record(topic: str, store_id: int, snapshot: Any, delivery_id: str | None, settings: Settings) -> str | None:
    delivery = None
    if delivery_id:
        delivery = WebhookDelivery(source=SOURCE, delivery_id=delivery_id, topic=topic, resource_id=store_id,
                                   received_at=utcnow())
        db.session.add(delivery)
    if topic == PRODUCT_DELETED:
        product = catalog.record_product_deleted(store_id)
        db.session.flush()
        job = catalog.request_sync(product, "catalog")
    elif topic in PRODUCT_TOPICS:
        product, change = catalog.record_product(snapshot)
        db.session.flush()
        job = catalog.request_sync(product, change)
    else:
        order, newer = orders.record_order(snapshot)
        db.session.flush()
        job = orders.request_notification(order, settings) if newer else None
    if delivery is not None and job is not None:
        delivery.job_id = job.id
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
