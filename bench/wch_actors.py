"""The no-op job the core benchmark runs through wch: ``dramatiq bench.wch_actors``.

It is declared on wch's broker, so it runs with all of wch's middleware
(ledger, retries, app context) like any real job.
"""

from __future__ import annotations

import wch.actors  # noqa: F401  (sets up wch's broker before this actor is declared)
from wch.jobs import JobType, job_actor

QUEUE = "bench"
BENCH_NOOP = JobType("bench_noop", queue=QUEUE)


@job_actor(BENCH_NOOP)
def bench_noop(n: int = 0) -> int:
    return n
