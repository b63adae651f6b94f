"""Snapshots of the store's products and orders, as its webhooks last described them."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Index, Integer, Numeric, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from wch.db import UTCDateTime, db, utcnow


class Product(db.Model):
    """A WooCommerce product and what was last pushed of it to the WhatsApp catalog.

    ``retailer_id`` is the catalog item id (the SKU, or ``wc_<store id>`` without
    one); ``synced_retailer_id`` is the id it is in the catalog under, so a
    changed SKU deletes the old item. ``synced_hash`` fingerprints the last
    full push: an update that changes nothing the catalog shows makes no call.
    """

    __tablename__ = "products"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    store_id: Mapped[int] = mapped_column(Integer, unique=True)
    retailer_id: Mapped[str] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(500), default="")
    description: Mapped[str | None] = mapped_column(Text)
    price: Mapped[Decimal | None] = mapped_column(Numeric(10, 2))
    sale_price: Mapped[Decimal | None] = mapped_column(Numeric(10, 2))
    currency: Mapped[str] = mapped_column(String(3))
    stock_quantity: Mapped[int | None] = mapped_column(Integer)
    availability: Mapped[str] = mapped_column(String(32), default="in stock")
    store_status: Mapped[str] = mapped_column(String(32), default="publish")
    image_url: Mapped[str | None] = mapped_column(String(2048))
    product_url: Mapped[str | None] = mapped_column(String(2048))
    store_modified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    synced_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    synced_retailer_id: Mapped[str | None] = mapped_column(String(100))
    synced_hash: Mapped[str | None] = mapped_column(String(64))
    sync_handle: Mapped[str | None] = mapped_column(String(200))

    @property
    def in_catalog(self) -> bool:
        """Whether the product should be visible in the WhatsApp catalog."""
        return self.deleted_at is None and self.store_status == "publish"

    # The panel's products screen: newest change first, or by SKU.
    __table_args__ = (Index("ix_products_updated_at", "updated_at"), Index("ix_products_retailer_id", "retailer_id"))

    def to_dict(self) -> dict[str, Any]:
        return self.values("store_id", "retailer_id", "name", "price", "sale_price", "currency", "stock_quantity",
                           "availability", "store_status", "synced_at", "synced_retailer_id") | {
            "deleted": self.deleted_at is not None}


class Order(db.Model):
    """A WooCommerce order and the last status its customer was told about (its messages are
    :class:`~wch.models.messages.Message` rows, subject ``order:<store id>:<status>``)."""

    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    store_id: Mapped[int] = mapped_column(Integer, unique=True)
    number: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(32))
    customer_phone: Mapped[str | None] = mapped_column(String(32))
    customer_name: Mapped[str | None] = mapped_column(String(200))
    total: Mapped[Decimal | None] = mapped_column(Numeric(10, 2))
    currency: Mapped[str] = mapped_column(String(3))
    store_modified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    notified_status: Mapped[str | None] = mapped_column(String(32))
    notified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    # The panel's orders screen: newest change first, by number, or by the customer's phone.
    __table_args__ = (Index("ix_orders_updated_at", "updated_at"), Index("ix_orders_number", "number"),
                      Index("ix_orders_customer_phone", "customer_phone"))

    def to_dict(self) -> dict[str, Any]:
        return self.values("store_id", "number", "status", "customer_name", "total", "currency", "notified_status")


class WebhookDelivery(db.Model):
    """A store webhook delivery already handled, so a repeated delivery changes nothing."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(String(32))
    delivery_id: Mapped[str] = mapped_column(String(100))
    topic: Mapped[str] = mapped_column(String(64))
    resource_id: Mapped[int | None] = mapped_column(Integer)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The sync or notification it dispatched (None: nothing to do, e.g. an order status not told).
    job_id: Mapped[str | None] = mapped_column(String(36))

    __table_args__ = (
        UniqueConstraint("source", "delivery_id", name="uq_webhook_deliveries_source_delivery"),
        Index("ix_webhook_deliveries_received_at", "received_at"),
    )
