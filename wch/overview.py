"""The numbers the dashboard and ``/metrics`` show: jobs, workers, queues, carts, campaigns.

Every query reads an index range (pending rows, the last 24 hours, the last 7
days) rather than counting whole tables, so the dashboard stays fast on a
ledger of millions of rows.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, func, or_, select

from wch import campaigns
from wch.carts import UNCONVERTED, expiry_cutoff
from wch.config import Settings
from wch.db import db, utcnow
from wch.dispatcher import pending_counts
from wch.humanize import duration
from wch.models import Cart, CartStatus, CleanupRun, Job, JobStatus, WorkerProcess
from wch.models.campaigns import COUNTERS, Campaign, CampaignStatus
from wch.models.jobs import PENDING
from wch.queue_depths import BrokerDepths, broker_depths

OUTCOMES = (JobStatus.SUCCEEDED.value, JobStatus.FAILED.value)
RECOVERY_WINDOW = timedelta(days=7)


def overview(settings: Settings, *, with_broker: bool = True) -> dict[str, Any]:
    """Everything on the dashboard, as plain data."""
    now = utcnow()
    oldest = oldest_pending(now=now)
    finished_24h, hourly = finished_outcomes(now=now)
    workers = workers_seen(now=now, heartbeat=settings.worker_heartbeat)
    numbers = {
        "now": now,
        "pending": pending_counts(),
        "finished_24h": finished_24h,
        "hourly": hourly,
        "oldest_pending": oldest,
        "workers": workers,
        "carts": cart_overview(settings, now=now),
        "campaigns": campaigns_in_progress(),
    }
    # End the read before talking to RabbitMQ: on SQLite an open transaction holds
    # the write lock, and the broker calls can take seconds when it is down.
    db.session.rollback()
    numbers["broker"] = (
        broker_depths(settings.broker_url, management_url=settings.rabbitmq_management_url)
        if with_broker else BrokerDepths(reachable=None)
    )
    numbers["warnings"] = warnings(numbers, settings=settings)
    return numbers


def finished_outcomes(*, now: datetime, hours: int = 24) -> tuple[dict[str, int], dict[str, list]]:
    """Jobs succeeded and failed in the last ``hours`` hours, in total and per clock hour (UTC).

    One pass over ``ix_jobs_status_finished``: the totals cover exactly the last
    ``hours`` hours; the chart's buckets are whole clock hours, the last one
    still filling.
    """
    since = now - timedelta(hours=hours)
    start = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=hours - 1)
    slots = [start + timedelta(hours=i) for i in range(hours)]
    keys = [slot.strftime("%Y-%m-%d %H") for slot in slots]
    series = {outcome: dict.fromkeys(keys, 0) for outcome in OUTCOMES}
    totals = dict.fromkeys(OUTCOMES, 0)
    bucket = _hour_bucket(Job.finished_at)
    rows = db.session.execute(
        select(Job.status, bucket, func.count())
        .where(Job.status.in_(OUTCOMES), Job.finished_at >= since)
        .group_by(Job.status, bucket)
    )
    for status, hour, count in rows:
        totals[status] += count
        key = _hour_key(hour)
        if key in series[status]:
            series[status][key] += count
    hourly = {"labels": [slot.strftime("%H:00") for slot in slots], **{o: list(series[o].values()) for o in OUTCOMES}}
    return totals, hourly


def _hour_bucket(column):
    # Timestamps are stored as naive UTC, so the database's own hour is UTC too.
    # On SQLite they are ISO text ("2026-11-29 14:05:09.123456"): the first 13
    # characters are the hour, cheaper than strftime() over every row.
    if db.session.get_bind().dialect.name == "postgresql":
        return func.date_trunc("hour", column)
    return func.substr(column, 1, 13)


def _hour_key(value) -> str:
    return value.strftime("%Y-%m-%d %H") if isinstance(value, datetime) else str(value)


def oldest_pending(*, now: datetime) -> dict[str, float]:
    """Seconds the longest-waiting due job of each type has waited (scheduled jobs not yet due don't count)."""
    due_since = func.min(func.coalesce(Job.eta, Job.enqueued_at))
    rows = db.session.execute(
        select(Job.type, due_since)
        .where(Job.status.in_(PENDING), or_(Job.eta.is_(None), Job.eta <= now))
        .group_by(Job.type)
    )
    ages = {}
    for type_, since in rows:
        if since is not None:
            # min() over a TypeDecorator column comes back raw on SQLite.
            since = since if isinstance(since, datetime) else datetime.fromisoformat(str(since))
            since = since if since.tzinfo else since.replace(tzinfo=now.tzinfo)
            ages[type_] = max(0.0, (now - since).total_seconds())
    return ages


def workers_seen(*, now: datetime, heartbeat: float) -> list[dict[str, Any]]:
    rows = db.session.scalars(select(WorkerProcess).order_by(WorkerProcess.heartbeat_at.desc()).limit(100))
    return [
        {**worker.to_dict(), "seconds_ago": (now - worker.heartbeat_at).total_seconds(),
         "alive": worker.is_alive(now, heartbeat=heartbeat)}
        for worker in rows
    ]


def cart_overview(settings: Settings, *, now: datetime) -> dict[str, Any]:
    """Carts for the dashboard, every count an index range rather than a whole-table scan.

    Completed carts are kept for good, so their all-time total grows without
    bound (and counting it reads every row); the dashboard shows those
    completed in the last 7 days instead. Active and abandoned carts stay few
    because the cleanup deletes them once expired. Reminders sent and carts
    recovered are over the same 7 days; the rate is recovered / reminded.
    """
    since = now - RECOVERY_WINDOW
    cutoff = expiry_cutoff(settings.cart_expiry_hours, now=now)
    # One pass over ix_carts_status_updated_at counts both the unconverted carts and the expired among them.
    counts, expired = {}, 0
    for status, count, stale in db.session.execute(
        select(Cart.status, func.count(), func.sum(case((Cart.updated_at < cutoff, 1), else_=0)))
        .where(Cart.status.in_(UNCONVERTED)).group_by(Cart.status)
    ):
        counts[status], expired = count, expired + (stale or 0)
    completed = db.session.scalar(select(func.count()).select_from(Cart).where(
        Cart.status == CartStatus.COMPLETED.value, Cart.updated_at >= since))
    reminded = db.session.scalar(select(func.count()).select_from(Cart).where(Cart.reminder_sent_at >= since))
    # Of the carts reminded in the window, those whose customer then ordered
    # (wch.reminders stamps recovered_at): covered by ix_carts_reminder_sent_recovered.
    recovered = db.session.scalar(select(func.count()).select_from(Cart).where(
        Cart.reminder_sent_at >= since, Cart.recovered_at.is_not(None)))
    last = db.session.scalars(select(CleanupRun).order_by(CleanupRun.started_at.desc()).limit(1)).first()
    return {
        CartStatus.ACTIVE.value: counts.get(CartStatus.ACTIVE.value, 0),
        CartStatus.ABANDONED.value: counts.get(CartStatus.ABANDONED.value, 0),
        "completed_7d": completed,
        "expired_awaiting_cleanup": expired,
        "reminders_sent_7d": reminded,
        "recovered_7d": recovered,
        "recovery_rate": recovered / reminded if reminded else None,
        "last_cleanup": last.to_dict() if last else None,
    }


def campaigns_in_progress() -> list[dict[str, Any]]:
    """Campaigns being sent, paused or scheduled (the newest 10), with :func:`wch.campaigns.progress`."""
    active = (CampaignStatus.SCHEDULED.value, CampaignStatus.SENDING.value, CampaignStatus.PAUSED.value)
    query = select(Campaign.id).where(Campaign.status.in_(active)).order_by(Campaign.id.desc()).limit(10)
    ids = db.session.scalars(query)
    found = []
    for campaign_id in list(ids):
        item = campaigns.progress(campaign_id)
        item["done"] = item["settled"]
        item["counters"] = {name: item[name] for name in ("total", *COUNTERS)} | {"pending": item["pending"]}
        found.append(item)
    return found


def warnings(numbers: dict[str, Any], *, settings: Settings) -> list[str]:
    """What staff should look at now: no live worker, or jobs waiting longer than they should."""
    found = []
    if not any(worker["alive"] for worker in numbers["workers"]):
        if numbers["workers"]:
            silent = min(worker["seconds_ago"] for worker in numbers["workers"])
            found.append(f"No worker has been seen for {duration(silent)}: jobs are not being run.")
        else:
            found.append("No worker has announced itself: start one with `dramatiq wch.actors`.")
    late = {t: age for t, age in numbers["oldest_pending"].items() if age > settings.pending_warn_seconds}
    for type_, age in sorted(late.items(), key=lambda item: -item[1]):
        found.append(f"{type_} jobs have been waiting for {duration(age)} (more than "
                     f"{duration(settings.pending_warn_seconds)}).")
    broker = numbers["broker"]
    if broker.reachable is False:
        found.append(f"RabbitMQ is not reachable ({broker.error}); jobs stay in the outbox until it is back.")
    return found
