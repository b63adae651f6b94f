"""Broadcast jobs (queue ``broadcast``): campaign batches, WhatsApp webhook events, the sweep."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import dramatiq
from dramatiq.middleware import CurrentMessage
from flask import current_app
from periodiq import cron

from wch import broadcast, maintenance
from wch.campaigns import BATCH_JOB
from wch.db import db, utcnow
from wch.dispatcher import dispatch
from wch.whatsapp_events import apply_webhook


@dramatiq.actor(actor_name=BATCH_JOB, queue_name="broadcast", time_limit=10 * 60 * 1000)
def send_campaign_batch(campaign_id: int) -> dict[str, Any]:
    """Send the next batch of a campaign; it dispatches the batch after it, an interval later."""
    message = CurrentMessage.get_current_message()
    return broadcast.run_batch(campaign_id, claim=message.message_id).to_dict()


@dramatiq.actor(queue_name="broadcast")
def process_whatsapp_webhook(payload: dict[str, Any]) -> dict[str, int]:
    """Apply the statuses and inbound messages of one WhatsApp webhook delivery."""
    return apply_webhook(payload)


@dramatiq.actor(queue_name="broadcast", periodic=cron("* * * * *"), retry_delays=())
def broadcast_sweep_trigger() -> str | None:
    """Dispatch the broadcast sweep once a minute, however many schedulers fire."""
    if not maintenance.claim_slot("broadcast_sweep", utcnow().strftime("%Y-%m-%dT%H:%M")):
        return None
    job = dispatch("sweep_broadcasts", unique=True)
    db.session.commit()
    return job.id


@dramatiq.actor(queue_name="broadcast")
def sweep_broadcasts() -> dict[str, int]:
    """Start due scheduled campaigns and restart broken batch chains; release or flag recipients of dead batches."""
    settings = current_app.extensions["wch"].settings
    return broadcast.sweep_stale_claims(older_than=timedelta(seconds=settings.broadcast_stale_claim))
