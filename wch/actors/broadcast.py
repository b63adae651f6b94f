"""Broadcast jobs (queue ``broadcast``): campaign batches, WhatsApp webhook events, the sweep."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from dramatiq.middleware import CurrentMessage
from periodiq import cron

from wch import runtime
from wch.actors.whatsapp_client import client
from wch.db import transaction
from wch.jobs import JobType, job_actor
from wch.jobs.schedule import claim_slot, minute_slot
from wch.messaging import events
from wch.messaging.campaigns import SEND_CAMPAIGN_BATCH, sending, sweep

TRIGGER_BROADCAST_SWEEP = JobType("trigger_broadcast_sweep", queue="broadcast")


@job_actor(SEND_CAMPAIGN_BATCH, time_limit=10 * 60 * 1000)
def send_campaign_batch(campaign_id: int) -> dict[str, Any]:
    """Send the next batch of a campaign; it dispatches the batch after it, an interval later."""
    settings = runtime.settings()
    message = CurrentMessage.get_current_message()
    outcome = sending.run_batch(campaign_id, claim=message.message_id, client=client(),
                                settings=settings)
    return outcome.to_dict()


@job_actor(events.PROCESS_WHATSAPP_WEBHOOK)
def process_whatsapp_webhook(payload: dict[str, Any]) -> dict[str, int]:
    """Apply the statuses and inbound messages of one WhatsApp webhook delivery."""
    return events.apply_webhook(payload)


@job_actor(TRIGGER_BROADCAST_SWEEP, periodic=cron("* * * * *"), retry_delays=())
def trigger_broadcast_sweep() -> str | None:
    """Dispatch the broadcast sweep once a minute, however many schedulers fire."""
    with transaction():
        if not claim_slot("broadcast_sweep", minute_slot()):
            return None
        return sweep.sweep_later().id


@job_actor(sweep.SWEEP_BROADCASTS)
def sweep_broadcasts() -> dict[str, int]:
    """Start due scheduled campaigns and restart broken batch chains; release or flag recipients of dead batches."""
    return sweep.sweep(stale_after=timedelta(seconds=runtime.settings().broadcast_stale_claim))
