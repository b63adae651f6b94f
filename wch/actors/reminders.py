"""Abandoned-cart reminder jobs (queue ``carts``)."""

from __future__ import annotations

from typing import Any

import dramatiq
from flask import current_app
from periodiq import cron

from wch import maintenance, reminders
from wch.broadcast import shared_client
from wch.db import db, utcnow
from wch.dispatcher import dispatch
from wch.whatsapp.errors import RetryLater, WhatsAppError


@dramatiq.actor(queue_name="carts", periodic=cron("* * * * *"), retry_delays=())
def reminder_scan_trigger() -> str | None:
    """Dispatch the reminder scan every ``WCH_REMINDER_SCAN_MINUTES``, however many schedulers fire."""
    minutes = current_app.extensions["wch"].settings.reminder_scan_minutes
    now = utcnow()
    slot = int(now.timestamp() // (60 * minutes))
    if not maintenance.claim_slot("reminder_scan", f"{minutes}m:{slot}"):
        return None
    job = dispatch("scan_abandoned_carts", {"trigger": "schedule"}, unique=True)
    db.session.commit()
    return job.id


@dramatiq.actor(queue_name="carts", time_limit=30 * 60 * 1000)
def scan_abandoned_carts(trigger: str = "schedule") -> int:
    """Dispatch one reminder job per cart idle past the configured delay."""
    return reminders.scan()


# Refusals other than "try later" fail at once, visibly, keeping the stamp: retrying would not help.
@dramatiq.actor(actor_name=reminders.REMINDER_JOB, queue_name="carts", throws=(WhatsAppError,))
def send_cart_reminder(cart_id: int, updated_at: str) -> dict[str, Any]:
    """Re-check the cart, stamp it reminded, and send the reminder (text in the 24 h window, else the template)."""
    # Before the claim: a client that cannot be built (no token) must not stamp the cart reminded, unsent.
    client = shared_client(current_app.extensions["wch"].settings)
    reminder = reminders.claim_reminder(cart_id, updated_at)
    if reminder is None:
        return {"sent": False, "reason": "not eligible (already reminded, changed, emptied or opted out)"}
    try:
        if reminder.text is not None:
            wamid = client.send_text(reminder.phone, reminder.text)
        else:
            wamid = client.send_template(reminder.phone, reminder.template_name, reminder.template_language,
                                         reminder.parameters)
    except RetryLater as error:
        if error.sent_unknown:
            # No answer: Meta may have it. Keep the stamp; never risk a second reminder.
            return {"sent": None, "reason": f"no answer from WhatsApp, it may have been sent: {error}"}
        reminders.unclaim_reminder(reminder)  # Meta refused it for now; the retry sends it
        delay = int(error.retry_after * 1000) if error.retry_after else None
        raise dramatiq.Retry(str(error), delay=delay) from None
    return {"sent": True, "wamid": wamid, "as": "text" if reminder.text is not None else "template"}
