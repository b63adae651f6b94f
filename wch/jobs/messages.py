"""What the dispatcher, the outbox, the publisher and the worker middleware agree on about a job's message.

Options carried by a message (set by wch, read by its middleware), the digest
of a job's arguments and :class:`JobCopy`, what publishing a job needs, live
here, below all of them, so none of them has to import another for them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import dramatiq

# The ledger's attempt count when this copy was published (0 for a fresh
# dispatch). It tells a job's current copy from stale duplicates.
ATTEMPT = "wch_attempt"
# When a failed job's next attempt is due (Unix milliseconds), for the ledger.
RETRY_AT = "wch_retry_at"
# The retry was not handed to RabbitMQ (too far off, or the broker was away): the relay publishes it.
RETRY_UNPUBLISHED = "wch_retry_unpublished"
# How many times in a row the worker could not claim the job (database unreachable): drives the
# claim's own backoff, so an outage spends none of the job's retries.
CLAIM_FAILURES = "wch_claim_failures"
# A copy of a running attempt that RabbitMQ redelivered, sent back by the ledger to look again later
# whether that attempt's worker is still alive (RabbitMQ's own redelivered flag is not kept on a new copy).
REDELIVERED = "wch_redelivered"


def args_digest(type: str, args: dict[str, Any]) -> str:
    """A fingerprint of a job type and its arguments, for "is the same job already pending?"."""
    canonical = json.dumps([type, args], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class JobCopy:
    """One copy of a job's message to publish, with what building it needs from the job's row.

    Parameters:
      id, type, queue, args, enqueued_at: the job's.
      eta: when it is due (``None``: now).
      attempt: the job's attempt count when this copy is published.
      retries: retries of the job's current schedule already spent.
    """

    id: str
    type: str
    queue: str
    args: dict[str, Any]
    eta: datetime | None
    enqueued_at: datetime
    attempt: int = 0
    retries: int = 0

    def message(self) -> dramatiq.Message:
        options: dict[str, Any] = {ATTEMPT: self.attempt}
        if self.retries:
            options["retries"] = self.retries
        return dramatiq.Message(
            queue_name=self.queue,
            actor_name=self.type,
            args=(),
            kwargs=self.args,
            options=options,
            message_id=self.id,
            message_timestamp=int(self.enqueued_at.timestamp() * 1000),
        )

    def delay_ms(self, now: datetime) -> int | None:
        """How long RabbitMQ should hold it, or ``None`` when it is due."""
        if self.eta is None or self.eta <= now:
            return None
        return int((self.eta - now).total_seconds() * 1000)
