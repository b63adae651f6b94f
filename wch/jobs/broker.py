"""The Dramatiq broker and its middleware, built from the settings.

It must be set before any actor is declared, so ``wch.actors`` calls
:func:`setup_broker` first thing; ``dramatiq wch.actors`` and
``periodiq wch.actors`` then find it as ``wch.actors.broker``.
"""

from __future__ import annotations

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import (
    AgeLimit,
    Callbacks,
    CurrentMessage,
    Pipelines,
    ShutdownNotifications,
    TimeLimit,
)
from periodiq import PeriodiqMiddleware

from wch.config import Settings
from wch.jobs.middleware import AppContext, FixedRetries, Heartbeat, JobMetrics, Ledger, SchemaCheck
from wch.jobs.publisher import BackgroundPublisher, Publisher

QUEUES = ("sync", "broadcast", "carts", "maintenance")

_broker: dramatiq.Broker | None = None


def build_broker(settings: Settings, *, app_factory: str) -> dramatiq.Broker:
    """A broker with wch's middleware, in the order their hooks must run.

    ``app_factory`` names the function that builds the worker's Flask app
    (``"wch:create_app"``). Dramatiq runs ``after_*`` hooks in reverse order,
    so the ledger, placed before the retries middleware, records a failure
    only after retries has decided whether there will be another attempt.
    """
    app_context = AppContext(app_factory=app_factory)
    middleware = [
        app_context,
        SchemaCheck(app_context=app_context),
        Heartbeat(app_context=app_context, interval=settings.worker_heartbeat),
        Ledger(result_ttl=settings.result_ttl, worker_lost_after=settings.worker_lost_after,
               max_broker_delay=settings.max_broker_delay),
        JobMetrics(host=settings.metrics_host, port=settings.metrics_port),
        AgeLimit(),
        TimeLimit(),
        ShutdownNotifications(),
        Callbacks(),
        Pipelines(),
        FixedRetries(delays=settings.retry_delays, max_delay=settings.max_broker_delay),
        CurrentMessage(),
        # Periodic triggers older than this are dropped; the ledger keeps the record.
        PeriodiqMiddleware(skip_delay=30),
    ]
    if settings.broker_is_stub:
        return StubBroker(middleware=middleware)
    return RabbitmqBroker(url=settings.broker_url, confirm_delivery=True, middleware=middleware)


def setup_broker(settings: Settings | None = None, *, app_factory: str) -> dramatiq.Broker:
    """Build the process-wide broker once and make it Dramatiq's global broker."""
    global _broker
    if _broker is None:
        _broker = build_broker(settings or Settings.from_env(), app_factory=app_factory)
        dramatiq.set_broker(_broker)
    return _broker


def build_publisher(settings: Settings) -> Publisher | None:
    """The publisher dispatched jobs are handed to, or ``None`` to leave them in the outbox.

    A StubBroker lives in one process, so a job dispatched from another one
    (the CLI, say) waits in the outbox until the process that runs the
    in-process worker relays it.
    """
    if settings.broker_is_stub:
        return None
    return BackgroundPublisher(settings.broker_url)
