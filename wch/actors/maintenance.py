"""Periodic triggers and upkeep of the ledger (queue ``maintenance``).

Periodic actors are thin triggers: periodiq drops late periodic messages
rather than retrying them, so the real work is dispatched as ordinary,
retryable jobs.
"""

from __future__ import annotations

from datetime import UTC, datetime

import dramatiq
from dramatiq.middleware import CurrentMessage
from flask import current_app
from periodiq import cron

from wch import maintenance, outbox
from wch.db import db
from wch.dispatcher import dispatch


@dramatiq.actor(queue_name="maintenance", periodic=cron("0 * * * *"), retry_delays=())
def hourly() -> list[str]:
    """Dispatch the hourly work once per hour, however many schedulers fire."""
    if not maintenance.claim_slot("hourly", maintenance.hour_slot(_scheduled_at())):
        db.session.rollback()
        return []
    jobs = [
        dispatch("cleanup_carts", {"trigger": "schedule"}),
        dispatch("expire_results"),
        dispatch("purge_ledger"),
    ]
    db.session.commit()
    return [job.id for job in jobs]


def _scheduled_at() -> datetime | None:
    """When periodiq scheduled the current message, so a late worker still claims the right hour."""
    message = CurrentMessage.get_current_message()
    try:
        return datetime.fromisoformat(message.options["scheduled_at"]).astimezone(UTC)
    except (AttributeError, KeyError, TypeError, ValueError):
        return None  # sent by hand, or by the in-process scheduler


@dramatiq.actor(queue_name="maintenance", periodic=cron("* * * * *"), retry_delays=())
def relay_outbox() -> int:
    """Publish jobs that could not be published when they were dispatched."""
    return outbox.relay()


@dramatiq.actor(queue_name="maintenance")
def expire_results() -> int:
    """Clear results older than ``WCH_RESULT_TTL``."""
    return maintenance.expire_results()


@dramatiq.actor(queue_name="maintenance", time_limit=60 * 60 * 1000)
def purge_ledger() -> int:
    """Delete finished jobs older than ``WCH_LEDGER_RETENTION_DAYS`` and workers long gone."""
    return maintenance.purge_ledger(retention_days=current_app.extensions["wch"].settings.ledger_retention_days)
