"""Cart jobs (queue ``carts``): the cleanup of expired carts, the abandoned-cart scan and its reminders.

All are safe to repeat after an interrupted attempt: the cleanup deletes
what is still expired, the scan dispatches reminders unique per cart and
change, and a reminder stamps its cart before it is sent, so a second run
finds the stamp and sends nothing.
"""

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
from wch.monitoring.rollups import refresh_cart_snapshot
from wch.whatsapp import WhatsAppError

TRIGGER_REMINDER_SCAN = JobType("trigger_reminder_scan", queue="carts")


@job_actor(CLEANUP_CARTS, time_limit=60 * 60 * 1000, safe_to_repeat=True)
def cleanup_carts(trigger: str = "schedule") -> dict[str, Any]:
    """Delete carts that never converted and have been idle past ``WCH_CART_EXPIRY_HOURS``."""
    settings = runtime.settings()
    run = cleanup_expired_carts(expiry_hours=settings.cart_expiry_hours,
                                recovery_window_hours=settings.recovery_window_hours,
                                batch_size=settings.cleanup_batch_size, trigger=trigger)
    with transaction():
        # The dashboard shows the deleted carts gone at once, not at the next rollup.
        refresh_cart_snapshot(expiry_hours=settings.cart_expiry_hours, now=utcnow(), only_if_kept=True)
    return run.to_dict()


@job_actor(TRIGGER_REMINDER_SCAN, periodic=cron("* * * * *"), retry_delays=(), safe_to_repeat=True)
def trigger_reminder_scan() -> str | None:
    """Dispatch the reminder scan every ``WCH_REMINDER_SCAN_MINUTES``, however many schedulers fire."""
    minutes = runtime.settings().reminder_scan_minutes
    slot = int(utcnow().timestamp() // (60 * minutes))
    with transaction():
        if not claim_slot("reminder_scan", f"{minutes}m:{slot}"):
            return None
        return reminders.scan_later("schedule").id


@job_actor(reminders.SCAN_ABANDONED_CARTS, time_limit=30 * 60 * 1000, safe_to_repeat=True)
def scan_abandoned_carts(trigger: str = "schedule") -> int:
    """Dispatch one reminder job per cart idle past the configured delay."""
    return reminders.scan(cart_expiry_hours=runtime.settings().cart_expiry_hours)


# Refusals other than "try later" fail at once, visibly, keeping the stamp: retrying would not help.
@job_actor(reminders.SEND_CART_REMINDER, throws=(WhatsAppError,), safe_to_repeat=True)
def send_cart_reminder(cart_id: int, updated_at: str) -> dict[str, Any]:
    """Re-check the cart, stamp it reminded, and send the reminder (text in the 24 h window, else the template)."""
    return reminders.send_reminder(client, cart_id, updated_at, send_rate=runtime.settings().send_rate_limit)
