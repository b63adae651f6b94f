"""The no-op job the core benchmark runs through wch: ``dramatiq bench.wch_actors``.

It is declared on wch's broker, so it runs with all of wch's middleware
(ledger, retries, app context) like any real job. Like the plain baseline's,
each run appends one byte to ``BENCH_COUNTER``.
"""

from __future__ import annotations

import os

import wch.actors  # noqa: F401  (sets up wch's broker before this actor is declared)
from wch.jobs import JobType, job_actor

QUEUE = "bench"
BENCH_NOOP = JobType("bench_noop", queue=QUEUE)


@job_actor(BENCH_NOOP)
def bench_noop(n: int = 0) -> int:
    fd = os.open(os.environ["BENCH_COUNTER"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, b".")
    finally:
        os.close(fd)
    return n
