"""Retry failed jobs on a fixed schedule rather than exponential backoff."""

from __future__ import annotations

from dramatiq.common import current_millis
from dramatiq.errors import BrokerConnectionError, Retry
from dramatiq.middleware import Retries

from wch.jobs.messages import RETRY_AT, RETRY_UNPUBLISHED
from wch.jobs.middleware.ledger import LedgerUnavailable


class FixedRetries(Retries):
    """Retries a failed job after each delay of a fixed schedule, then fails it.

    Parameters:
      delays: seconds to wait before each retry; their count is the number of
        retries after the first attempt. An actor may set its own schedule
        with the ``retry_delays`` option (``()`` for none).

      max_delay: the longest delay, in seconds, RabbitMQ may hold a retry
        (Dramatiq keeps delayed messages unacked, and RabbitMQ's
        ``consumer_timeout`` closes channels that hold one too long); a later
        retry is left to the outbox relay, which publishes it nearer the time.

    Exceptions listed in an actor's ``throws`` option fail at once. A job the
    ledger could not claim (:class:`LedgerUnavailable`) did not run: the
    ledger sends it back itself, and no retry is spent. The time of
    the next attempt is left in ``message.options`` for the ledger. When the
    retry is not published (too far off, or RabbitMQ went away) the message is
    flagged so the ledger leaves the job in the outbox for the relay.
    """

    def __init__(self, *, delays: tuple[float, ...], max_delay: float | None = None) -> None:
        super().__init__(max_retries=len(delays))
        self.delays = tuple(delays)
        self.max_delay = max_delay

    @property
    def actor_options(self) -> set[str]:
        return super().actor_options | {"retry_delays"}

    def after_process_message(self, broker, message, *, result=None, exception=None) -> None:
        if exception is None or isinstance(exception, LedgerUnavailable):
            return
        message.options.pop(RETRY_AT, None)
        message.options.pop(RETRY_UNPUBLISHED, None)
        actor = broker.get_actor(message.actor_name)
        throws = message.options.get("throws") or actor.options.get("throws")
        if throws and isinstance(exception, throws):
            self.logger.info(
                "Job %s failed with %s, which retrying cannot fix.", message.message_id, type(exception).__name__
            )
            message.fail()
            return

        delays = actor.options.get("retry_delays", self.delays)
        retries = message.options.setdefault("retries", 0)
        if retries >= len(delays):
            self.logger.warning("Job %s failed after %d attempts.", message.message_id, retries + 1)
            message.fail()
            return

        if isinstance(exception, Retry) and exception.delay is not None:
            delay = int(exception.delay)
        else:
            delay = int(delays[retries] * 1000)
        message.options["retries"] = retries + 1
        message.options[RETRY_AT] = current_millis() + delay
        if self.max_delay is not None and delay > self.max_delay * 1000:
            self.logger.info("Job %s will be retried in %d s, by the outbox relay.", message.message_id, delay // 1000)
            message.options[RETRY_UNPUBLISHED] = True
            return
        try:
            broker.enqueue(message, delay=delay)
        except (BrokerConnectionError, ValueError):
            # pika raises ValueError, not a connection error, when the socket is
            # reset during its handshake (a proxy or load balancer with RabbitMQ gone).
            self.logger.warning("Could not publish the retry of job %s; the outbox relay will.", message.message_id)
            message.options[RETRY_UNPUBLISHED] = True
        else:
            self.logger.info("Retrying job %s in %d ms.", message.message_id, delay)
