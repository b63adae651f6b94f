"""``/metrics`` for Prometheus.

A fresh :class:`prometheus_client.CollectorRegistry` per scrape from the
dashboard's numbers (:mod:`wch.monitoring.overview`): the values live in the
database, not in this process, so every web process reports the same.
"""

from __future__ import annotations

from flask import Blueprint, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest

from wch import runtime
from wch.monitoring.overview import overview

bp = Blueprint("metrics", __name__)


@bp.route("/metrics")
def metrics():
    registry = CollectorRegistry()
    numbers = overview(runtime.settings())

    pending = Gauge("wch_jobs_pending", "Jobs waiting or running, by type and state", ["type", "state"],
                    registry=registry)
    for type_, states in numbers["pending"].items():
        for state, count in states.items():
            pending.labels(type_, state).set(count)
    finished = Gauge("wch_jobs_finished_24h", "Jobs finished in the last 24 hours, by outcome", ["outcome"],
                     registry=registry)
    for outcome, count in numbers["finished_24h"].items():
        finished.labels(outcome).set(count)
    oldest = Gauge("wch_job_oldest_pending_seconds", "Age of the oldest due pending job, by type", ["type"],
                   registry=registry)
    for type_, age in numbers["oldest_pending"].items():
        oldest.labels(type_).set(age)
    Gauge("wch_workers_alive", "Workers with a heartbeat in the last minute", registry=registry).set(
        sum(1 for worker in numbers["workers"] if worker["alive"])
    )

    broker = numbers["broker"]
    Gauge("wch_broker_up", "1 when RabbitMQ answered (always 1 on the in-process broker)", registry=registry).set(
        0 if broker.reachable is False else 1
    )
    ready = Gauge("wch_queue_ready", "Messages ready in each RabbitMQ queue", ["queue"], registry=registry)
    unacked = Gauge("wch_queue_unacked", "Messages held by workers (needs the management plugin)", ["queue"],
                    registry=registry)
    for queue in broker.queues:
        if queue.ready is not None:
            ready.labels(queue.name).set(queue.ready)
        if queue.unacked is not None:
            unacked.labels(queue.name).set(queue.unacked)

    carts = numbers["carts"]
    cart_gauge = Gauge("wch_carts", "Carts not yet converted, by status", ["status"], registry=registry)
    for status in ("active", "abandoned"):
        cart_gauge.labels(status).set(carts[status])
    Gauge("wch_carts_completed_7d", "Carts completed in the last 7 days", registry=registry).set(carts["completed_7d"])
    Gauge("wch_carts_expired_awaiting_cleanup", "Unconverted carts idle past the expiry", registry=registry).set(
        carts["expired_awaiting_cleanup"]
    )
    Gauge("wch_cart_reminders_sent_7d", "Reminders sent in the last 7 days", registry=registry).set(
        carts["reminders_sent_7d"]
    )
    Gauge("wch_carts_recovered_7d", "Reminded carts completed in the last 7 days", registry=registry).set(
        carts["recovered_7d"]
    )
    campaign = Gauge("wch_campaign_recipients", "Recipients of campaigns in progress, by campaign and state",
                     ["campaign", "state"], registry=registry)
    for item in numbers["campaigns"]:
        for state, count in item.get("counters", {}).items():
            campaign.labels(str(item["id"]), state).set(count)
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)
