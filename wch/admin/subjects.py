"""Finding jobs by what they are about: the search box's ``order 1234``, ``product 42``, ``sku SKU-9``, ``+49…``.

A job's ``subject`` (``order:<store id>``, ``product:<store id>``,
``cart:<id>``, ``campaign:<id>``) is set at dispatch and indexed with the
enqueue time. A search is turned into the subjects it means, looking up the
order by its number, the product by its SKU and the orders and carts of a
phone, so the jobs list reads only the jobs about them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import or_, select

from wch.db import db
from wch.messaging.contacts import InvalidPhone, normalize_phone
from wch.models import Cart, Order, Product

MAX_SUBJECTS = 50
STORE_ID_LIMIT = 2**31 - 1
SEARCH = re.compile(r"^\s*(order|product|sku|cart|campaign)\s*[:#]?\s*(\S.*?)\s*$", re.IGNORECASE)
PHONE = re.compile(r"^\+?[\d\s().-]{7,24}$")


@dataclass(frozen=True)
class SubjectSearch:
    """What the search text asked for (``label``, shown to staff) and the job subjects it stands for."""

    label: str
    subjects: tuple[str, ...]


def parse(text: str) -> SubjectSearch | None:
    """The subjects ``text`` names, or None when it is not a subject search (then it searches error text)."""
    text = text.strip()
    if text.startswith("#") and whole_number(text[1:]) is not None:
        return _orders(text[1:])
    match = SEARCH.match(text)
    if match:
        kind, value = match.group(1).lower(), match.group(2)
        if kind == "order":
            return _orders(value)
        if kind == "sku":
            return _products_by_sku(value)
        if kind == "product":
            number = whole_number(value)
            return _products_by_sku(value) if number is None else SubjectSearch(f"product {number}",
                                                                                (f"product:{number}",))
        number = whole_number(value)
        return SubjectSearch(f"{kind} {value}", (f"{kind}:{number}",) if number is not None else ())
    if PHONE.match(text):
        try:
            return _phone(normalize_phone(text))
        except InvalidPhone:
            return None
    return None


def whole_number(value: str) -> int | None:
    value = value.strip()
    if value.isascii() and value.isdigit() and int(value) <= STORE_ID_LIMIT:
        return int(value)
    return None


def _orders(value: str) -> SubjectSearch:
    """Orders whose number is ``value``, and the order with that store id (often the same in WooCommerce)."""
    value = value.strip()[:64]
    number = whole_number(value)
    query = select(Order.store_id).where(
        or_(Order.number == value, Order.store_id == number) if number is not None else Order.number == value
    ).limit(MAX_SUBJECTS)
    ids = set(db.session.scalars(query))
    if number is not None:
        ids.add(number)  # jobs can exist before (or without) the order's snapshot
    return SubjectSearch(f"order {value}", tuple(f"order:{i}" for i in sorted(ids)))


def _products_by_sku(value: str) -> SubjectSearch:
    value = value.strip()[:100]
    ids = db.session.scalars(select(Product.store_id).where(Product.retailer_id == value).limit(MAX_SUBJECTS))
    return SubjectSearch(f"SKU {value}", tuple(f"product:{i}" for i in ids))


def _phone(phone: str) -> SubjectSearch:
    """The orders and carts of the customer at ``phone``."""
    orders = db.session.scalars(select(Order.store_id).where(Order.customer_phone == phone).limit(MAX_SUBJECTS))
    carts = db.session.scalars(select(Cart.id).where(Cart.customer_phone == phone).limit(MAX_SUBJECTS))
    return SubjectSearch(phone, (*(f"order:{i}" for i in orders), *(f"cart:{i}" for i in carts)))
