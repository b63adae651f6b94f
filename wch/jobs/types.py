"""Job types: each named once, where the code that dispatches it lives, and declared as an actor from that name."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dramatiq


@dataclass(frozen=True)
class JobType:
    """A kind of job.

    Parameters:
      name: the actor's name, which the ledger, the panel and the command line
        show: a verb for what the job does (``sync_product``).
      queue: the RabbitMQ queue its messages go to.
      subject: what a job of this type is about, as a template over its
        arguments (``"order:{store_id}"``); stored on the job so staff find
        the jobs of an order, a product or a cart by index.
    """

    name: str
    queue: str
    subject: str | None = None

    def __str__(self) -> str:
        return self.name

    def subject_of(self, args: dict[str, Any]) -> str | None:
        """The subject of a job with ``args``, or None when the type has none or an argument is missing."""
        if self.subject is None:
            return None
        try:
            return self.subject.format_map(args)[:100]
        except (KeyError, IndexError, ValueError, AttributeError):
            return None


def job_actor(job_type: JobType, **options: Any) -> Callable[[Callable[..., Any]], dramatiq.Actor]:
    """Declare the function below as the actor that runs ``job_type``; ``options`` are Dramatiq's actor options."""
    return dramatiq.actor(actor_name=job_type.name, queue_name=job_type.queue, **options)
