"""How many messages wait in each RabbitMQ queue, asked without consuming any.

The ready count comes from a passive ``queue_declare`` over AMQP, which every
RabbitMQ has. The unacknowledged count (messages a worker holds) is only known
to the management API (``rabbitmq_management`` plugin, port 15672, or 15671
over TLS); without it that column is ``None``.

The management API takes the broker's user and password as HTTP Basic auth,
so wch sends them only over https, to this machine (loopback), or when
``WCH_RABBITMQ_MANAGEMENT_ALLOW_HTTP`` says plain http is fine. The answer is
kept for ``WCH_BROKER_STATS_TTL`` seconds per process, and concurrent callers
(many open dashboards, a Prometheus scrape) wait for one request instead of
each making their own.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import quote, unquote, urlsplit

import pika
import requests
from pika.exceptions import AMQPError, ChannelClosedByBroker

from wch.jobs.broker import QUEUES

# What connecting to an unreachable broker raises: pika raises ValueError ("Expected connected
# socket") when the connection is reset during its handshake, as by a broker going down.
UNREACHABLE = (AMQPError, OSError, ValueError)

MANAGEMENT_PORT = 15672
MANAGEMENT_TLS_PORT = 15671
TIMEOUT = 2.0
_cache: dict[tuple, tuple[float, BrokerDepths]] = {}
_cache_lock = threading.Lock()


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
    # Why unacked counts are missing when the management API was not asked.
    management_note: str | None = None


def queue_names() -> list[str]:
    """Each wch queue and Dramatiq's delay queue (``.DQ``) beside it."""
    return [name for queue in QUEUES for name in (queue, f"{queue}.DQ")]


def broker_depths(broker_url: str, *, management_url: str | None = None, allow_http: bool = False,
                  ttl: float = 0.0) -> BrokerDepths:
    """The depth of every wch queue, asked at most once per ``ttl`` seconds in this process."""
    if broker_url.startswith("stub:"):
        return BrokerDepths(reachable=None)
    key = (broker_url, management_url, allow_http)
    # One lock for every caller: while one asks RabbitMQ, the others wait for its answer.
    with _cache_lock:
        cached = _cache.get(key)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        depths = _ask(broker_url, management_url, allow_http)
        _cache[key] = (time.monotonic() + ttl, depths)
        return depths


def _ask(broker_url: str, management_url: str | None, allow_http: bool) -> BrokerDepths:
    try:
        ready = _ready_counts(broker_url, queue_names())
    except UNREACHABLE as error:
        return BrokerDepths(reachable=False, error=f"{type(error).__name__} {error}".strip())
    base = management_url or default_management_url(broker_url)
    note = None if may_send_credentials(base, allow_http=allow_http) else (
        f"Unacked counts need the management API over https ({base} is plain http; "
        "set WCH_RABBITMQ_MANAGEMENT_URL to an https address, or WCH_RABBITMQ_MANAGEMENT_ALLOW_HTTP=true)")
    unacked = _unacked_counts(broker_url, base) if note is None else None
    queues = [QueueDepth(name, ready.get(name), unacked.get(name) if unacked is not None else None) for name in ready]
    return BrokerDepths(reachable=True, management=unacked is not None, queues=queues, management_note=note)


def default_management_url(broker_url: str) -> str:
    """The management API beside the broker: https on 15671 for ``amqps``, http on 15672 for ``amqp``."""
    parts = urlsplit(broker_url)
    if parts.scheme == "amqps":
        return f"https://{parts.hostname}:{MANAGEMENT_TLS_PORT}"
    return f"http://{parts.hostname}:{MANAGEMENT_PORT}"


def may_send_credentials(url: str, *, allow_http: bool) -> bool:
    """Whether the broker's password may travel to ``url``: https, loopback, or plain http explicitly allowed."""
    parts = urlsplit(url)
    if parts.scheme == "https" or allow_http:
        return True
    host = parts.hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def broker_reachable(broker_url: str) -> str | None:
    """Why the broker cannot be reached, or None when it can (or is the stub)."""
    if broker_url.startswith("stub:"):
        return None
    try:
        _connect(broker_url).close()
    except UNREACHABLE as error:
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


def _unacked_counts(broker_url: str, base: str) -> dict[str, int] | None:
    parts = urlsplit(broker_url)
    vhost = unquote(parts.path.lstrip("/")) or "/"
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
