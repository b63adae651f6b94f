"""The WhatsApp catalog kept in step with the store's products.

Webhooks record a product's latest snapshot and dispatch one sync job per
product (unique by product, so a burst of updates makes one job). The job
reads the snapshot when it runs and pushes it with ``items_batch``.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import or_, select, update

from wch.db import db, read_only, transaction, utcnow
from wch.jobs import JobType, dispatch, find_pending
from wch.models import Job, Product
from wch.store.woocommerce import ProductSnapshot
from wch.whatsapp import WhatsAppClient

SYNC_PRODUCT = JobType("sync_product", queue="sync", subject="product:{store_id}")
SYNC_INVENTORY = JobType("sync_inventory", queue="sync", subject="product:{store_id}")
SYNC_ALL_PRODUCTS = JobType("sync_all_products", queue="sync")
SYNC_PRODUCTS = JobType("sync_products", queue="sync")
CHECK_CATALOG_BATCH = JobType("check_catalog_batch", queue="sync")

MAX_BATCH = 5000  # Meta's limit per items_batch call
CATALOG_FIELDS = ("retailer_id", "name", "description", "price", "sale_price", "currency", "store_status",
                  "image_url", "product_url")
INVENTORY_FIELDS = ("stock_quantity", "availability")


def record_product(snapshot: ProductSnapshot, *, restored: bool = False) -> tuple[Product | None, str]:
    """Store ``snapshot``; return the product and what changed for the catalog.

    The change is ``"catalog"`` (new, restored or anything the catalog shows),
    ``"inventory"`` (only stock), ``"none"``, or ``"stale"`` when the snapshot is
    older than the one kept (webhooks can arrive out of order; nothing is written).
    A deleted product stays deleted: only ``restored`` (a ``product.restored``
    delivery) or a store modification newer than the delete brings it back.
    """
    product = db.session.scalars(select(Product).where(Product.store_id == snapshot.store_id)).first()
    now = utcnow()
    if product is None:
        product = Product(store_id=snapshot.store_id)
        _apply(product, snapshot, now)
        db.session.add(product)
        return product, "catalog"
    if (snapshot.modified_at is not None and product.store_modified_at is not None
            and snapshot.modified_at < product.store_modified_at):
        return product, "stale"
    deleted = product.deleted_at is not None
    if deleted and not restored and not _newer(snapshot.modified_at, product.store_modified_at):
        return product, "stale"
    catalog_changed = deleted or any(getattr(product, f) != getattr(snapshot, f) for f in CATALOG_FIELDS)
    inventory_changed = any(getattr(product, f) != getattr(snapshot, f) for f in INVENTORY_FIELDS)
    _apply(product, snapshot, now)
    product.deleted_at = None
    if catalog_changed:
        return product, "catalog"
    return product, "inventory" if inventory_changed else "none"


def _newer(modified_at: datetime | None, than: datetime | None) -> bool:
    return modified_at is not None and (than is None or modified_at > than)


def record_product_deleted(store_id: int, *, modified_at: datetime | None = None) -> Product:
    """Mark the product deleted (a stub row if wch never saw it, so a late update cannot resurrect it).

    The delete counts as a store modification at ``modified_at`` (the
    payload's, else now): only a newer one, or ``product.restored``, undoes it.
    """
    product = db.session.scalars(select(Product).where(Product.store_id == store_id)).first()
    now = utcnow()
    if product is None:
        product = Product(store_id=store_id, retailer_id=f"wc_{store_id}", name="", currency="",
                          availability="out of stock", store_status="trash")
        db.session.add(product)
    deleted_at = modified_at or now
    if product.store_modified_at is None or product.store_modified_at < deleted_at:
        product.store_modified_at = deleted_at
    product.deleted_at = now
    product.updated_at = now
    return product


def request_sync(product: Product, change: str) -> Job | None:
    """Dispatch the job a change calls for; an already pending job for the product absorbs it."""
    if change == "catalog":
        return dispatch(SYNC_PRODUCT, {"store_id": product.store_id}, unique=str(product.store_id))
    if change == "inventory":
        # A pending full sync will push the stock too.
        pending = find_pending(SYNC_PRODUCT, str(product.store_id))
        return pending or dispatch(SYNC_INVENTORY, {"store_id": product.store_id}, unique=str(product.store_id))
    return None


def sync_product_now(store_id: int) -> Job:
    """Dispatch a push of the product even if the catalog looks up to date (staff asked for it)."""
    return dispatch(SYNC_PRODUCT, {"store_id": store_id, "force": True})


def sync_all_products(*, after: int = 0) -> Job:
    """Dispatch the push of every product after store id ``after``, one page per job."""
    return dispatch(SYNC_ALL_PRODUCTS, {"after": after}, unique=f"after:{after}")


def sync_products(*, after: int, through: int) -> Job:
    """Dispatch one push of the products with store ids in (``after``, ``through``]: a page of an import."""
    return dispatch(SYNC_PRODUCTS, {"after": after, "through": through}, unique=f"{after}:{through}")


def check_later(result: dict[str, Any], *, delay: float) -> dict[str, Any]:
    """Dispatch a look at Meta's verdict on the batch a push just sent, ``delay`` seconds later (0: never)."""
    handles = result.get("handles")
    if delay and isinstance(handles, list) and handles:
        result["check_job"] = dispatch(CHECK_CATALOG_BATCH, {"handle": str(handles[0])}, delay=delay).id
    return result


def _apply(product: Product, snapshot: ProductSnapshot, now) -> None:
    for field in CATALOG_FIELDS + INVENTORY_FIELDS:
        setattr(product, field, getattr(snapshot, field))
    product.store_modified_at = snapshot.modified_at or product.store_modified_at
    product.updated_at = now


# -- what the catalog is sent ---------------------------------------------


def money(amount: Decimal, currency: str) -> str:
    """A price as ``items_batch`` wants it: ``"12.50 USD"``."""
    return f"{amount:.2f} {currency}"


def catalog_item(product: Product) -> dict[str, Any]:
    """The ``data`` of an ``UPDATE`` request: every field the catalog shows."""
    data: dict[str, Any] = {
        "id": product.retailer_id,
        "title": product.name or f"Product {product.store_id}",
        "description": product.description or product.name or f"Product {product.store_id}",
        "availability": product.availability,
        "condition": "new",
        "link": product.product_url,
        "image_link": product.image_url,
    }
    if product.price is not None:
        data["price"] = money(product.price, product.currency)
    if product.sale_price is not None:
        data["sale_price"] = money(product.sale_price, product.currency)
    if product.stock_quantity is not None:
        data["quantity_to_sell_on_facebook"] = max(0, product.stock_quantity)
    return {key: value for key, value in data.items() if value is not None}


def inventory_item(product: Product) -> dict[str, Any]:
    """The ``data`` of an ``UPDATE`` that changes only availability and quantity."""
    data: dict[str, Any] = {"id": product.retailer_id, "availability": product.availability}
    if product.stock_quantity is not None:
        data["quantity_to_sell_on_facebook"] = max(0, product.stock_quantity)
    return data


def product_requests(product: Product) -> list[dict[str, Any]]:
    """The ``items_batch`` requests that make the catalog match the product."""
    requests = []
    if product.synced_retailer_id and (not product.in_catalog or product.synced_retailer_id != product.retailer_id):
        requests.append({"method": "DELETE", "data": {"id": product.synced_retailer_id}})
    if product.in_catalog:
        requests.append({"method": "UPDATE", "data": catalog_item(product)})
    return requests


def _digest(requests: list[dict[str, Any]]) -> str:
    return hashlib.sha256(json.dumps(requests, sort_keys=True).encode()).hexdigest()


def _catalog_id_of(product: Product) -> str | None:
    """The retailer id the product has in the catalog once its requests are applied."""
    return product.retailer_id if product.in_catalog else None


def _mark_synced(product_id: int, retailer_id: str | None, digest: str | None, answer: dict[str, Any]) -> None:
    # ``retailer_id`` was read before the call: the snapshot may have changed since.
    db.session.execute(
        update(Product)
        .where(Product.id == product_id)
        .values(synced_retailer_id=retailer_id, synced_hash=digest, synced_at=utcnow(), sync_handle=_handle(answer))
    )


def _handle(answer: dict[str, Any]) -> str | None:
    handles = answer.get("handles")
    return str(handles[0])[:200] if isinstance(handles, list) and handles else None


# -- the jobs' work ---------------------------------------------------------
# Each push reads in one transaction and records in another, so no transaction
# (and, on SQLite, no lock) is held across the call to Meta.


def push_product(client: WhatsAppClient, store_id: int, *, force: bool = False) -> dict[str, Any]:
    """Push one product's snapshot (create, update or delete); skip it if the catalog already has it.

    Runs its own transactions.
    """
    with read_only():
        product = _get(store_id)
        if product is None:
            return {"store_id": store_id, "skipped": "unknown product"}
        requests = product_requests(product)
        if not requests:
            return {"store_id": store_id, "skipped": "not in the catalog"}
        digest = _digest(requests)
        if digest == product.synced_hash and not force:
            return {"store_id": store_id, "skipped": "catalog already up to date"}
        product_id, retailer_id = product.id, _catalog_id_of(product)
    answer = client.items_batch(requests)
    with transaction():
        _mark_synced(product_id, retailer_id, digest, answer)
    return {"store_id": store_id, "requests": [r["method"] for r in requests], "handles": answer.get("handles")}


def push_inventory(client: WhatsAppClient, store_id: int) -> dict[str, Any]:
    """Push only availability and quantity; a product not yet in the catalog (as it is now) gets a full push.

    Runs its own transactions.
    """
    with read_only():
        product = _get(store_id)
        if product is None:
            return {"store_id": store_id, "skipped": "unknown product"}
        in_place = product.in_catalog and product.synced_retailer_id == product.retailer_id
        product_id, item = product.id, inventory_item(product)
    if not in_place:
        return push_product(client, store_id)
    answer = client.items_batch([{"method": "UPDATE", "data": item}])
    with transaction():
        # The catalog now differs from the last full push, so the next full sync must not be skipped.
        _mark_synced(product_id, item["id"], None, answer)
    return {"store_id": store_id, "inventory": item, "handles": answer.get("handles")}


def push_page(client: WhatsAppClient, *, after: int, limit: int, through: int | None = None) -> dict[str, Any]:
    """Push the products after store id ``after`` (up to ``through``) in one ``items_batch`` call of at most
    ``limit`` requests.

    Returns the last store id pushed as ``next_after`` (``None`` when no product is left).
    Runs its own transactions.
    """
    limit = min(limit, MAX_BATCH)
    query = (
        select(Product)
        .where(Product.store_id > after, or_(Product.deleted_at.is_(None), Product.synced_retailer_id.is_not(None)))
        .order_by(Product.store_id)
        .limit(limit)
    )
    if through is not None:
        query = query.where(Product.store_id <= through)
    requests: list[dict[str, Any]] = []
    pushed: list[dict[str, Any]] = []
    last = None
    with read_only():
        for product in db.session.scalars(query):
            wanted = product_requests(product)
            if len(requests) + len(wanted) > limit:
                break
            requests.extend(wanted)
            pushed.append({"id": product.id, "synced_retailer_id": _catalog_id_of(product),
                           "synced_hash": _digest(wanted)})
            last = product.store_id
    if last is None:
        return {"items": 0, "next_after": None}
    if not requests:
        return {"items": 0, "next_after": last}
    answer = client.items_batch(requests)
    marks = {"synced_at": utcnow(), "sync_handle": _handle(answer)}
    with transaction():
        db.session.execute(update(Product), [row | marks for row in pushed])
    return {"items": len(requests), "products": len(pushed), "next_after": last, "handles": answer.get("handles")}


def _get(store_id: int) -> Product | None:
    return db.session.scalars(select(Product).where(Product.store_id == store_id)).first()


class CatalogBatchPending(Exception):
    """Meta has not finished processing the batch yet; check again later."""


class CatalogItemsRejected(Exception):
    """Meta processed the batch but refused some items (a missing price, a bad image URL…)."""


def check_batch(client: WhatsAppClient, handle: str) -> dict[str, Any]:
    """Meta's verdict on an ``items_batch`` call: raise if it is still running or rejected items."""
    answer = client.batch_status(handle)
    data = answer.get("data")
    status = data[0] if isinstance(data, list) and data and isinstance(data[0], dict) else {}
    state = str(status.get("status") or "unknown")
    if state != "finished":
        raise CatalogBatchPending(f"catalog batch {handle} is {state}")
    errors = status.get("errors") if isinstance(status.get("errors"), list) else []
    count = status.get("errors_total_count") or len(errors)
    if count:
        shown = "; ".join(_describe_item_error(error) for error in errors[:5])
        raise CatalogItemsRejected(f"catalog batch {handle}: Meta rejected {count} item(s): {shown}")
    return {"handle": handle, "status": state, "warnings": status.get("warnings_total_count", 0)}


def _describe_item_error(error: Any) -> str:
    if not isinstance(error, dict):
        return str(error)[:200]
    return f"{error.get('id') or error.get('retailer_id') or '?'}: {str(error.get('message') or error)[:200]}"
