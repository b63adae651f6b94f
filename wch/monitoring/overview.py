"""The numbers the dashboard and ``/metrics`` show: jobs, workers, queues, carts, campaigns, and what needs a look.

Each number comes from the domain that owns it. Jobs finished per hour and
the cart numbers are kept ahead of time (:mod:`wch.monitoring.rollups`); the
rest reads small index ranges (pending jobs, live workers, campaigns being
sent), so the dashboard costs about the same on a ledger of millions of rows.
"""

from __future__ import annotations

from typing import Any

from wch.config import Settings
from wch.db import read_only, utcnow
from wch.jobs.queries import oldest_pending, pending_counts, workers_seen
from wch.messaging.campaigns import campaigns_in_progress
from wch.monitoring.humanize import duration
from wch.monitoring.queue_depths import BrokerDepths, broker_depths
from wch.monitoring.rollups import cart_numbers, finished_per_hour


def overview(settings: Settings, *, with_broker: bool = True) -> dict[str, Any]:
    """Everything on the dashboard, as plain data."""
    now = utcnow()
    # The reads end before RabbitMQ is asked: its calls can take seconds when it is down.
    with read_only():
        finished_24h, hourly = finished_per_hour(now=now)
        numbers = {
            "now": now,
            "pending": (pending := pending_counts()),
            "finished_24h": finished_24h,
            "hourly": hourly,
            "oldest_pending": oldest_pending(now=now, counts=pending),
            "workers": workers_seen(now=now, lost_after=settings.worker_lost_after),
            "carts": cart_numbers(expiry_hours=settings.cart_expiry_hours, now=now),
            "campaigns": campaigns_in_progress(),
        }
    numbers["broker"] = (
        broker_depths(settings.broker_url, management_url=settings.rabbitmq_management_url,
                      allow_http=settings.rabbitmq_management_allow_http, ttl=settings.broker_stats_ttl)
        if with_broker else BrokerDepths(reachable=None)
    )
    numbers["warnings"] = warnings(numbers, settings=settings)
    return numbers


def warnings(numbers: dict[str, Any], *, settings: Settings) -> list[str]:
    """What staff should look at now: no live worker, jobs waiting longer than they should, RabbitMQ away."""
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
