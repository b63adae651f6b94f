"""Periodic triggers and upkeep of the ledger (queue ``maintenance``).

Periodic actors are thin triggers: periodiq drops late periodic messages
rather than retrying them, so the real work is dispatched as ordinary,
retryable jobs.
"""

from __future__ import annotations

import dramatiq
from flask import current_app
from periodiq import cron

from wch import maintenance, outbox
from wch.db import db
from wch.dispatcher import dispatch


@dramatiq.actor(queue_name="maintenance", periodic=cron("0 * * * *"), retry_delays=())
def hourly() -> list[str]:
    """Dispatch the hourly work once per hour, however many schedulers fire."""
    if not maintenance.claim_slot("hourly", maintenance.hour_slot()):
        return []
    jobs = [
        dispatch("cleanup_carts", {"trigger": "schedule"}),
        dispatch("expire_results"),
        dispatch("purge_ledger"),
    ]
    db.session.commit()
    return [job.id for job in jobs]


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
