"""WhatsApp's send rate, shared by every campaign, process and machine through the database.

Each sending phone number has one row holding its next free send slot. A
batch reserves its slots with one compare-and-set ``UPDATE``; slots are spaced
evenly, so the sends of two campaigns interleave instead of each taking the
whole rate. Spacing is ``(1 + JITTER_ALLOWANCE) / rate`` seconds: a request
may leave a little late after its slot, and the allowance keeps any real
one-second window at or under the cap despite that.
"""

from __future__ import annotations

import time

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from wch.db import db, transaction
from wch.models import SendRate

JITTER_ALLOWANCE = 0.15
MICROS = 1_000_000


class SendRateLimiter:
    """Hands out send times for a phone number at no more than ``rate`` a second.

    Parameters:
      sender: the WhatsApp phone number id the limit belongs to.
      rate: sends per second allowed for that number.
    """

    def __init__(self, *, sender: str, rate: int) -> None:
        self.sender = sender
        self.rate = rate
        self.spacing_us = int(MICROS * (1 + JITTER_ALLOWANCE) / rate)

    def reserve(self, count: int) -> list[float]:
        """Reserve ``count`` send slots; returns their Unix times, earliest first.

        Runs its own short transactions.
        """
        if count <= 0:
            return []
        while True:
            with transaction():
                current = db.session.scalar(select(SendRate.next_slot_us).where(SendRate.sender == self.sender))
                if current is None:
                    self._create_row()
                    continue
                start = max(current, int(time.time() * MICROS))
                updated = db.session.execute(
                    update(SendRate)
                    .where(SendRate.sender == self.sender, SendRate.next_slot_us == current)
                    .values(next_slot_us=start + count * self.spacing_us)
                ).rowcount
            if updated == 1:
                return [(start + i * self.spacing_us) / MICROS for i in range(count)]
            # Another process reserved in between; read the new next slot and try again.

    def _create_row(self) -> None:
        try:
            with db.session.begin_nested():
                db.session.add(SendRate(sender=self.sender, next_slot_us=0))
        except IntegrityError:
            pass
