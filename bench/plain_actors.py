"""The baseline for the core benchmark: a plain Dramatiq actor, no ledger.

Run with ``dramatiq bench.plain_actors``. ``BENCH_BROKER_URL`` names the
RabbitMQ virtual host; each run appends one byte to ``BENCH_COUNTER``, so the
benchmark counts completions by the file's size without a database.
"""

from __future__ import annotations

import os

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker

QUEUE = "plain"

broker = RabbitmqBroker(url=os.environ["BENCH_BROKER_URL"], confirm_delivery=True)
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name=QUEUE)
def plain_noop(n: int = 0) -> int:
    # One O_APPEND write per job: atomic across threads and far cheaper than the job's messaging.
    fd = os.open(os.environ["BENCH_COUNTER"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, b".")
    finally:
        os.close(fd)
    return n
