"""The no-op job the core benchmark runs through wch: ``dramatiq bench.wch_actors``.

It is declared on wch's broker, so it runs with all of wch's middleware
(ledger, retries, app context) like any real job.
"""

from __future__ import annotations

import dramatiq

import wch.actors  # noqa: F401  (sets up wch's broker before this actor is declared)

QUEUE = "bench"


@dramatiq.actor(queue_name=QUEUE)
def bench_noop(n: int = 0) -> int:
    return n
