"""Hand jobs' messages to RabbitMQ off the caller's path, with publisher confirms pipelined.

A web request or a command commits its jobs and hands them to the process's
:class:`BackgroundPublisher`, which publishes them from a thread of its own and
returns at once: the request pays for its commit, not for RabbitMQ's round
trip. Every copy is confirmed by RabbitMQ (``confirm_delivery``), but the
thread does not wait for one confirm before sending the next, so a thousand
copies cost about one round trip, not a thousand. A copy RabbitMQ refuses,
or that was in flight when the connection failed, goes to the caller's
``on_failed`` callback, which puts it back in the outbox for the relay.

pika's blocking channel waits for each confirm, so the thread runs pika's
asynchronous connection on an I/O loop of its own; other threads only ever
append to a queue and wake the loop (``add_callback_threadsafe``).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Protocol

import dramatiq
import pika
from dramatiq.brokers.rabbitmq import DEAD_MESSAGE_TTL
from dramatiq.common import current_millis, dq_name, q_name, xq_name
from pika import spec
from pika.adapters.select_connection import IOLoop

from wch.db import utcnow
from wch.jobs.messages import JobCopy

logger = logging.getLogger(__name__)

# The thread wakes at most this often (seconds) for copies handed over one by one, and publishes what
# gathered meanwhile together: each wake-up of the I/O loop costs more CPU than publishing a copy, and
# a job reaching RabbitMQ 10 ms later changes nothing.
LINGER = 0.01

OnFailed = Callable[[list[JobCopy]], None]


class Handoff:
    """Copies handed to a publisher; :meth:`wait` tells how many RabbitMQ confirmed.

    Parameters:
      count: how many copies were handed over.
      on_failed: called once, from the publisher's thread, with the copies that
        did not reach RabbitMQ, when every copy is settled.
    """

    def __init__(self, count: int, on_failed: OnFailed | None) -> None:
        self._remaining = count
        self._failed: list[JobCopy] = []
        self._on_failed = on_failed
        self._lock = threading.Lock()
        self._done = threading.Event()
        self.confirmed = 0
        if not count:
            self._done.set()

    def settle(self, copy: JobCopy, *, ok: bool) -> None:
        with self._lock:
            if ok:
                self.confirmed += 1
            else:
                self._failed.append(copy)
            self._remaining -= 1
            finished = self._remaining == 0
        if finished:
            if self._failed and self._on_failed is not None:
                try:
                    self._on_failed(self._failed)
                except Exception:
                    # The rows stay marked published: the lifeline publishes them again later.
                    logger.exception("Could not put %d unpublished job(s) back in the outbox.", len(self._failed))
            self._done.set()

    @property
    def failed(self) -> list[JobCopy]:
        return list(self._failed)

    def wait(self, timeout: float | None = None) -> int:
        """Wait until every copy is confirmed or failed (at most ``timeout`` s); return how many were confirmed."""
        self._done.wait(timeout)
        return self.confirmed


class Publisher(Protocol):
    """Where the outbox hands jobs to: :class:`BackgroundPublisher`, or :class:`BrokerPublisher` in one process."""

    def publish(self, copies: Sequence[JobCopy], *, on_failed: OnFailed | None = None) -> Handoff: ...

    def close(self) -> None: ...


class BrokerPublisher:
    """Publishes through a Dramatiq broker, one copy at a time, before returning.

    Parameters:
      broker: the broker (Dramatiq's in-memory StubBroker, for one process:
        the tests and ``wch up --in-process``).
    """

    def __init__(self, broker: dramatiq.Broker) -> None:
        self.broker = broker

    def publish(self, copies: Sequence[JobCopy], *, on_failed: OnFailed | None = None) -> Handoff:
        handoff = Handoff(len(copies), on_failed)
        now = utcnow()
        for copy in copies:
            try:
                self.broker.enqueue(copy.message(), delay=copy.delay_ms(now))
            except Exception:
                logger.warning("Could not publish job %s.", copy.id, exc_info=True)
                handoff.settle(copy, ok=False)
            else:
                handoff.settle(copy, ok=True)
        return handoff

    def close(self) -> None:
        """The broker is not this publisher's to close."""


class BackgroundPublisher:
    """Publishes to RabbitMQ from a thread of its own, with pipelined publisher confirms.

    Parameters:
      url: the RabbitMQ URL (``amqp://`` or ``amqps://``).
      reconnect_delay: seconds to wait after a failed connection before trying
        again; copies handed over meanwhile fail at once, for the relay.
      close_timeout: seconds :meth:`close` (run at exit) waits for copies still
        unconfirmed.

    The thread and its connection start with the first :meth:`publish` in a
    process, so a process forked from one that published gets its own.
    """

    def __init__(self, url: str, *, reconnect_delay: float = 1.0, close_timeout: float = 10.0) -> None:
        self.parameters = pika.URLParameters(url)
        self.reconnect_delay = reconnect_delay
        self.close_timeout = close_timeout
        self._start_lock = threading.Lock()
        self._pid: int | None = None
        self._reset()
        atexit.register(self.close)

    def _reset(self) -> None:
        self._incoming: deque[tuple[JobCopy, Handoff]] = deque()
        self._ioloop: IOLoop | None = None
        self._thread: threading.Thread | None = None
        self._connection: pika.SelectConnection | None = None
        self._channel = None
        self._ready = False
        self._failed_at = 0.0
        self._declared: set[str] = set()
        self._declaring: set[str] = set()
        self._waiting: list[tuple[JobCopy, Handoff]] = []  # for their queue to be declared
        self._unconfirmed: dict[int, tuple[JobCopy, Handoff]] = {}
        self._in_order: deque[int] = deque()  # the unconfirmed delivery tags, oldest first
        self._drain_scheduled = False
        self._returned: set[str] = set()
        self._next_tag = 0
        self._idle = threading.Condition()
        self._closing = False

    # -- any thread ------------------------------------------------------------------------------

    def publish(self, copies: Sequence[JobCopy], *, on_failed: OnFailed | None = None) -> Handoff:
        """Hand ``copies`` over and return at once; they are published in the order given."""
        handoff = Handoff(len(copies), on_failed)
        if not copies:
            return handoff
        ioloop = self._started()
        for copy in copies:
            self._incoming.append((copy, handoff))
        if not self._drain_scheduled:
            # The drain clears the flag before it takes what came in, so nothing handed over is left behind.
            self._drain_scheduled = True
            ioloop.add_callback_threadsafe(self._schedule_drain)
        return handoff

    def close(self) -> None:
        """Wait (at most ``close_timeout`` s) for what was handed over, then close the connection."""
        if self._thread is None or self._pid != os.getpid():
            return
        deadline = time.monotonic() + self.close_timeout
        with self._idle:
            while (self._incoming or self._waiting or self._unconfirmed) and time.monotonic() < deadline:
                self._idle.wait(0.05)
        self._closing = True
        self._ioloop.add_callback_threadsafe(self._shut_down)
        self._thread.join(self.close_timeout)
        with self._start_lock:
            self._reset()

    def _started(self) -> IOLoop:
        with self._start_lock:
            if self._thread is None or self._pid != os.getpid():
                self._reset()
                self._pid = os.getpid()
                self._ioloop = IOLoop()
                self._thread = threading.Thread(target=self._run, name="wch-publisher", daemon=True)
                self._thread.start()
            return self._ioloop

    # -- the publisher's thread ------------------------------------------------------------------

    def _run(self) -> None:
        """Run the I/O loop; an error escaping it (pika raises ValueError for a socket reset during its
        handshake) fails what was in hand and starts the loop again, rather than ending the thread."""
        while True:
            try:
                self._ioloop.start()
                return
            except Exception:
                logger.exception("The publisher's I/O loop failed; jobs in hand go back to the outbox.")
                connection = self._connection
                self._on_connection_lost(connection, "the I/O loop failed")
                if connection is not None and connection.is_open:
                    with contextlib.suppress(Exception):
                        connection.close()
                if self._closing:
                    return

    def _schedule_drain(self) -> None:
        self._ioloop.call_later(LINGER, self._drain)

    def _drain(self) -> None:
        self._drain_scheduled = False
        if self._closing and self._connection is None:
            self._fail_all(self._take_incoming())
            return
        if not self._ready:
            if self._connection is None:
                if time.monotonic() - self._failed_at < self.reconnect_delay:
                    self._fail_all(self._take_incoming())
                else:
                    self._connect()
            return
        for copy, handoff in self._take_incoming():
            self._send(copy, handoff)
        self._notify_idle()

    def _take_incoming(self) -> list[tuple[JobCopy, Handoff]]:
        taken = []
        while self._incoming:
            taken.append(self._incoming.popleft())
        return taken

    def _send(self, copy: JobCopy, handoff: Handoff) -> None:
        queue = copy.queue
        if queue not in self._declared:
            self._waiting.append((copy, handoff))
            self._declare(queue)
            return
        message = copy.message()
        delay = copy.delay_ms(utcnow())
        routing_key = queue
        if delay is not None:
            routing_key = dq_name(queue)
            message = message.copy(queue_name=routing_key, options={"eta": current_millis() + delay})
        try:
            self._channel.basic_publish(
                exchange="",
                routing_key=routing_key,
                body=message.encode(),
                properties=pika.BasicProperties(delivery_mode=2, priority=message.options.get("broker_priority")),
                # Returned, not dropped, when its queue is missing: counted as a failure below.
                mandatory=True,
            )
        except Exception:
            logger.warning("Could not publish job %s.", copy.id, exc_info=True)
            handoff.settle(copy, ok=False)
            return
        self._next_tag += 1
        self._unconfirmed[self._next_tag] = (copy, handoff)
        self._in_order.append(self._next_tag)

    def _declare(self, queue: str) -> None:
        # The same queues, with the same arguments, as Dramatiq's RabbitmqBroker
        # declares: RabbitMQ refuses a redeclaration with different arguments.
        if queue in self._declaring:
            return
        self._declaring.add(queue)
        arguments = {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": xq_name(queue)}
        steps = [
            (queue, arguments),
            (dq_name(queue), arguments),
            (xq_name(queue), {"x-message-ttl": DEAD_MESSAGE_TTL}),
        ]

        def declare_next(_frame=None) -> None:
            if not steps:
                self._declaring.discard(queue)
                self._declared.add(queue)
                waiting, self._waiting = self._waiting, []
                for item in waiting:
                    self._send(*item)
                self._notify_idle()
                return
            name, args = steps.pop(0)
            self._channel.queue_declare(queue=name, durable=True, arguments=args, callback=declare_next)

        declare_next()

    def _connect(self) -> None:
        self._connection = pika.SelectConnection(
            parameters=self.parameters,
            on_open_callback=self._on_connection_open,
            on_open_error_callback=self._on_connection_lost,
            on_close_callback=self._on_connection_lost,
            custom_ioloop=self._ioloop,
        )

    def _on_connection_open(self, connection) -> None:
        connection.channel(on_open_callback=self._on_channel_open)

    def _on_channel_open(self, channel) -> None:
        self._channel = channel
        self._next_tag = 0  # a channel numbers its deliveries from 1
        self._in_order.clear()
        channel.add_on_close_callback(self._on_channel_closed)
        channel.add_on_return_callback(self._on_return)
        channel.confirm_delivery(ack_nack_callback=self._on_confirm, callback=self._on_confirm_mode)

    def _on_confirm_mode(self, _frame) -> None:
        self._ready = True
        self._drain()

    def _on_return(self, _channel, method, _properties, _body) -> None:
        # An unroutable copy is returned before it is confirmed; declare its queue again next time.
        self._declared.discard(q_name(method.routing_key))
        self._returned.add(method.routing_key)
        logger.warning("RabbitMQ returned a message for %s (%s).", method.routing_key, method.reply_text)

    def _on_confirm(self, frame) -> None:
        method = frame.method
        ok = isinstance(method, spec.Basic.Ack)
        tags = [method.delivery_tag]
        if method.multiple:
            tags = []
            while self._in_order and self._in_order[0] <= method.delivery_tag:
                tags.append(self._in_order.popleft())
        returned = self._returned
        self._returned = set()
        for tag in tags:
            item = self._unconfirmed.pop(tag, None)
            if item is not None:
                copy, handoff = item
                routed = copy.queue not in returned and dq_name(copy.queue) not in returned
                handoff.settle(copy, ok=ok and routed)
        self._notify_idle()

    def _on_channel_closed(self, _channel, reason) -> None:
        if not self._closing:
            logger.warning("RabbitMQ closed the publisher's channel: %s", reason)
        if self._connection is not None and self._connection.is_open:
            self._connection.close()

    def _on_connection_lost(self, _connection, reason) -> None:
        if not self._closing:
            logger.warning("The publisher lost RabbitMQ (%s); jobs not confirmed go back to the outbox.", reason)
        self._connection = self._channel = None
        self._ready = False
        self._failed_at = time.monotonic()
        self._declaring.clear()
        self._returned = set()
        lost = list(self._unconfirmed.values()) + self._waiting + self._take_incoming()
        self._unconfirmed, self._waiting = {}, []
        self._in_order.clear()
        self._fail_all(lost)
        if self._closing:
            self._ioloop.stop()

    def _fail_all(self, items: list[tuple[JobCopy, Handoff]]) -> None:
        for copy, handoff in items:
            handoff.settle(copy, ok=False)
        self._notify_idle()

    def _notify_idle(self) -> None:
        with self._idle:
            self._idle.notify_all()

    def _shut_down(self) -> None:
        if self._connection is not None and (self._connection.is_open or self._connection.is_opening):
            self._connection.close()  # _on_connection_lost stops the loop
        else:
            self._fail_all(self._take_incoming())
            self._ioloop.stop()
