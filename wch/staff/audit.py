"""The audit trail: every staff action that changes something is recorded by :func:`record`.

Called by the panel and the command line inside the action's own
transaction, so an action that rolls back leaves no entry and an entry is
never missing for an action that committed.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select

from wch.db import db, utcnow
from wch.models import AuditEntry

# Every kind of action recorded, so the screen can offer them as a filter.
ACTIONS = (
    "job.retry", "job.cancel", "job.fail", "carts.cleanup",
    "campaign.create", "campaign.start", "campaign.pause", "campaign.resume", "campaign.cancel",
    "campaign.retry_failed",
    "settings.reminders",
    "user.create", "user.disable", "user.enable", "user.delete", "user.set_role", "user.reset_password",
    "contact.opt_out", "contact.opt_in",
)


def record(action: str, *, actor: str, target: str | None = None, address: str | None = None,
           details: dict[str, Any] | None = None) -> AuditEntry:
    """Add an entry for ``action`` by ``actor`` on ``target``. The caller commits, with the action."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    entry = AuditEntry(at=utcnow(), actor=actor[:254], action=action, target=(target or None) and target[:200],
                       address=(address or None) and address[:64], details=details or {})
    db.session.add(entry)
    return entry


def entries(*, action: str | None = None, actor: str | None = None, since: datetime | None = None,
            limit: int = 100) -> Sequence[AuditEntry]:
    """The newest entries first, optionally of one action, one actor, or since a time."""
    query = select(AuditEntry)
    if action:
        query = query.where(AuditEntry.action == action)
    if actor:
        query = query.where(AuditEntry.actor == actor)
    if since is not None:
        query = query.where(AuditEntry.at >= since)
    return list(db.session.scalars(query.order_by(AuditEntry.at.desc(), AuditEntry.id.desc()).limit(limit)))
