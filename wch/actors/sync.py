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


@dramatiq.actor(queue_name="sync", throws=CANNOT_RETRY)
def product(store_id: int, force: bool = False) -> dict[str, Any]:
    """Push a product's current snapshot to the WhatsApp catalog (create, update, or delete)."""
    return catalog.push_product(_client(), store_id, force=force)


@dramatiq.actor(queue_name="sync", throws=CANNOT_RETRY)
def inventory(store_id: int) -> dict[str, Any]:
    """Push only a product's availability and quantity."""
    return catalog.push_inventory(_client(), store_id)


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
    result = catalog.push_page(_client(), after=after, limit=settings.catalog_batch_size)
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
