"""A campaign's recipients move between statuses only here, and the campaign's counters follow each move.

Counters change by ``SET n = n + d`` in the same statement's transaction, so
concurrent batches and status webhooks never lose a count.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, update

from wch.db import db, utcnow
from wch.models import Campaign, Recipient, RecipientStatus
from wch.models.campaigns import COUNTERS

# Put on every campaign message; Meta echoes it in status webhooks, so a recipient is found even without its wamid.
CALLBACK_PREFIX = "wch:recipient:"

_S = RecipientStatus
# Which counters a recipient in each status counts towards.
_COUNTED_IN = {
    _S.PENDING.value: set(),
    _S.SENDING.value: set(),
    _S.SENT.value: {"sent"},
    _S.DELIVERED.value: {"sent", "delivered"},
    _S.READ.value: {"sent", "delivered", "read"},
    _S.FAILED.value: {"failed"},
    _S.SKIPPED.value: {"skipped"},
}


def callback_data(recipient_id: int) -> str:
    return f"{CALLBACK_PREFIX}{recipient_id}"


def move_recipients(
    campaign_id: int,
    sources: Iterable[RecipientStatus | str],
    target: RecipientStatus | str,
    *,
    where: ColumnElement[bool] | None = None,
    values: dict[str, Any] | None = None,
) -> int:
    """Move a campaign's recipients in one of ``sources`` (and matching ``where``) to ``target``.

    Counters follow from how many rows actually moved from each source, so a
    move that lost a race to another one (a webhook, a second worker) counts
    nothing. The caller commits. Returns how many moved.
    """
    target = str(target)
    moved = 0
    deltas = dict.fromkeys(COUNTERS, 0)
    for source in map(str, sources):
        statement = update(Recipient).where(Recipient.campaign_id == campaign_id, Recipient.status == source)
        if where is not None:
            statement = statement.where(where)
        count = db.session.execute(
            statement.values(status=target, **(values or {})).execution_options(synchronize_session=False)
        ).rowcount
        if count:
            moved += count
            for counter in COUNTERS:
                deltas[counter] += count * ((counter in _COUNTED_IN[target]) - (counter in _COUNTED_IN[source]))
    add_to_counters(campaign_id, deltas)
    return moved


def add_to_counters(campaign_id: int, deltas: dict[str, int]) -> None:
    changes = {name: getattr(Campaign, name) + delta for name, delta in deltas.items() if delta}
    if changes:
        db.session.execute(
            update(Campaign).where(Campaign.id == campaign_id).values(**changes)
            .execution_options(synchronize_session=False)
        )


def retry_at(attempts: int, *, delays: tuple[float, ...], retry_after: float | None = None) -> datetime:
    """When a recipient whose send failed retryably is tried again, after ``attempts`` tries."""
    delay = delays[min(attempts, len(delays)) - 1] if delays else 0
    return utcnow() + timedelta(seconds=max(delay, retry_after or 0))
