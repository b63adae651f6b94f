"""Broadcast jobs (queue ``broadcast``): campaign batches, WhatsApp webhook events, the sweep.

All are safe to repeat after an interrupted attempt: a batch claims its
recipients under its job id, and a second run of the same job releases the
ones never tried and flags the ones in flight instead of sending them again;
webhook statuses only move recipients forward; the sweep is idempotent.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from dramatiq.middleware import CurrentMessage
from periodiq import cron

from wch import runtime
from wch.actors.whatsapp_client import client
from wch.db import transaction
from wch.jobs import JobType, job_actor
from wch.jobs.schedule import claim_slot, minute_slot
from wch.messaging import events, messages
from wch.messaging.campaigns import SEND_CAMPAIGN_BATCH, sending, sweep
from wch.whatsapp import DEFAULT_SENDER

TRIGGER_BROADCAST_SWEEP = JobType("trigger_broadcast_sweep", queue="broadcast")


@job_actor(SEND_CAMPAIGN_BATCH, time_limit=10 * 60 * 1000, safe_to_repeat=True)
def send_campaign_batch(campaign_id: int, not_before: str | None = None) -> dict[str, Any]:
    """Send the next batch of a campaign, not before ``not_before`` (ISO 8601); it dispatches the batch after it."""
    settings = runtime.settings()
    message = CurrentMessage.get_current_message()
    begins = datetime.fromisoformat(not_before).timestamp() if not_before else None
    outcome = sending.run_batch(campaign_id, claim=message.message_id, client=client(),
                                settings=settings, not_before=begins)
    return outcome.to_dict()


@job_actor(events.PROCESS_WHATSAPP_WEBHOOK, safe_to_repeat=True)
def process_whatsapp_webhook(payload: dict[str, Any]) -> dict[str, int]:
    """Apply the statuses, inbound messages and standing updates of one WhatsApp webhook delivery."""
    return events.apply_webhook(payload, sender=runtime.settings().whatsapp_phone_number_id or DEFAULT_SENDER)


@job_actor(TRIGGER_BROADCAST_SWEEP, periodic=cron("* * * * *"), retry_delays=(), safe_to_repeat=True)
def trigger_broadcast_sweep() -> str | None:
    """Dispatch the broadcast sweep once a minute, however many schedulers fire."""
    with transaction():
        if not claim_slot("broadcast_sweep", minute_slot()):
            return None
        return sweep.sweep_later().id


@job_actor(sweep.SWEEP_BROADCASTS, safe_to_repeat=True)
def sweep_broadcasts() -> dict[str, int]:
    """Start due scheduled campaigns and restart broken batch chains; release or flag recipients of dead batches;
    flag order and reminder messages a dead worker left sending."""
    settings = runtime.settings()
    stale_after = timedelta(seconds=settings.broadcast_stale_claim)
    result = sweep.sweep(stale_after=stale_after, sender=settings.whatsapp_phone_number_id or DEFAULT_SENDER)
    with transaction():
        result["messages_flagged"] = messages.flag_left_sending(older_than=stale_after)
    return result
