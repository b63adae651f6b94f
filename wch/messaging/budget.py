"""The send budget of a WhatsApp phone number: one per number, shared by every process through the database.

Each number has one row holding the next free send time (the frontier).
Whoever sends books slots from it with a compare-and-set ``UPDATE``; slots
are :data:`SPACING_ALLOWANCE` wider than ``1 / rate``, and a send that would
leave more than :data:`LAST_MOMENT` after its slot gives it up, so no
one-second window holds more than ``rate`` sends however the sends of
orders, reminders and campaigns interleave.

Priorities come from how far ahead each kind of send may book: an order
update books the frontier wherever it is; a reminder only while the
frontier is less than :data:`HORIZON` ahead of now, a campaign less than
that. So the frontier an order finds is never more than about half a second
ahead because of reminders or campaigns, reminders go before campaigns, and
a campaign takes whatever the others leave, at the full rate when alone.
"""

from __future__ import annotations

import enum
import math
import time
from collections import deque
from collections.abc import Callable

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from wch.db import db, read_only, transaction
from wch.models import SendRate
from wch.whatsapp import RetryLater

MICROS = 1_000_000
# Meta's error for a number that sends too fast as a whole.
THROUGHPUT_EXCEEDED = 130429
# Slots are this much wider than 1/rate: a window of one second then holds at most
# rate sends as long as each leaves within SPACING_ALLOWANCE seconds of its slot.
SPACING_ALLOWANCE = 0.035
# A send later than this after its slot gives the slot up before it is handed to a thread...
LATE_TOLERANCE = 0.015
# ...and later than this when its thread is about to call Meta; the rest of the allowance
# covers the way to Meta.
LAST_MOMENT = 0.02


# Until when Meta told this process to hold each number back: slots booked before the hold are given up
# here at once; other processes keep at most their already booked half second.
_held_until: dict[str, float] = {}


class Priority(enum.IntEnum):
    """Who goes first when sends compete for a number's budget: lower goes first."""

    TRANSACTIONAL = 0  # order updates
    REMINDER = 1
    CAMPAIGN = 2


# Seconds ahead of now each priority may book (None: anywhere). A campaign books at most
# CAMPAIGN_CHUNK seconds of slots at a time, so it keeps about half a second booked.
HORIZON = {Priority.TRANSACTIONAL: None, Priority.REMINDER: 0.5, Priority.CAMPAIGN: 0.3}
CAMPAIGN_CHUNK = 0.2


class SendBudget:
    """Books send times for a phone number at no more than ``rate`` a second.

    Parameters:
      sender: the WhatsApp phone number id the budget belongs to.
      rate: sends per second allowed for that number.
    """

    def __init__(self, *, sender: str, rate: int) -> None:
        self.sender = sender
        self.rate = rate
        # Rounded up: a spacing a microsecond short of the allowance would let rounding eat into it.
        self.spacing_us = math.ceil(MICROS * (1 + SPACING_ALLOWANCE) / rate)

    def book(self, count: int, priority: Priority, *, wait: bool = True) -> list[float]:
        """Book up to ``count`` send slots; returns their Unix times, earliest first.

        A campaign gets at most :data:`CAMPAIGN_CHUNK` seconds' worth per call.
        While the frontier is beyond the priority's horizon, this waits (or,
        with ``wait=False``, returns no slot). Runs its own short transactions.
        """
        if count <= 0:
            return []
        horizon = HORIZON[priority]
        if priority is Priority.CAMPAIGN:
            count = min(count, max(1, int(CAMPAIGN_CHUNK * MICROS / self.spacing_us)))
        while True:
            with read_only():
                current = db.session.scalar(select(SendRate.next_slot_us).where(SendRate.sender == self.sender))
            if current is None:
                self._create_row()
                continue
            now_us = int(time.time() * MICROS)
            start = max(current, now_us, int(_held_until.get(self.sender, 0.0) * MICROS))
            if horizon is not None and start - now_us > horizon * MICROS:
                if not wait:
                    return []
                time.sleep((start - now_us) / MICROS - horizon)
                continue
            with transaction():
                booked = db.session.execute(
                    update(SendRate)
                    .where(SendRate.sender == self.sender, SendRate.next_slot_us == current)
                    .values(next_slot_us=start + count * self.spacing_us)
                ).rowcount
            if booked == 1:
                return [(start + i * self.spacing_us) / MICROS for i in range(count)]
            # Another sender booked in between; look at the new frontier.

    def hold(self, seconds: float) -> None:
        """Keep everyone off the number for ``seconds`` from now (Meta said the rate was too high).

        Runs its own transaction.
        """
        self.hold_here(seconds)
        until = int((time.time() + seconds) * MICROS)
        with read_only():
            exists = db.session.scalar(select(SendRate.sender).where(SendRate.sender == self.sender)) is not None
        if not exists:
            self._create_row()
        with transaction():
            db.session.execute(update(SendRate).where(SendRate.sender == self.sender, SendRate.next_slot_us < until)
                               .values(next_slot_us=until))

    def hold_here(self, seconds: float) -> None:
        """Keep this process's sends off the number for ``seconds`` from now; no database involved."""
        _held_until[self.sender] = max(_held_until.get(self.sender, 0.0), time.time() + seconds)

    def on_time(self, slot: float) -> bool:
        """Whether a send for ``slot`` may still leave now: not later than the tolerance, nor inside a hold."""
        return time.time() - slot <= LATE_TOLERANCE and slot >= _held_until.get(self.sender, 0.0)

    def send(self, priority: Priority, call: Callable[[], str]) -> str:
        """Make one ``call`` (a send to Meta) in a slot of this budget, booking again if a slot was missed.

        Runs its own transactions; call it with none open.
        """
        while True:
            [slot] = self.book(1, priority)
            sleep_until(slot)
            if self.on_time(slot):
                return call()

    def _create_row(self) -> None:
        try:
            with transaction():
                db.session.add(SendRate(sender=self.sender, next_slot_us=0))
        except IntegrityError:
            pass


def sleep_until(moment: float) -> None:
    """Sleep until ``moment`` (a Unix time); at once if it has passed."""
    if (remaining := moment - time.time()) > 0:
        time.sleep(remaining)


class SlotMissed(Exception):
    """A send's slot passed before it could leave; it was not sent and goes back in line."""


def send_in_slot(budget: SendBudget, slot: float, call: Callable[[], str]) -> str:
    """Make ``call`` if ``slot`` has not passed, else raise :class:`SlotMissed` (checked as late as possible).

    When Meta answers that the number sends too fast, the thread that heard it holds this process's
    other sends back at once; the batch records the hold for every process when it reads the answer,
    which may be after the next slot.
    """
    if time.time() - slot > LAST_MOMENT or slot < _held_until.get(budget.sender, 0.0):
        raise SlotMissed(f"missed its send slot by {time.time() - slot:.3f}s")
    try:
        return call()
    except RetryLater as error:
        if error.code == THROUGHPUT_EXCEEDED:
            budget.hold_here(error.retry_after or 1.0)
        raise


class Slots:
    """The slots of a run of sends (a campaign batch), booked a chunk at a time as the budget allows.

    Parameters:
      budget: the number's budget.
      count: how many sends the run has.
      priority: the run's priority.
    """

    def __init__(self, budget: SendBudget, count: int, *, priority: Priority = Priority.CAMPAIGN) -> None:
        self.budget = budget
        self.wanted = count
        self.priority = priority
        self.queue: deque[float] = deque()

    def take(self) -> float:
        """The next slot not yet missed; books more when the budget allows, and waits only when none is left.

        A slot taken and then missed is simply gone: take another.
        """
        horizon = HORIZON[self.priority] or 0.0
        while True:
            now = time.time()
            while self.queue and now - self.queue[0] > LATE_TOLERANCE:
                self.queue.popleft()  # missed while we were busy (recording answers, a slow database): gone
            short = self.wanted - len(self.queue)
            if short > 0 and (not self.queue or self.queue[-1] - now < horizon):
                self.queue.extend(self.budget.book(short, self.priority, wait=not self.queue))
            if self.queue and self.budget.on_time(self.queue[0]):
                return self.queue.popleft()

    def due_before(self, moment: float) -> int:
        """How many of the slots already booked fall before ``moment``."""
        return sum(1 for slot in self.queue if slot < moment)

    def need_one_less(self) -> None:
        """One send of the run is settled (it went out, or it will not): book one slot fewer."""
        self.wanted -= 1

    def put_back(self, slot: float) -> None:
        """Return a slot taken but not used, for the next send."""
        self.queue.appendleft(slot)
