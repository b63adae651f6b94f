"""What the dispatcher, the outbox and the worker middleware agree on about a job's message.

Options carried by a message (set by wch, read by its middleware) and the
digest of a job's arguments live here, below all three, so none of them has
to import another for them.
"""

from __future__ import annotations

import hashlib
import json
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


def args_digest(type: str, args: dict[str, Any]) -> str:
    """A fingerprint of a job type and its arguments, for "is the same job already pending?"."""
    canonical = json.dumps([type, args], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def job_message(
    *, id: str, type: str, queue: str, args: dict[str, Any], enqueued_at: datetime, attempt: int, retries: int
) -> dramatiq.Message:
    """The Dramatiq message of a job's next attempt: ``retries`` of its schedule are spent already."""
    options: dict[str, Any] = {ATTEMPT: attempt}
    if retries:
        options["retries"] = retries
    return dramatiq.Message(
        queue_name=queue,
        actor_name=type,
        args=(),
        kwargs=args,
        options=options,
        message_id=id,
        message_timestamp=int(enqueued_at.timestamp() * 1000),
    )
