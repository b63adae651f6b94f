"""Cart jobs (queue ``carts``): the cleanup of expired carts, the abandoned-cart scan and its reminders."""

from __future__ import annotations

from typing import Any

from periodiq import cron

from wch import runtime
from wch.actors.whatsapp_client import client
from wch.carts import reminders
from wch.carts.cleanup import CLEANUP_CARTS, cleanup_expired_carts
from wch.db import transaction, utcnow
from wch.jobs import JobType, job_actor
from wch.jobs.schedule import claim_slot
from wch.whatsapp import WhatsAppError

TRIGGER_REMINDER_SCAN = JobType("trigger_reminder_scan", queue="carts")


@job_actor(CLEANUP_CARTS, time_limit=60 * 60 * 1000)
def cleanup_carts(trigger: str = "schedule") -> dict[str, Any]:
    """Delete carts that never converted and have been idle past ``WCH_CART_EXPIRY_HOURS``."""
    settings = runtime.settings()
    run = cleanup_expired_carts(expiry_hours=settings.cart_expiry_hours, batch_size=settings.cleanup_batch_size,
                                trigger=trigger)
    return run.to_dict()


@job_actor(TRIGGER_REMINDER_SCAN, periodic=cron("* * * * *"), retry_delays=())
def trigger_reminder_scan() -> str | None:
    """Dispatch the reminder scan every ``WCH_REMINDER_SCAN_MINUTES``, however many schedulers fire."""
    minutes = runtime.settings().reminder_scan_minutes
    slot = int(utcnow().timestamp() // (60 * minutes))
    with transaction():
        if not claim_slot("reminder_scan", f"{minutes}m:{slot}"):
            return None
        return reminders.scan_later("schedule").id


@job_actor(reminders.SCAN_ABANDONED_CARTS, time_limit=30 * 60 * 1000)
def scan_abandoned_carts(trigger: str = "schedule") -> int:
    """Dispatch one reminder job per cart idle past the configured delay."""
    return reminders.scan()


# Refusals other than "try later" fail at once, visibly, keeping the stamp: retrying would not help.
@job_actor(reminders.SEND_CART_REMINDER, throws=(WhatsAppError,))
def send_cart_reminder(cart_id: int, updated_at: str) -> dict[str, Any]:
    """Re-check the cart, stamp it reminded, and send the reminder (text in the 24 h window, else the template)."""
    return reminders.send_reminder(client, cart_id, updated_at)
