"""WooCommerce webhook payloads read into snapshots of products and orders.

Reading is strict about what wch needs (an integer id, parseable prices) and
lenient about the rest, since WooCommerce disables a webhook whose deliveries
keep failing. :class:`BadPayload` means "answer 400 and change nothing".
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qs

PRODUCT_RESTORED = "product.restored"
PRODUCT_TOPICS = frozenset({"product.created", "product.updated", PRODUCT_RESTORED})
PRODUCT_DELETED = "product.deleted"
ORDER_TOPICS = frozenset({"order.created", "order.updated"})
TOPICS = PRODUCT_TOPICS | ORDER_TOPICS | {PRODUCT_DELETED}

MAX_STORE_ID = 2**31 - 1  # the ids are stored in an INTEGER column
MAX_PRICE = Decimal("99999999.99")  # Numeric(10, 2)
AVAILABILITY = {"instock": "in stock", "outofstock": "out of stock", "onbackorder": "available for order"}
_TAGS = re.compile(r"<[^>]*>")
_SPACE = re.compile(r"[ \t\r\f\v]+")


class BadPayload(ValueError):
    """A webhook payload wch cannot use; the message says why."""


def is_ping(body: bytes) -> bool:
    """WooCommerce's unsigned test delivery when a webhook is created: ``webhook_id=N``, form-encoded."""
    if len(body) > 100:
        return False
    try:
        fields = parse_qs(body.decode("ascii"), strict_parsing=True)
    except (UnicodeDecodeError, ValueError):
        return False
    return list(fields) == ["webhook_id"] and len(fields["webhook_id"]) == 1 and fields["webhook_id"][0].isdigit()


def resource_id(payload: Any) -> int:
    """The product or order id of a payload, or :class:`BadPayload`."""
    if not isinstance(payload, dict):
        raise BadPayload("the payload is not a JSON object")
    return _store_id(payload.get("id"), "id")


@dataclass(frozen=True)
class ProductSnapshot:
    store_id: int
    retailer_id: str
    name: str
    description: str | None
    price: Decimal | None
    sale_price: Decimal | None
    currency: str
    stock_quantity: int | None
    availability: str
    store_status: str
    image_url: str | None
    product_url: str | None
    modified_at: datetime | None


@dataclass(frozen=True)
class OrderSnapshot:
    store_id: int
    number: str
    status: str
    phone: str | None
    country: str | None
    customer_name: str | None
    total: Decimal | None
    currency: str
    modified_at: datetime | None


def parse_product(payload: Any, *, currency: str) -> ProductSnapshot:
    """A product payload (``product.created|updated|restored``) as a snapshot priced in ``currency``."""
    store_id = resource_id(payload)
    sku = _text(payload.get("sku"), "sku") or ""
    retailer_id = sku.strip() or f"wc_{store_id}"
    if len(retailer_id) > 100:
        raise BadPayload("sku: longer than 100 characters")
    regular = _money(payload.get("regular_price"), "regular_price")
    current = _money(payload.get("price"), "price")
    sale = _money(payload.get("sale_price"), "sale_price")
    price = regular if regular is not None else current
    managed = payload.get("manage_stock") is True
    quantity = _quantity(payload.get("stock_quantity")) if managed else None
    stock_status = _text(payload.get("stock_status"), "stock_status")
    availability = AVAILABILITY.get(stock_status, "out of stock") if stock_status is not None else "in stock"
    images = payload.get("images")
    image = images[0].get("src") if isinstance(images, list) and images and isinstance(images[0], dict) else None
    description = _plain(_text(payload.get("description"), "description")) or _plain(
        _text(payload.get("short_description"), "short_description"))
    return ProductSnapshot(
        store_id=store_id,
        retailer_id=retailer_id,
        name=(_text(payload.get("name"), "name") or "")[:500],
        description=description,
        price=price,
        sale_price=sale if sale is not None and price is not None and sale < price else None,
        currency=currency,
        stock_quantity=quantity,
        availability=availability,
        store_status=(_text(payload.get("status"), "status") or "publish")[:32],
        image_url=_url(image),
        product_url=_url(payload.get("permalink")),
        modified_at=_gmt(payload.get("date_modified_gmt")),
    )


def deleted_at(payload: Any) -> datetime | None:
    """When a ``product.deleted`` payload says the product last changed (a trashed product's full payload has it;
    a deleted one's ``{"id": N}`` does not)."""
    return _gmt(payload.get("date_modified_gmt")) if isinstance(payload, dict) else None


def parse_order(payload: Any, *, default_currency: str | None) -> OrderSnapshot:
    """An order payload (``order.created|updated``) as a snapshot."""
    store_id = resource_id(payload)
    status = _text(payload.get("status"), "status")
    if not status:
        raise BadPayload("status: missing")
    billing = payload.get("billing") if isinstance(payload.get("billing"), dict) else {}
    currency = _text(payload.get("currency"), "currency") or default_currency
    if not currency or len(currency) != 3 or not currency.isalpha():
        raise BadPayload("currency: missing or not a 3-letter code (set WCH_STORE_CURRENCY for orders without one)")
    name = " ".join(filter(None, (_text(billing.get("first_name"), "billing.first_name"),
                                  _text(billing.get("last_name"), "billing.last_name"))))
    number = payload.get("number")
    return OrderSnapshot(
        store_id=store_id,
        number=(str(number) if isinstance(number, (str, int)) and not isinstance(number, bool) and str(number)
                else str(store_id))[:64],
        status=status.strip().lower()[:32],
        phone=(_text(billing.get("phone"), "billing.phone") or "").strip()[:32] or None,
        country=(_text(billing.get("country"), "billing.country") or "").strip().upper()[:2] or None,
        customer_name=name[:200] or None,
        total=_money(payload.get("total"), "total"),
        currency=currency.upper(),
        modified_at=_gmt(payload.get("date_modified_gmt")),
    )


def _store_id(value: Any, field: str) -> int:
    if isinstance(value, bool):
        raise BadPayload(f"{field}: not an integer")
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if not isinstance(value, int):
        raise BadPayload(f"{field}: missing or not an integer")
    if not 0 < value <= MAX_STORE_ID:
        raise BadPayload(f"{field}: {value} is out of range")
    return value


def _text(value: Any, field: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadPayload(f"{field}: not a string")
    return value.replace("\x00", "")


def _money(value: Any, field: str) -> Decimal | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise BadPayload(f"{field}: not a price")
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise BadPayload(f"{field}: {str(value)[:40]!r} is not a price") from None
    if not amount.is_finite() or amount < 0 or amount > MAX_PRICE:
        raise BadPayload(f"{field}: {str(value)[:40]!r} is not a price between 0 and {MAX_PRICE}")
    return amount.quantize(Decimal("0.01"))


def _quantity(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value.strip())
    if not isinstance(value, int):
        raise BadPayload("stock_quantity: not a whole number")
    return max(-MAX_STORE_ID, min(value, MAX_STORE_ID))


def _url(value: Any) -> str | None:
    if isinstance(value, str) and value.startswith(("http://", "https://")) and len(value) <= 2048:
        return value
    return None


def _plain(text: str | None) -> str | None:
    """Text without HTML tags and entities; the catalog shows plain text."""
    if not text:
        return None
    text = html.unescape(_TAGS.sub(" ", text))
    lines = [_SPACE.sub(" ", line).strip() for line in text.splitlines()]
    return "\n".join(line for line in lines if line)[:9999] or None


def _gmt(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
