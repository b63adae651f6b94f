"""What may happen to a job of a given type when its attempt was interrupted: its actor's options, read in one place.

An attempt is interrupted when its worker died or stopped heart-beating, or it
ran far past its time limit: it may have done some or all of its work. Only a
type declared ``safe_to_repeat=True`` (running it twice does no harm, because
its domain rows make a second run a no-op) is run again; any other is failed
with "interrupted; not retried because it may have run", for staff to decide.
"""

from __future__ import annotations

from dataclasses import dataclass

import dramatiq
from dramatiq.errors import ActorNotFound
from dramatiq.middleware import Retries, TimeLimit

SAFE_TO_REPEAT = "safe_to_repeat"


@dataclass(frozen=True)
class RepeatPolicy:
    """How a job type may be repeated.

    Parameters:
      safe_to_repeat: whether running it again after an interrupted attempt is harmless.
      retries: how many retries its schedule allows after the first attempt.
      time_limit: seconds an attempt may run before Dramatiq stops it.
    """

    safe_to_repeat: bool
    retries: int
    time_limit: float


def repeat_policy(type: str, broker: dramatiq.Broker | None = None) -> RepeatPolicy:
    """The policy of ``type``'s actor on ``broker`` (by default Dramatiq's global one).

    A type no actor runs any more is not safe to repeat.
    """
    broker = broker or dramatiq.get_broker()
    retries = next((m for m in broker.middleware if isinstance(m, Retries)), None)
    limit = next((m for m in broker.middleware if isinstance(m, TimeLimit)), None)
    # wch's FixedRetries keeps its schedule in ``delays``.
    default_delays = getattr(retries, "delays", ())
    default_limit = limit.time_limit if limit is not None else 600_000
    try:
        options = broker.get_actor(type).options
    except ActorNotFound:
        return RepeatPolicy(False, len(default_delays), default_limit / 1000)
    return RepeatPolicy(
        safe_to_repeat=bool(options.get(SAFE_TO_REPEAT, False)),
        retries=len(options.get("retry_delays", default_delays)),
        time_limit=options.get("time_limit", default_limit) / 1000,
    )


def interrupted_error(safe_to_repeat: bool, why: str) -> str:
    """What an interrupted attempt that is not run again records as its job's error."""
    if safe_to_repeat:
        return f"interrupted ({why}); no retries left"
    return f"interrupted; not retried because it may have run ({why})"
