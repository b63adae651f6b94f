"""Catalog and order sync jobs (queue ``sync``), on the fixed ``WCH_RETRY_DELAYS`` schedule.

Each job reads the latest snapshot when it runs, so however many webhooks
arrived while it waited, it makes one call. Errors retrying cannot fix (the
recipient, the template, the account, the configuration) fail at once.
"""

from __future__ import annotations

from typing import Any

import dramatiq
from flask import current_app
from periodiq import cron

from wch import catalog, order_updates, woocommerce_webhook
from wch.db import db
from wch.dispatcher import dispatch
from wch.order_updates import MessageMayHaveBeenSent
from wch.whatsapp import ConfigurationError, NeedsTemplate, RecipientUnreachable, StopSending, WhatsAppClient

CANNOT_RETRY = (ConfigurationError, NeedsTemplate, RecipientUnreachable, StopSending, MessageMayHaveBeenSent)


def _client() -> WhatsAppClient:
    return WhatsAppClient.for_app(current_app)


def _check_later(result: dict[str, Any]) -> dict[str, Any]:
    """Dispatch a look at Meta's verdict on the batch just sent (``WCH_CATALOG_CHECK_DELAY``; 0 turns it off)."""
    delay = current_app.extensions["wch"].settings.catalog_check_delay
    handles = result.get("handles")
    if delay and isinstance(handles, list) and handles:
        result["check_job"] = dispatch("check_catalog_batch", {"handle": str(handles[0])}, delay=delay).id
        db.session.commit()
    return result


@dramatiq.actor(queue_name="sync", throws=CANNOT_RETRY)
def product(store_id: int, force: bool = False) -> dict[str, Any]:
    """Push a product's current snapshot to the WhatsApp catalog (create, update, or delete)."""
    return _check_later(catalog.push_product(_client(), store_id, force=force))


@dramatiq.actor(queue_name="sync", throws=CANNOT_RETRY)
def inventory(store_id: int) -> dict[str, Any]:
    """Push only a product's availability and quantity."""
    return _check_later(catalog.push_inventory(_client(), store_id))


@dramatiq.actor(queue_name="sync", throws=CANNOT_RETRY + (catalog.CatalogItemsRejected,))
def check_catalog_batch(handle: str) -> dict[str, Any]:
    """Fail (visibly, in the ledger) if Meta rejected items of a batch; retried while Meta is still processing it."""
    return catalog.check_batch(_client(), handle)


@dramatiq.actor(queue_name="sync", throws=CANNOT_RETRY)
def order(store_id: int) -> dict[str, Any]:
    """Message the customer about the order's current status, at most once per (order, status)."""
    return order_updates.notify(_client, current_app.extensions["wch"].settings, store_id)


@dramatiq.actor(queue_name="sync", throws=CANNOT_RETRY, time_limit=10 * 60 * 1000)
def sync_all_products(after: int = 0) -> dict[str, Any]:
    """Push every product, one ``items_batch`` call of at most ``WCH_CATALOG_BATCH_SIZE`` items per job.

    Each page dispatches the next, so a failed page is retried alone.
    """
    settings = current_app.extensions["wch"].settings
    result = _check_later(catalog.push_page(_client(), after=after, limit=settings.catalog_batch_size))
    after = result["next_after"]
    if after is not None:
        following = dispatch("sync_all_products", {"after": after}, unique=f"after:{after}")
        db.session.commit()
        result["next_job"] = following.id
    return result


@dramatiq.actor(queue_name="maintenance", periodic=cron("30 * * * *"), retry_delays=())
def forget_webhook_deliveries() -> int:
    """Hourly: drop store delivery ids older than ``WCH_WEBHOOK_DEDUPE_DAYS`` (idempotent, so no trigger is needed)."""
    days = current_app.extensions["wch"].settings.webhook_dedupe_days
    return woocommerce_webhook.forget_old_deliveries(days=days)
