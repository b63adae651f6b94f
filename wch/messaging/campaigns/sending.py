"""Sending one batch of a campaign: claim, pace, send concurrently, record each result at once.

A batch claims the next due pending recipients of its campaign with one
conditional ``UPDATE`` (two workers never get the same row), no more than
WhatsApp's messaging limit has room for (:mod:`wch.messaging.limits`), books
their send slots from the number's shared budget
(:class:`~wch.messaging.budget.SendBudget`, at campaign priority), and just
before each slot marks one recipient ``sending`` (committed) before handing
its request to a thread pool. So a recipient whose worker dies is either still
``pending`` with a stale claim (never tried: released and sent later) or
``sending`` (maybe sent: marked for attention, never resent automatically).

The claim is the batch job's id: when RabbitMQ redelivers the job of a dead
worker, the new run recognises its predecessor's rows by it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

from sqlalchemy import func, or_, select, update

from wch.config import Settings
from wch.db import db, read_only, transaction, utcnow
from wch.jobs import release_key
from wch.messaging import limits, standing
from wch.messaging.budget import THROUGHPUT_EXCEEDED, SendBudget, SlotMissed, Slots, send_in_slot, sleep_until
from wch.messaging.campaigns.lifecycle import dispatch_batch, pause_for_error, start_if_due
from wch.messaging.campaigns.message import CampaignMessage, Target
from wch.messaging.campaigns.recipients import move_recipients, retry_at
from wch.messaging.messages import LEFT_SENDING
from wch.models import Campaign, CampaignStatus, Contact, Recipient, RecipientStatus
from wch.redact import redact_text
from wch.whatsapp import ConfigurationError, RetryLater, StopSending, WhatsAppClient, WhatsAppError

logger = logging.getLogger(__name__)

_S = RecipientStatus
# A recipient is marked sending this long before its slot, so its send leaves on time.
PREPARE_AHEAD = 0.05
# A batch dispatches the next one this long before the next may begin sending: time enough,
# on a busy machine, for its job to reach a worker and claim its recipients.
SUCCESSOR_LEAD = 0.5
WAITING_FOR_LIMIT = "waiting for WhatsApp's messaging limit"
PAIR_RATE_LIMIT = 131056
# Meta lets a business message the same customer about once every few seconds.
PAIR_RATE_PAUSE = 6.0

_pool_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None


@dataclass
class BatchOutcome:
    """What one batch did, and when (if at all) the next one should run."""

    claimed: int = 0
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    retry_later: int = 0
    attention: int = 0
    waiting_for_limit: float | None = None  # seconds until WhatsApp's messaging limit has room again
    next_delay: float | None = None
    finished: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _send_pool(size: int) -> ThreadPoolExecutor:
    """The process's threads for concurrent sends, shared by every batch it runs."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=size, thread_name_prefix="wch-send")
        return _pool


def run_batch(campaign_id: int, *, claim: str, client: WhatsAppClient, settings: Settings,
              not_before: float | None = None) -> BatchOutcome:
    """Send the next batch of ``campaign_id`` and dispatch the one after it; ``claim`` is the batch job's id.

    The batch claims its recipients at once but sends nothing before
    ``not_before`` (a Unix time). It dispatches the next batch
    :data:`SUCCESSOR_LEAD` before ``WCH_BROADCAST_BATCH_INTERVAL`` has passed
    since it began sending, to begin sending when the interval has passed,
    and hands it its dedupe key: the next batch claims its recipients while
    this one sends its last, so the number's send budget (which paces both)
    sees no gap between them. When nothing more is due, what comes next is
    decided after the last answer. Runs its own transactions.
    """
    outcome = BatchOutcome()
    with transaction():
        _settle_previous_run(claim, outcome)
        status = db.session.scalar(select(Campaign.status).where(Campaign.id == campaign_id))
        if status == CampaignStatus.SCHEDULED.value:
            # A start scheduled within the broker's delay limit: this delayed batch begins it.
            start_if_due(campaign_id, hold=standing.start_hold(client.sender))
            status = db.session.scalar(select(Campaign.status).where(Campaign.id == campaign_id))
    if status != CampaignStatus.SENDING.value:
        outcome.finished = True
        return outcome

    now = time.time()
    # Set by the batch before, perhaps on another machine: a clock behind that one's never holds this one
    # back longer than the interval.
    begins = min(max(now, not_before or 0.0), now + settings.broadcast_batch_interval)
    next_begins = begins + settings.broadcast_batch_interval
    tried_early = False

    def dispatch_next_if_due(*, last: bool) -> None:
        nonlocal tried_early
        if tried_early or outcome.next_delay is not None or (not last and time.time() < next_begins - SUCCESSOR_LEAD):
            return
        tried_early = True
        if not _stopped(campaign_id) and _due_now(campaign_id):
            _dispatch_next(campaign_id, outcome, max(next_begins - SUCCESSOR_LEAD - time.time(), 0),
                           not_before=next_begins, handing_over=claim)

    try:
        batch = _claim(campaign_id, claim, settings.broadcast_batch_size, outcome,
                       sender=client.sender, messaging_limit=settings.messaging_limit)
        if batch:
            sleep_until(begins)
            _send(campaign_id, batch, claim, client, settings, outcome, dispatch_next=dispatch_next_if_due)
    finally:
        with transaction():
            _release(claim)
    if outcome.waiting_for_limit is not None:
        # Look again when the oldest counted send leaves the 24-hour window (the broker holds it at most so long).
        wait_seconds = max(outcome.waiting_for_limit, settings.broadcast_batch_interval)
        _dispatch_next(campaign_id, outcome, min(wait_seconds, float(settings.max_broker_delay)))
    elif outcome.next_delay is None:
        delay = _next_delay(campaign_id, settings, elapsed=time.time() - begins, outcome=outcome)
        if delay is not None:
            _dispatch_next(campaign_id, outcome, delay)
    return outcome


def _dispatch_next(campaign_id: int, outcome: BatchOutcome, delay: float, *, not_before: float | None = None,
                   handing_over: str | None = None) -> None:
    """Dispatch the campaign's next batch; ``handing_over``: this batch's job id, whose dedupe key it may take."""
    with transaction():
        if handing_over is not None:
            release_key(handing_over)
        dispatch_batch(campaign_id, delay=delay,
                       not_before=None if not_before is None else datetime.fromtimestamp(not_before, UTC))
    outcome.next_delay = delay


def _due_now(campaign_id: int) -> bool:
    now = utcnow()
    with read_only():
        found = db.session.scalar(select(Recipient.id).where(
            Recipient.campaign_id == campaign_id, Recipient.status == _S.PENDING.value, Recipient.claim.is_(None),
            or_(Recipient.next_attempt_at.is_(None), Recipient.next_attempt_at <= now),
        ).limit(1))
    return found is not None


def _settle_previous_run(claim: str, outcome: BatchOutcome) -> None:
    """Rows this job claimed in a run that died: untried ones go back, tried ones need attention."""
    # By the claim alone (it names one job of one campaign), so the claim index is used.
    outcome.attention += db.session.execute(
        update(Recipient)
        .where(Recipient.claim == claim, Recipient.status == _S.SENDING.value, Recipient.attention_at.is_(None))
        .values(attention_at=utcnow(), error=LEFT_SENDING)
    ).rowcount
    _release(claim)


def _release(claim: str) -> None:
    db.session.execute(
        update(Recipient)
        .where(Recipient.claim == claim, Recipient.status == _S.PENDING.value)
        .values(claim=None, claimed_at=None)
    )


def _claim(campaign_id: int, claim: str, size: int, outcome: BatchOutcome, *, sender: str,
           messaging_limit: int | None) -> list[Target]:
    now = utcnow()
    with transaction():
        room = _room(campaign_id, sender, messaging_limit)
        if room == 0:
            outcome.waiting_for_limit = _wait_for_room(campaign_id, messaging_limit, now)
            return []
        size = size if room is None else min(size, room)
        db.session.execute(update(Campaign).where(Campaign.id == campaign_id,
                                                  Campaign.status_reason.startswith(WAITING_FOR_LIMIT))
                           .values(status_reason=None))
        due = list(db.session.scalars(
            select(Recipient.id)
            .where(
                Recipient.campaign_id == campaign_id,
                Recipient.status == _S.PENDING.value,
                or_(Recipient.next_attempt_at.is_(None), Recipient.next_attempt_at <= now),
                Recipient.claim.is_(None),
            )
            .order_by(Recipient.id)
            .limit(size)
        ))
        if not due:
            return []
        # The re-check of status and claim is what makes the claim exclusive: on
        # PostgreSQL a second claimer of the same rows waits for the first one's row
        # locks, re-reads, and finds them taken; SQLite runs one writer at a time.
        db.session.execute(
            update(Recipient)
            .where(Recipient.id.in_(due), Recipient.status == _S.PENDING.value, Recipient.claim.is_(None))
            .values(claim=claim, claimed_at=now)
            .execution_options(synchronize_session=False)
        )
        batch = [Target(*row) for row in db.session.execute(
            select(Recipient.id, Recipient.phone, Recipient.name)
            .where(Recipient.claim == claim, Recipient.status == _S.PENDING.value)
            .order_by(Recipient.id)
        )]
        opted_out = set(db.session.scalars(select(Contact.phone).where(
            Contact.phone.in_([t.phone for t in batch]), Contact.opted_out_at.is_not(None))))
        if opted_out:
            skipped = [t.id for t in batch if t.phone in opted_out]
            outcome.skipped += move_recipients(campaign_id, (_S.PENDING,), _S.SKIPPED,
                                               where=Recipient.id.in_(skipped),
                                               values={"error": "opted out", "claim": None})
            batch = [t for t in batch if t.phone not in opted_out]
    outcome.claimed = len(batch) + outcome.skipped
    return batch


def _room(campaign_id: int, sender: str, messaging_limit: int | None) -> int | None:
    """Customers this campaign may still reach today (None: no limit applies to it)."""
    if db.session.scalar(select(Campaign.template_name).where(Campaign.id == campaign_id)) is None:
        return None  # a text reaches only customers inside their own 24-hour window, which cost nothing
    return limits.room(sender, configured=messaging_limit)


def _wait_for_room(campaign_id: int, messaging_limit: int | None, now: datetime) -> float:
    """Note on the campaign that it waits for the messaging limit; returns the seconds until there is room."""
    when = limits.next_room(now=now)
    db.session.execute(update(Campaign).where(Campaign.id == campaign_id).values(
        status_reason=f"{WAITING_FOR_LIMIT}: continues around {when:%Y-%m-%d %H:%M} UTC"))
    return (when - now).total_seconds()


def _send(campaign_id: int, batch: list[Target], claim: str, client: WhatsAppClient, settings: Settings,
          outcome: BatchOutcome, *, dispatch_next: Callable[..., None]) -> None:
    with read_only():
        message = CampaignMessage(db.session.get(Campaign, campaign_id))
    budget = SendBudget(sender=client.sender, rate=settings.send_rate_limit)
    slots = Slots(budget, len(batch))
    pool = _send_pool(max(settings.broadcast_batch_size, 8))
    in_flight: dict[Future, Target] = {}
    record = _Recorder(campaign_id, outcome, retry_delays=settings.broadcast_retry_delays, budget=budget)
    waiting = deque(batch)
    ready: deque[Target] = deque()  # marked sending, each about to get its slot
    while waiting or ready:
        slot = slots.take()
        if not ready:
            # Marked sending just before their slots, the sends due next together: a worker dying in
            # between leaves little in doubt, and one transaction serves many sends at a high rate.
            _wait_until(slot - PREPARE_AHEAD, in_flight, record)
            if _stopped(campaign_id):
                break
            due = [waiting.popleft() for _ in range(min(len(waiting), 1 + slots.due_before(slot + PREPARE_AHEAD)))]
            ready.extend(_mark_sending(campaign_id, due, claim))
            for _ in range(len(due) - len(ready)):
                slots.need_one_less()  # cancelled meanwhile
            if not ready:
                slots.put_back(slot)
                continue
        _wait_until(slot, in_flight, record)
        while not budget.on_time(slot):
            slot = slots.take()
            _wait_until(slot, in_flight, record)
        recipient = ready.popleft()
        send = partial(message.send, client, recipient)
        in_flight[pool.submit(send_in_slot, budget, slot, send)] = recipient
        slots.need_one_less()
        dispatch_next(last=False)
    dispatch_next(last=True)
    while in_flight:
        done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
        record.done(done, in_flight)


def _wait_until(moment: float, in_flight: dict[Future, Target], record: _Recorder) -> None:
    """Sleep until ``moment`` (a Unix time), recording the sends that finish meanwhile."""
    while (remaining := moment - time.time()) > 0:
        if not in_flight:
            time.sleep(remaining)
            return
        done, _ = wait(in_flight, timeout=remaining, return_when=FIRST_COMPLETED)
        record.done(done, in_flight)


def _stopped(campaign_id: int) -> bool:
    with read_only():
        status = db.session.scalar(select(Campaign.status).where(Campaign.id == campaign_id))
    return status != CampaignStatus.SENDING.value


def _mark_sending(campaign_id: int, batch: list[Target], claim: str) -> list[Target]:
    """Move these claimed recipients to sending (committed); returns those still ours to send."""
    with transaction():
        ours = set(db.session.scalars(
            select(Recipient.id)
            .where(Recipient.id.in_([t.id for t in batch]), Recipient.status == _S.PENDING.value,
                   Recipient.claim == claim)
            .with_for_update()
        ))
        if ours:
            move_recipients(campaign_id, (_S.PENDING,), _S.SENDING, where=Recipient.id.in_(ours),
                            values={"attempts": Recipient.attempts + 1})
    return [t for t in batch if t.id in ours]


class _Recorder:
    """Records each finished send of a batch at once, in a transaction of its own.

    Parameters:
      campaign_id: the campaign being sent.
      outcome: the batch's tally, updated as sends finish.
      retry_delays: seconds before a recipient is tried again after each retryable error.
      budget: the number's send budget, held back when Meta says the rate is too high.
    """

    def __init__(self, campaign_id: int, outcome: BatchOutcome, *, retry_delays: tuple[float, ...],
                 budget: SendBudget) -> None:
        self.campaign_id = campaign_id
        self.outcome = outcome
        self.retry_delays = retry_delays
        self.budget = budget

    def done(self, finished, in_flight: dict[Future, Target]) -> None:
        for future in finished:
            recipient = in_flight.pop(future)
            with transaction():
                try:
                    wamid = future.result()
                except SlotMissed:
                    self._back_in_line(recipient.id)
                except WhatsAppError as error:
                    self._error(recipient, error)
                except Exception as error:  # a bug of ours after the request may have gone out
                    logger.exception("Sending to recipient %s failed unexpectedly", recipient.id)
                    self._needs_attention(recipient.id, f"{type(error).__name__}: {error}")
                else:
                    self._sent(recipient.id, wamid)

    def _sent(self, recipient_id: int, wamid: str) -> None:
        this = Recipient.id == recipient_id
        self.outcome.sent += move_recipients(
            self.campaign_id, (_S.SENDING,), _S.SENT, where=this,
            values={"wamid": wamid, "sent_at": utcnow(), "claim": None, "error": None, "error_code": None,
                    "attention_at": None},
        )
        # A status webhook may have moved it on already; it still needs its wamid.
        db.session.execute(update(Recipient).where(this, Recipient.wamid.is_(None)).values(wamid=wamid, claim=None))

    def _error(self, recipient: Target, error: WhatsAppError) -> None:
        text = redact_text(str(error))[:1000]
        this = Recipient.id == recipient.id
        campaign_id = self.campaign_id
        if error.sent_unknown:
            self._needs_attention(recipient.id, f"no usable answer from Meta, it may have been sent: {text}")
            return
        if isinstance(error, RetryLater):
            if error.code == THROUGHPUT_EXCEEDED:
                # Meta says the number sends too fast: every sender of the number backs off.
                self.budget.hold(error.retry_after or 1.0)
            attempts = db.session.scalar(select(Recipient.attempts).where(this)) or 1
            if attempts <= len(self.retry_delays):
                # The pair rate limit is about this customer only: skip them for now, the batch goes on.
                least = PAIR_RATE_PAUSE if error.code == PAIR_RATE_LIMIT else 0.0
                next_at = retry_at(attempts, delays=self.retry_delays, retry_after=max(error.retry_after or 0, least))
                self.outcome.retry_later += move_recipients(
                    campaign_id, (_S.SENDING,), _S.PENDING, where=this,
                    values={"claim": None, "claimed_at": None, "error": text, "error_code": error.code,
                            "next_attempt_at": next_at},
                )
                return
        elif isinstance(error, (StopSending, ConfigurationError)):
            # Not sent; it goes back to pending and the campaign waits for a person.
            move_recipients(campaign_id, (_S.SENDING,), _S.PENDING, where=this,
                            values={"claim": None, "claimed_at": None, "error": text, "error_code": error.code,
                                    "attempts": Recipient.attempts - 1})
            if pause_for_error(campaign_id, f"paused: {text}"):
                logger.warning("Campaign %s paused: %s", campaign_id, text)
            return
        self.outcome.failed += move_recipients(
            campaign_id, (_S.SENDING,), _S.FAILED, where=this,
            values={"claim": None, "error": text, "error_code": error.code, "failed_at": utcnow()},
        )

    def _back_in_line(self, recipient_id: int) -> None:
        """A send whose slot passed before it left: certainly not sent, it waits for a later batch."""
        self.outcome.retry_later += move_recipients(
            self.campaign_id, (_S.SENDING,), _S.PENDING, where=Recipient.id == recipient_id,
            values={"claim": None, "claimed_at": None, "attempts": Recipient.attempts - 1},
        )

    def _needs_attention(self, recipient_id: int, text: str) -> None:
        self.outcome.attention += db.session.execute(
            update(Recipient)
            .where(Recipient.id == recipient_id, Recipient.status == _S.SENDING.value)
            .values(attention_at=utcnow(), error=redact_text(text)[:1000], claim=None)
        ).rowcount


def _next_delay(campaign_id: int, settings: Settings, *, elapsed: float, outcome: BatchOutcome) -> float | None:
    """Seconds until the next batch, or None when the campaign is finished or stopped (then it may complete it)."""
    with transaction():
        status = db.session.scalar(select(Campaign.status).where(Campaign.id == campaign_id))
        if status != CampaignStatus.SENDING.value:
            outcome.finished = True
            return None
        now = utcnow()
        pending = Recipient.campaign_id == campaign_id, Recipient.status == _S.PENDING.value
        due_now = db.session.scalar(select(Recipient.id).where(
            *pending, or_(Recipient.next_attempt_at.is_(None), Recipient.next_attempt_at <= now)).limit(1))
        # Another batch's sends still in flight may come back "retry later": look again before completing.
        in_flight = db.session.scalar(select(Recipient.id).where(
            Recipient.campaign_id == campaign_id, Recipient.status == _S.SENDING.value,
            Recipient.attention_at.is_(None)).limit(1))
        interval = max(settings.broadcast_batch_interval - elapsed, 0.0)
        if due_now is not None or in_flight is not None:
            return interval if due_now is not None else max(interval, settings.broadcast_batch_interval)
        earliest = db.session.scalar(select(func.min(Recipient.next_attempt_at)).where(*pending))
        if earliest is not None:
            wait_seconds = (earliest - now).total_seconds()
            return min(max(interval, wait_seconds), float(settings.max_broker_delay))
        completed = db.session.execute(
            update(Campaign)
            .where(Campaign.id == campaign_id, Campaign.status == CampaignStatus.SENDING.value)
            .values(status=CampaignStatus.COMPLETED.value, finished_at=now, status_reason=None)
        ).rowcount
    if completed:
        logger.info("Campaign %s completed.", campaign_id)
    outcome.finished = True
    return None
