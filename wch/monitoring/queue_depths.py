"""How many messages wait in each RabbitMQ queue, asked without consuming any.

The ready count comes from a passive ``queue_declare`` over AMQP, which every
RabbitMQ has. The unacknowledged count (messages a worker holds) is only known
to the management API (``rabbitmq_management`` plugin, port 15672); without it
that column is ``None``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import quote, unquote, urlsplit

import pika
import requests
from pika.exceptions import AMQPError, ChannelClosedByBroker

from wch.jobs.broker import QUEUES

MANAGEMENT_PORT = 15672
TIMEOUT = 2.0


@dataclass
class QueueDepth:
    name: str
    ready: int | None
    unacked: int | None


@dataclass
class BrokerDepths:
    """What the broker said: ``reachable`` is None for the in-process stub broker."""

    reachable: bool | None
    error: str | None = None
    management: bool = False
    queues: list[QueueDepth] = field(default_factory=list)


def queue_names() -> list[str]:
    """Each wch queue and Dramatiq's delay queue (``.DQ``) beside it."""
    return [name for queue in QUEUES for name in (queue, f"{queue}.DQ")]


def broker_depths(broker_url: str, *, management_url: str | None = None) -> BrokerDepths:
    if broker_url.startswith("stub:"):
        return BrokerDepths(reachable=None)
    try:
        ready = _ready_counts(broker_url, queue_names())
    except (AMQPError, OSError) as error:
        return BrokerDepths(reachable=False, error=f"{type(error).__name__} {error}".strip())
    unacked = _unacked_counts(broker_url, management_url)
    queues = [QueueDepth(name, ready.get(name), unacked.get(name) if unacked is not None else None) for name in ready]
    return BrokerDepths(reachable=True, management=unacked is not None, queues=queues)


def broker_reachable(broker_url: str) -> str | None:
    """Why the broker cannot be reached, or None when it can (or is the stub)."""
    if broker_url.startswith("stub:"):
        return None
    try:
        _connect(broker_url).close()
    except (AMQPError, OSError) as error:
        return f"{type(error).__name__} {error}".strip()
    return None


def _connect(broker_url: str) -> pika.BlockingConnection:
    with _pika_quiet():
        return pika.BlockingConnection(_parameters(broker_url))


@contextmanager
def _pika_quiet() -> Iterator[None]:
    # A failed probe is the answer, reported by the caller: pika's own ERROR lines and traceback
    # for it would fill the log on every health check and dashboard refresh while RabbitMQ is down.
    pika_logger = logging.getLogger("pika")
    level = pika_logger.level
    pika_logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        pika_logger.setLevel(level)


def _parameters(broker_url: str) -> pika.URLParameters:
    params = pika.URLParameters(broker_url)
    params.connection_attempts, params.socket_timeout, params.blocked_connection_timeout = 1, TIMEOUT, TIMEOUT
    params.stack_timeout = TIMEOUT * 2
    return params


def _ready_counts(broker_url: str, names: list[str]) -> dict[str, int | None]:
    counts: dict[str, int | None] = {}
    connection = _connect(broker_url)
    try:
        channel = connection.channel()
        for name in names:
            try:
                counts[name] = channel.queue_declare(queue=name, passive=True).method.message_count
            except ChannelClosedByBroker:
                # 404: no worker has declared this queue yet. The broker closes
                # the channel on that, so open a fresh one for the next name.
                counts[name] = None
                channel = connection.channel()
    finally:
        connection.close()
    return counts


def _unacked_counts(broker_url: str, management_url: str | None) -> dict[str, int] | None:
    parts = urlsplit(broker_url)
    vhost = unquote(parts.path.lstrip("/")) or "/"
    base = management_url or f"http://{parts.hostname}:{MANAGEMENT_PORT}"
    auth = (unquote(parts.username or "guest"), unquote(parts.password or "guest"))
    management = urlsplit(base)
    if management.username:
        auth = (unquote(management.username), unquote(management.password or ""))
        port = f":{management.port}" if management.port else ""
        base = base.replace(management.netloc, f"{management.hostname}{port}")
    try:
        response = requests.get(f"{base.rstrip('/')}/api/queues/{quote(vhost, safe='')}", auth=auth, timeout=TIMEOUT)
        response.raise_for_status()
        return {queue["name"]: queue.get("messages_unacknowledged", 0) for queue in response.json()}
    except (requests.RequestException, ValueError, KeyError, TypeError):
        return None
