"""Claims that make periodic work run once per slot, however many schedulers fire."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.exc import IntegrityError

from wch.db import db, utcnow
from wch.models import ScheduleSlot


def hour_slot(now: datetime | None = None) -> str:
    return (now or utcnow()).strftime("%Y-%m-%dT%H")


def minute_slot(now: datetime | None = None) -> str:
    return (now or utcnow()).strftime("%Y-%m-%dT%H:%M")


def claim_slot(name: str, slot: str) -> bool:
    """Claim ``name`` for ``slot``; only the first caller, in any process, gets True.

    The claim belongs to the caller's transaction: commit it together with the
    jobs it guards, so a crash in between leaves neither (a concurrent claimer
    waits for that commit, then gets False).
    """
    try:
        with db.session.begin_nested():
            db.session.add(ScheduleSlot(name=name, slot=slot, claimed_at=utcnow()))
    except IntegrityError:
        return False
    return True
