"""``POST /webhooks/woocommerce``: the store's signed product and order webhooks.

The view checks and parses; :func:`wch.store.deliveries.record_delivery`
stores the snapshot and the delivery id and dispatches the sync job in one
transaction, which the outbox publishes after commit (RabbitMQ being down
still gets the store its 200, and the relay publishes the job later).

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
from typing import Any

from flask import Blueprint, jsonify, request

from wch import runtime
from wch.config import Settings
from wch.store import signature
from wch.store.deliveries import record_delivery
from wch.store.woocommerce import (
    ORDER_TOPICS,
    PRODUCT_DELETED,
    PRODUCT_TOPICS,
    TOPICS,
    BadPayload,
    deleted_at,
    is_ping,
    parse_order,
    parse_product,
    resource_id,
)

logger = logging.getLogger(__name__)

bp = Blueprint("woocommerce_webhook", __name__)

MAX_BODY = 5 * 1024 * 1024  # a product with many variations is large; anything bigger is not WooCommerce
MAX_DELIVERY_ID = 100


@bp.post("/webhooks/woocommerce")
def receive():
    request.max_content_length = MAX_BODY
    body = request.get_data(cache=False)
    header = request.headers.get(signature.HEADER)
    if not header and is_ping(body):
        logger.info("WooCommerce webhook ping received.")
        return _answer(200, "ping")

    settings = runtime.settings()
    if not settings.woocommerce_webhook_secret:
        logger.error("WooCommerce webhook refused: WOOCOMMERCE_WEBHOOK_SECRET is not set.")
        return _answer(503, "WOOCOMMERCE_WEBHOOK_SECRET is not set")
    if not signature.valid_signature(body, header, settings.woocommerce_webhook_secret):
        logger.warning("WooCommerce webhook refused: %s signature (from %s).",
                       "bad" if header else "missing", request.remote_addr)
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

    recorded = record_delivery(topic, store_id, snapshot, delivery_id, settings=settings)
    if recorded.outcome == "duplicate":
        return _answer(200, "duplicate")
    return _answer(200, "recorded", job=recorded.job_id)


def _parse(topic: str, payload: Any, settings: Settings) -> Any:
    if topic in PRODUCT_TOPICS:
        return parse_product(payload, currency=settings.store_currency)
    if topic in ORDER_TOPICS:
        return parse_order(payload, default_currency=settings.store_currency)
    if topic == PRODUCT_DELETED:
        return deleted_at(payload)
    return None


def _delivery_id() -> str | None:
    value = (request.headers.get("X-WC-Webhook-Delivery-ID") or "").strip()
    if len(value) > MAX_DELIVERY_ID:
        raise BadPayload(f"X-WC-Webhook-Delivery-ID is longer than {MAX_DELIVERY_ID} characters")
    return value or None


def _answer(status: int, outcome: str, **extra: Any):
    return jsonify({"outcome": outcome, **extra}), status
