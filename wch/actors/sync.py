"""Catalog and order sync jobs (queue ``sync``), on the fixed ``WCH_RETRY_DELAYS`` schedule.

Each job reads the latest snapshot when it runs, so however many webhooks
arrived while it waited, it makes one call. Errors retrying cannot fix (the
recipient, the template, the account, the configuration) fail at once.

All are safe to repeat after an interrupted attempt: a catalog push sends
the product's current state again (Meta's ``items_batch`` is an upsert), and
an order message is claimed in ``messages`` before it is sent, so
a second run finds it claimed and sends nothing.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from wch import runtime
from wch.actors.whatsapp_client import client
from wch.db import transaction
from wch.jobs import job_actor
from wch.store import catalog, importer, orders
from wch.whatsapp import ConfigurationError, NeedsTemplate, RecipientUnreachable, StopSending

CANNOT_RETRY = (ConfigurationError, NeedsTemplate, RecipientUnreachable, StopSending, orders.MessageMayHaveBeenSent)


def _check_later(result: dict[str, Any]) -> dict[str, Any]:
    with transaction():
        return catalog.check_later(result, delay=runtime.settings().catalog_check_delay)


@job_actor(catalog.SYNC_PRODUCT, throws=CANNOT_RETRY, safe_to_repeat=True)
def sync_product(store_id: int, force: bool = False) -> dict[str, Any]:
    """Push a product's current snapshot to the WhatsApp catalog (create, update, or delete)."""
    return _check_later(catalog.push_product(client(), store_id, force=force))


@job_actor(catalog.SYNC_INVENTORY, throws=CANNOT_RETRY, safe_to_repeat=True)
def sync_inventory(store_id: int) -> dict[str, Any]:
    """Push only a product's availability and quantity."""
    return _check_later(catalog.push_inventory(client(), store_id))


@job_actor(catalog.CHECK_CATALOG_BATCH, throws=CANNOT_RETRY + (catalog.CatalogItemsRejected,), safe_to_repeat=True)
def check_catalog_batch(handle: str) -> dict[str, Any]:
    """Fail (visibly, in the ledger) if Meta rejected items of a batch; retried while Meta is still processing it."""
    return catalog.check_batch(client(), handle)


@job_actor(orders.NOTIFY_ORDER, throws=CANNOT_RETRY, safe_to_repeat=True)
def notify_order(store_id: int) -> dict[str, Any]:
    """Message the customer about the order's current status, at most once per (order, status)."""
    return orders.notify(client, runtime.settings(), store_id)


@job_actor(catalog.SYNC_PRODUCTS, throws=CANNOT_RETRY, time_limit=10 * 60 * 1000)
def sync_products(after: int, through: int) -> dict[str, Any]:
    """Push the products with store ids in (``after``, ``through``]: one page of a store import.

    More than ``WCH_CATALOG_BATCH_SIZE`` items go in several jobs, each dispatching the next.
    """
    limit = runtime.settings().catalog_batch_size
    result = _check_later(catalog.push_page(client(), after=after, through=through, limit=limit))
    if result["next_after"] is not None and result["next_after"] < through:
        with transaction():
            result["next_job"] = catalog.sync_products(after=result["next_after"], through=through).id
    return result


@job_actor(catalog.SYNC_ALL_PRODUCTS, throws=CANNOT_RETRY, time_limit=10 * 60 * 1000, safe_to_repeat=True)
def sync_all_products(after: int = 0) -> dict[str, Any]:
    """Push every product, one ``items_batch`` call of at most ``WCH_CATALOG_BATCH_SIZE`` items per job.

    Each page dispatches the next, so a failed page is retried alone.
    """
    result = _check_later(catalog.push_page(client(), after=after, limit=runtime.settings().catalog_batch_size))
    if result["next_after"] is not None:
        with transaction():
            result["next_job"] = catalog.sync_all_products(after=result["next_after"]).id
    return result


# A job holds its RabbitMQ message while it runs: a long import goes on in a chain of jobs this long each,
# well under RabbitMQ's consumer_timeout.
IMPORT_SLICE_SECONDS = 5 * 60


@job_actor(importer.IMPORT_STORE, throws=(importer.StoreRefused, importer.ImportBusy), time_limit=30 * 60 * 1000)
def import_store(kind: str, since: str | None = None) -> dict[str, Any]:
    """Import the store's products or orders (the panel's button), for a few minutes, then dispatch the rest.

    A retry, a redelivery or the next job of the chain resumes at the next page.
    """
    settings = runtime.settings()
    start = datetime.fromisoformat(since) if since else None
    api = importer.StoreApi.from_settings(settings)
    try:
        done = importer.run_import(api, kind, since=start, settings=settings,
                                   until=time.monotonic() + IMPORT_SLICE_SECONDS)
    finally:
        api.close()
    result = done.to_dict()
    if done.status == "running":
        with transaction():
            result["next_job"] = importer.import_later(kind, start).id
    return result
