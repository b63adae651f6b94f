"""WooCommerce webhook deliveries for the tests and the benchmark: payloads shaped like the store's, signed."""

from __future__ import annotations

import itertools
import json
import uuid
from typing import Any

from wch.store.signature import HEADER, sign

SECRET = "wc-webhook-secret-for-tests"
CURRENCY = "EUR"
_delivery = itertools.count(1)


def store_env() -> dict[str, str]:
    """The store's settings: its webhook secret, its currency, the order update template."""
    return {
        "WOOCOMMERCE_WEBHOOK_SECRET": SECRET,
        "WCH_STORE_CURRENCY": CURRENCY,
        "WCH_ORDER_TEMPLATE": "order_update",
        "WCH_ORDER_TEMPLATE_LANGUAGE": "en_US",
    }


def sync_env(graph_url: str) -> dict[str, str]:
    """The settings (environment variables) that point wch's sync at the fake Graph API."""
    return store_env() | {
        "WHATSAPP_API_URL": graph_url,
        "WHATSAPP_ACCESS_TOKEN": "EAAtestaccesstoken0123456789sync",
        "WHATSAPP_PHONE_NUMBER_ID": "1055",
        "WHATSAPP_CATALOG_ID": "777",
        "WHATSAPP_READ_TIMEOUT": "1",
        "WCH_CATALOG_CHECK_DELAY": "0",  # off, so tests count only the calls they are about
    }


def product(store_id: int, **fields: Any) -> dict[str, Any]:
    """A ``product.*`` payload as WooCommerce's REST API v3 renders it (the fields wch reads, and some it does not)."""
    payload = {
        "id": store_id,
        "name": f"Linen shirt {store_id}",
        "slug": f"linen-shirt-{store_id}",
        "permalink": f"https://shop.example/product/linen-shirt-{store_id}/",
        "date_modified_gmt": "2026-11-01T10:00:00",
        "type": "simple",
        "status": "publish",
        "description": "<p>Soft <strong>linen</strong> &amp; cotton.</p>",
        "short_description": "",
        "sku": f"SHIRT-{store_id}",
        "price": "39.90",
        "regular_price": "39.90",
        "sale_price": "",
        "manage_stock": True,
        "stock_quantity": 12,
        "stock_status": "instock",
        "images": [{"id": 1, "src": f"https://shop.example/img/{store_id}.jpg"}],
        "categories": [{"id": 9, "name": "Shirts"}],
    }
    payload.update(fields)
    return payload


def order(store_id: int, status: str = "processing", **fields: Any) -> dict[str, Any]:
    """An ``order.*`` payload."""
    payload = {
        "id": store_id,
        "number": str(store_id),
        "status": status,
        "currency": CURRENCY,
        "date_modified_gmt": "2026-11-01T10:00:00",
        "total": "79.80",
        "billing": {"first_name": "Ana", "last_name": "Silva", "phone": "+351912345678", "country": "PT",
                    "email": "ana@example.com"},
        "line_items": [{"product_id": 1, "quantity": 2, "total": "79.80"}],
    }
    payload.update(fields)
    return payload


def delivery(topic: str, payload: Any, *, delivery_id: str | None = None, secret: str = SECRET,
             signature: str | None = None) -> tuple[bytes, dict[str, str]]:
    """The body and headers of a signed delivery (``signature`` overrides the real one)."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    headers = {
        "Content-Type": "application/json",
        "X-WC-Webhook-Source": "https://shop.example/",
        "X-WC-Webhook-Topic": topic,
        "X-WC-Webhook-Resource": topic.split(".")[0],
        "X-WC-Webhook-Event": topic.split(".")[-1],
        HEADER: sign(body, secret) if signature is None else signature,
        "X-WC-Webhook-ID": "3",
        "X-WC-Webhook-Delivery-ID": delivery_id or f"{next(_delivery)}-{uuid.uuid4().hex[:8]}",
    }
    return body, headers


def post(client, topic: str, payload: Any, **options: Any):
    """Send a signed delivery through a Flask test client; returns the response."""
    body, headers = delivery(topic, payload, **options)
    return client.post("/webhooks/woocommerce", data=body, headers=headers)
