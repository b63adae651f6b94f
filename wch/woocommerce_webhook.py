"""``POST /webhooks/woocommerce``: the store's signed product and order webhooks.

The view only records and dispatches: it stores the snapshot and the delivery
id and dispatches the sync job in one transaction, which the outbox publishes
after commit (RabbitMQ being down still gets the store its 200, and the relay
publishes the job later).

=====================================================  ======================
the unsigned ``webhook_id=N`` ping (webhook creation)   200
secret (or, for products, currency) not configured     503
missing or wrong ``X-WC-Webhook-Signature``             401
a topic wch does not handle                             200, ignored
body not JSON, or no valid ``id``, or a bad field       400
a ``X-WC-Webhook-Delivery-ID`` seen before              200, nothing new
otherwise                                               200, recorded
=====================================================  ======================

Every answer but the last writes nothing except a log line. WooCommerce
disables a webhook after repeated failures, so only real faults answer 4xx.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Any

from flask import Blueprint, current_app, jsonify, request
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from wch import catalog, order_updates
from wch.db import db, utcnow
from wch.models import WebhookDelivery
from wch.woocommerce import (
    ORDER_TOPICS,
    PRODUCT_DELETED,
    PRODUCT_TOPICS,
    TOPICS,
    BadPayload,
    is_ping,
    parse_order,
    parse_product,
    resource_id,
    signature_valid,
)

logger = logging.getLogger(__name__)

bp = Blueprint("woocommerce_webhook", __name__)

SOURCE = "woocommerce"
MAX_BODY = 5 * 1024 * 1024  # a product with many variations is large; anything bigger is not WooCommerce
MAX_DELIVERY_ID = 100


@bp.post("/webhooks/woocommerce")
def receive():
    request.max_content_length = MAX_BODY
    body = request.get_data(cache=False)
    signature = request.headers.get("X-WC-Webhook-Signature")
    if not signature and is_ping(body):
        logger.info("WooCommerce webhook ping received.")
        return _answer(200, "ping")

    settings = current_app.extensions["wch"].settings
    if not settings.woocommerce_webhook_secret:
        logger.error("WooCommerce webhook refused: WOOCOMMERCE_WEBHOOK_SECRET is not set.")
        return _answer(503, "WOOCOMMERCE_WEBHOOK_SECRET is not set")
    if not signature_valid(settings.woocommerce_webhook_secret, body, signature):
        logger.warning("WooCommerce webhook refused: %s signature (from %s).",
                       "bad" if signature else "missing", request.remote_addr)
        return _answer(401, "invalid signature")

    topic = (request.headers.get("X-WC-Webhook-Topic") or "").strip().lower()
    if topic not in TOPICS:
        logger.info("WooCommerce webhook with topic %r ignored.", topic[:64])
        return _answer(200, "ignored")
    if topic in PRODUCT_TOPICS and not settings.store_currency:
        # WooCommerce product payloads do not name their currency.
        logger.error("WooCommerce %s webhook refused: WCH_STORE_CURRENCY is not set.", topic)
        return _answer(503, "WCH_STORE_CURRENCY is not set")
    try:
        payload = json.loads(body)
        store_id = resource_id(payload)
        delivery_id = _delivery_id()
        snapshot = _parse(topic, payload, settings)
    except (ValueError, RecursionError) as error:  # BadPayload and JSONDecodeError are ValueErrors
        reason = str(error) if isinstance(error, BadPayload) else "the body is not valid JSON"
        logger.warning("WooCommerce %s webhook refused: %s.", topic, reason)
        return _answer(400, reason)

    # Twice at most: the second time, a row a concurrent delivery created first is there to update.
    for attempt in range(2):
        if delivery_id and _seen(delivery_id):
            db.session.rollback()
            return _answer(200, "duplicate")
        try:
            job = _record(topic, store_id, snapshot, delivery_id, settings)
            db.session.commit()
        except IntegrityError:
            db.session.rollback()
            if attempt:
                raise
            continue
        return _answer(200, "recorded", job=job)
    raise AssertionError("unreachable")


def _parse(topic: str, payload: Any, settings) -> Any:
    if topic in PRODUCT_TOPICS:
        return parse_product(payload, currency=settings.store_currency)
    if topic in ORDER_TOPICS:
        return parse_order(payload, default_currency=settings.store_currency)
    return None


def _delivery_id() -> str | None:
    value = (request.headers.get("X-WC-Webhook-Delivery-ID") or "").strip()
    if len(value) > MAX_DELIVERY_ID:
        raise BadPayload(f"X-WC-Webhook-Delivery-ID is longer than {MAX_DELIVERY_ID} characters")
    return value or None


def _seen(delivery_id: str) -> bool:
    query = select(WebhookDelivery.id).where(WebhookDelivery.source == SOURCE,
                                             WebhookDelivery.delivery_id == delivery_id)
    return db.session.execute(query).first() is not None


def _record(topic: str, store_id: int, snapshot: Any, delivery_id: str | None, settings) -> str | None:
    if delivery_id:
        db.session.add(WebhookDelivery(source=SOURCE, delivery_id=delivery_id, topic=topic,
                                       resource_id=store_id, received_at=utcnow()))
    if topic == PRODUCT_DELETED:
        product = catalog.record_product_deleted(store_id)
        db.session.flush()
        job = catalog.request_sync(product, "catalog")
    elif topic in PRODUCT_TOPICS:
        product, change = catalog.record_product(snapshot)
        db.session.flush()
        job = catalog.request_sync(product, change)
    else:
        order, newer = order_updates.record_order(snapshot)
        db.session.flush()
        job = order_updates.request_notification(order, settings) if newer else None
    return job.id if job is not None else None


def forget_old_deliveries(*, days: int, batch_size: int = 5000) -> int:
    """Delete delivery ids older than ``days`` (WooCommerce stops redelivering long before), in short batches."""
    cutoff = utcnow() - timedelta(days=days)
    old = select(WebhookDelivery.id).where(WebhookDelivery.received_at < cutoff).limit(batch_size).scalar_subquery()
    forgotten = 0
    while count := db.session.execute(delete(WebhookDelivery).where(WebhookDelivery.id.in_(old))).rowcount:
        db.session.commit()
        forgotten += count
    db.session.commit()
    return forgotten


def _answer(status: int, outcome: str, **extra: Any):
    return jsonify({"outcome": outcome, **extra}), status
