"""Periodic triggers and upkeep (queue ``maintenance``).

Periodic actors are thin triggers: periodiq drops late periodic messages
rather than retrying them, so the real work is dispatched as ordinary,
retryable jobs. All of them are safe to repeat: triggers claim their slot,
and the upkeep and the lifeline only converge the ledger.
"""

from __future__ import annotations

from datetime import UTC, datetime

from dramatiq.middleware import CurrentMessage
from periodiq import cron

from wch import runtime
from wch.carts.cleanup import cleanup_later
from wch.db import transaction, utcnow
from wch.jobs import JobType, dispatch, job_actor, lifeline, outbox, upkeep
from wch.jobs.schedule import claim_slot, hour_slot, minute_slot
from wch.monitoring.rollups import refresh_cart_snapshot, roll_up_finished_jobs
from wch.store.deliveries import forget_old_deliveries

TRIGGER_HOURLY_WORK = JobType("trigger_hourly_work", queue="maintenance")
RELAY_OUTBOX = JobType("relay_outbox", queue="maintenance")
FORGET_WEBHOOK_DELIVERIES = JobType("forget_webhook_deliveries", queue="maintenance")
TRIGGER_RESCUE_JOBS = JobType("trigger_rescue_jobs", queue="maintenance")
ROLL_UP_DASHBOARD = JobType("roll_up_dashboard", queue="maintenance")


@job_actor(TRIGGER_HOURLY_WORK, periodic=cron("0 * * * *"), retry_delays=(), safe_to_repeat=True)
def trigger_hourly_work() -> list[str]:
    """Dispatch the hourly work once per hour, however many schedulers fire."""
    with transaction():
        if not claim_slot("hourly", hour_slot(_scheduled_at())):
            return []
        jobs = [cleanup_later("schedule"), dispatch(upkeep.EXPIRE_RESULTS), dispatch(upkeep.PURGE_LEDGER)]
        return [job.id for job in jobs]


def _scheduled_at() -> datetime | None:
    """When periodiq scheduled the current message, so a late worker still claims the right hour."""
    message = CurrentMessage.get_current_message()
    try:
        return datetime.fromisoformat(message.options["scheduled_at"]).astimezone(UTC)
    except (AttributeError, KeyError, TypeError, ValueError):
        return None  # sent by hand, or by the in-process scheduler


@job_actor(RELAY_OUTBOX, periodic=cron("* * * * *"), retry_delays=(), safe_to_repeat=True)
def relay_outbox() -> int:
    """Publish jobs that could not be published when they were dispatched."""
    return outbox.relay()


@job_actor(upkeep.EXPIRE_RESULTS, safe_to_repeat=True)
def expire_results() -> int:
    """Clear results older than ``WCH_RESULT_TTL``."""
    with transaction():
        return upkeep.expire_results()


@job_actor(upkeep.PURGE_LEDGER, time_limit=60 * 60 * 1000, safe_to_repeat=True)
def purge_ledger() -> int:
    """Delete finished jobs older than ``WCH_LEDGER_RETENTION_DAYS`` and workers long gone."""
    return upkeep.purge_ledger(retention_days=runtime.settings().ledger_retention_days)


@job_actor(FORGET_WEBHOOK_DELIVERIES, periodic=cron("30 * * * *"), retry_delays=(), safe_to_repeat=True)
def forget_webhook_deliveries() -> int:
    """Hourly: drop store delivery ids older than ``WCH_WEBHOOK_DEDUPE_DAYS`` (idempotent, so no trigger is needed)."""
    return forget_old_deliveries(days=runtime.settings().webhook_dedupe_days)


@job_actor(TRIGGER_RESCUE_JOBS, periodic=cron("* * * * *"), retry_delays=(), safe_to_repeat=True)
def trigger_rescue_jobs() -> str | None:
    """Dispatch the lifeline once a minute, however many schedulers fire."""
    with transaction():
        if not claim_slot("rescue_jobs", minute_slot(_scheduled_at())):
            return None
        return dispatch(lifeline.RESCUE_JOBS, unique=True).id


@job_actor(lifeline.RESCUE_JOBS, safe_to_repeat=True)
def rescue_jobs() -> dict[str, int]:
    """Publish again jobs whose message was lost, and end running jobs whose worker is gone."""
    settings = runtime.settings()
    return lifeline.rescue(rescue_after=settings.rescue_after, worker_lost_after=settings.worker_lost_after,
                           max_broker_delay=settings.max_broker_delay).to_dict()


@job_actor(ROLL_UP_DASHBOARD, periodic=cron("* * * * *"), retry_delays=(), safe_to_repeat=True)
def roll_up_dashboard() -> int:
    """Every minute: count newly finished jobs into their hours and snapshot the cart numbers (harmless to repeat)."""
    with transaction():
        counted = roll_up_finished_jobs(now=utcnow())
    with transaction():
        refresh_cart_snapshot(expiry_hours=runtime.settings().cart_expiry_hours, now=utcnow())
    return counted
