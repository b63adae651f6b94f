"""Sending one batch of a campaign: claim, pace, send concurrently, record each result at once.

A batch claims the next due pending recipients of its campaign with one
conditional ``UPDATE`` (two workers never get the same row), reserves their
send slots from the shared :class:`~wch.ratelimit.SendRateLimiter`, and at
each slot marks one recipient ``sending`` (committed) before handing its
request to a thread pool. So a recipient whose worker dies is either still
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
from datetime import timedelta
from typing import Any

from flask import current_app
from sqlalchemy import func, literal_column, or_, select, update

from wch import campaigns
from wch.campaigns import move_recipients
from wch.db import db, utcnow
from wch.models import Campaign, CampaignStatus, Contact, Recipient, RecipientStatus
from wch.ratelimit import SendRateLimiter
from wch.redact import redact_text
from wch.whatsapp.client import WhatsAppClient
from wch.whatsapp.errors import ConfigurationError, RetryLater, StopSending, WhatsAppError

logger = logging.getLogger(__name__)

_S = RecipientStatus
CALLBACK_PREFIX = "wch:recipient:"
# How late after its slot a send may still go out; later, it takes a new slot.
LATE_TOLERANCE = 0.02

_shared_lock = threading.Lock()
_shared: dict[str, Any] = {}


@dataclass(frozen=True)
class Target:
    """A claimed recipient as plain values, safe to hand to the sending threads."""

    id: int
    phone: str
    name: str | None


@dataclass
class BatchOutcome:
    """What one batch did, and when (if at all) the next one should run."""

    claimed: int = 0
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    retry_later: int = 0
    attention: int = 0
    next_delay: float | None = None
    finished: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def callback_data(recipient_id: int) -> str:
    """What Meta echoes back in status webhooks, so a recipient is found even without its wamid."""
    return f"{CALLBACK_PREFIX}{recipient_id}"


def shared_client(settings) -> WhatsAppClient:
    """One client per worker process, so its pooled connections are reused batch after batch."""
    key = ("client", settings.whatsapp_api_url, settings.whatsapp_access_token, settings.whatsapp_phone_number_id)
    with _shared_lock:
        client = _shared.get(key)
        if client is None:
            client = WhatsAppClient.from_settings(settings, pool_size=max(64, settings.broadcast_batch_size))
            _shared[key] = client
        return client


def _pool(size: int) -> ThreadPoolExecutor:
    with _shared_lock:
        pool = _shared.get("pool")
        if pool is None:
            pool = _shared["pool"] = ThreadPoolExecutor(max_workers=size, thread_name_prefix="wch-send")
        return pool


def run_batch(campaign_id: int, *, claim: str, client: WhatsAppClient | None = None) -> BatchOutcome:
    """Send the next batch of ``campaign_id`` and dispatch the one after it; ``claim`` is the batch job's id.

    The next batch is dispatched ``WCH_BROADCAST_BATCH_INTERVAL`` after this
    one started, or when its last request has left if that is later, so the
    next batch's start-up and the answers still on their way do not slow the
    campaign (two batches may overlap for that moment); when nothing more is
    due, what comes next is decided after the last answer.
    """
    settings = current_app.extensions["wch"].settings
    started = time.monotonic()
    outcome = BatchOutcome()
    _settle_previous_run(campaign_id, claim, outcome)

    # A start scheduled within the broker's delay limit: this delayed batch begins it.
    campaigns.start_if_due(campaign_id)
    status = db.session.scalar(select(Campaign.status).where(Campaign.id == campaign_id))
    db.session.commit()
    if status != CampaignStatus.SENDING.value:
        outcome.finished = True
        return outcome

    tried_early = False

    def dispatch_next_if_due(*, last: bool) -> None:
        # Once the interval has passed (or the last request has left), the next batch may
        # start: dispatching it now overlaps its start-up with our last sends. The shared
        # limiter still paces both.
        nonlocal tried_early
        elapsed = time.monotonic() - started
        too_soon = tried_early or elapsed < settings.broadcast_batch_interval
        if outcome.next_delay is not None or (not last and too_soon):
            return
        tried_early = True
        if not _stopped(campaign_id) and _due_now(campaign_id):
            _dispatch_next(campaign_id, outcome, max(settings.broadcast_batch_interval - elapsed, 0))

    client = client or shared_client(settings)
    try:
        batch = _claim(campaign_id, claim, settings.broadcast_batch_size, outcome)
        if batch:
            _send(campaign_id, batch, claim, client, settings, outcome, dispatch_next=dispatch_next_if_due)
    finally:
        _release(claim)
    if outcome.next_delay is None:
        delay = _next_delay(campaign_id, settings, elapsed=time.monotonic() - started, outcome=outcome)
        if delay is not None:
            _dispatch_next(campaign_id, outcome, delay)
    return outcome


def _dispatch_next(campaign_id: int, outcome: BatchOutcome, delay: float) -> None:
    campaigns.dispatch_batch(campaign_id, delay=delay)
    db.session.commit()
    outcome.next_delay = delay


def _due_now(campaign_id: int) -> bool:
    now = utcnow()
    found = db.session.scalar(select(Recipient.id).where(
        Recipient.campaign_id == campaign_id, Recipient.status == _S.PENDING.value, Recipient.claim.is_(None),
        or_(Recipient.next_attempt_at.is_(None), Recipient.next_attempt_at <= now),
    ).limit(1))
    db.session.commit()
    return found is not None


def _settle_previous_run(campaign_id: int, claim: str, outcome: BatchOutcome) -> None:
    """Rows this job claimed in a run that died: untried ones go back, tried ones need attention."""
    # By the claim alone (it names one job of one campaign), so the claim index is used.
    outcome.attention += db.session.execute(
        update(Recipient)
        .where(Recipient.claim == claim, Recipient.status == _S.SENDING.value, Recipient.attention_at.is_(None))
        .values(attention_at=utcnow(), error="in flight when its worker stopped; waiting for Meta's status")
    ).rowcount
    _release(claim)


def _release(claim: str) -> None:
    db.session.execute(
        update(Recipient)
        .where(Recipient.claim == claim, Recipient.status == _S.PENDING.value)
        .values(claim=None, claimed_at=None)
    )
    db.session.commit()


def _claim(campaign_id: int, claim: str, size: int, outcome: BatchOutcome) -> list[Target]:
    now = utcnow()
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
        db.session.commit()
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
        outcome.skipped += move_recipients(campaign_id, (_S.PENDING,), _S.SKIPPED, where=Recipient.id.in_(skipped),
                                           values={"error": "opted out", "claim": None})
        batch = [t for t in batch if t.phone not in opted_out]
    db.session.commit()
    outcome.claimed = len(batch) + outcome.skipped
    return batch


def _send(campaign_id: int, batch: list[Target], claim: str, client: WhatsAppClient, settings,
          outcome: BatchOutcome, *, dispatch_next: Callable[..., None]) -> None:
    campaign = db.session.get(Campaign, campaign_id)
    message = _Message(campaign)
    db.session.commit()
    limiter = SendRateLimiter(sender=client.phone_number_id or "default", rate=settings.send_rate_limit)
    slots = deque(limiter.reserve(len(batch)))
    pool = _pool(max(settings.broadcast_batch_size, 8))
    in_flight: dict[Future, Target] = {}
    for recipient in batch:
        slot = slots.popleft()
        _wait_until(slot, campaign_id, in_flight, outcome)
        if _stopped(campaign_id):
            break
        if not _mark_sending(campaign_id, recipient.id, claim):
            continue
        if time.time() - slot > LATE_TOLERANCE:
            # A stall (a busy database) made us late: sending now would crowd the slots
            # other senders hold next, so take fresh ones for the rest of the batch.
            slots = deque(limiter.reserve(len(slots) + 1))
            _wait_until(slots.popleft(), campaign_id, in_flight, outcome)
        in_flight[pool.submit(message.send, client, recipient)] = recipient
        dispatch_next(last=False)
    dispatch_next(last=True)
    while in_flight:
        done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
        _record_done(campaign_id, done, in_flight, outcome)


def _wait_until(moment: float, campaign_id: int, in_flight: dict[Future, Target], outcome: BatchOutcome) -> None:
    """Sleep until ``moment`` (a Unix time), recording the sends that finish meanwhile."""
    while (remaining := moment - time.time()) > 0:
        if not in_flight:
            time.sleep(remaining)
            return
        done, _ = wait(in_flight, timeout=remaining, return_when=FIRST_COMPLETED)
        _record_done(campaign_id, done, in_flight, outcome)


class _Message:
    """A campaign's message, detached from the session so pool threads can send it."""

    def __init__(self, campaign: Campaign) -> None:
        self.text = campaign.text
        self.template_name = campaign.template_name
        self.template_language = campaign.template_language
        self.parameters = list(campaign.template_parameters or [])

    def send(self, client: WhatsAppClient, recipient: Target) -> str:
        data = callback_data(recipient.id)
        if self.text is not None:
            return client.send_text(recipient.phone, campaigns.render(self.text, recipient), callback_data=data)
        parameters = [campaigns.render(p, recipient) for p in self.parameters]
        return client.send_template(recipient.phone, self.template_name, self.template_language, parameters,
                                    callback_data=data)


def _stopped(campaign_id: int) -> bool:
    status = db.session.scalar(select(Campaign.status).where(Campaign.id == campaign_id))
    db.session.commit()
    return status != CampaignStatus.SENDING.value


def _mark_sending(campaign_id: int, recipient_id: int, claim: str) -> bool:
    moved = move_recipients(
        campaign_id, (_S.PENDING,), _S.SENDING,
        where=(Recipient.id == recipient_id) & (Recipient.claim == claim),
        values={"attempts": Recipient.attempts + 1},
    )
    db.session.commit()
    return moved == 1


def _record_done(campaign_id: int, done, in_flight: dict[Future, Target], outcome: BatchOutcome) -> None:
    for future in done:
        recipient = in_flight.pop(future)
        try:
            wamid = future.result()
        except WhatsAppError as error:
            _record_error(campaign_id, recipient, error, outcome)
        except Exception as error:  # a bug of ours after the request may have gone out
            logger.exception("Sending to recipient %s failed unexpectedly", recipient.id)
            _needs_attention(campaign_id, recipient.id, f"{type(error).__name__}: {error}", outcome)
        else:
            _record_sent(campaign_id, recipient.id, wamid, outcome)
        db.session.commit()


def _record_sent(campaign_id: int, recipient_id: int, wamid: str, outcome: BatchOutcome) -> None:
    now = utcnow()
    this = Recipient.id == recipient_id
    outcome.sent += move_recipients(
        campaign_id, (_S.SENDING,), _S.SENT, where=this,
        values={"wamid": wamid, "sent_at": now, "claim": None, "error": None, "error_code": None,
                "attention_at": None},
    )
    # A status webhook may have moved it on already; it still needs its wamid.
    db.session.execute(update(Recipient).where(this, Recipient.wamid.is_(None)).values(wamid=wamid, claim=None))


def _record_error(campaign_id: int, recipient: Target, error: WhatsAppError, outcome: BatchOutcome) -> None:
    text = redact_text(str(error))[:1000]
    this = Recipient.id == recipient.id
    if isinstance(error, RetryLater) and not error.sent_unknown:
        attempts = db.session.scalar(select(Recipient.attempts).where(this)) or 1
        retries = current_app.extensions["wch"].settings.broadcast_retry_delays
        if attempts <= len(retries):
            outcome.retry_later += move_recipients(
                campaign_id, (_S.SENDING,), _S.PENDING, where=this,
                values={"claim": None, "claimed_at": None, "error": text, "error_code": error.code,
                        "next_attempt_at": campaigns.retry_at(attempts, retry_after=error.retry_after)},
            )
            return
    elif isinstance(error, RetryLater):
        _needs_attention(campaign_id, recipient.id, f"no answer from Meta, it may have been sent: {text}", outcome)
        return
    elif isinstance(error, (StopSending, ConfigurationError)):
        # Not sent; it goes back to pending and the campaign waits for a person.
        move_recipients(campaign_id, (_S.SENDING,), _S.PENDING, where=this,
                        values={"claim": None, "claimed_at": None, "error": text, "error_code": error.code,
                                "attempts": Recipient.attempts - 1})
        if campaigns.pause_for_error(campaign_id, f"paused: {text}"):
            logger.warning("Campaign %s paused: %s", campaign_id, text)
        return
    outcome.failed += move_recipients(
        campaign_id, (_S.SENDING,), _S.FAILED, where=this,
        values={"claim": None, "error": text, "error_code": error.code, "failed_at": utcnow()},
    )


def _needs_attention(campaign_id: int, recipient_id: int, text: str, outcome: BatchOutcome) -> None:
    outcome.attention += db.session.execute(
        update(Recipient)
        .where(Recipient.id == recipient_id, Recipient.status == _S.SENDING.value)
        .values(attention_at=utcnow(), error=redact_text(text)[:1000], claim=None)
    ).rowcount


def _next_delay(campaign_id: int, settings, *, elapsed: float, outcome: BatchOutcome) -> float | None:
    """Seconds until the next batch, or None when the campaign is finished or stopped."""
    status = db.session.scalar(select(Campaign.status).where(Campaign.id == campaign_id))
    if status != CampaignStatus.SENDING.value:
        db.session.commit()
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
        db.session.commit()
        return interval if due_now is not None else max(interval, settings.broadcast_batch_interval)
    earliest = db.session.scalar(select(func.min(Recipient.next_attempt_at)).where(*pending))
    if earliest is not None:
        db.session.commit()
        wait_seconds = (earliest - now).total_seconds()
        return min(max(interval, wait_seconds), float(settings.max_broker_delay))
    completed = db.session.execute(
        update(Campaign)
        .where(Campaign.id == campaign_id, Campaign.status == CampaignStatus.SENDING.value)
        .values(status=CampaignStatus.COMPLETED.value, finished_at=now, status_reason=None)
    ).rowcount
    db.session.commit()
    if completed:
        logger.info("Campaign %s completed.", campaign_id)
    outcome.finished = True
    return None


def sweep_stale_claims(*, older_than: timedelta) -> dict[str, int]:
    """Safety net for batches that died and were not redelivered: release or flag their recipients.

    Untried recipients (still pending) are released to be sent; recipients in
    flight are marked for attention, never resent. Also starts due scheduled
    campaigns, and restarts sending ones whose batch chain broke (its last job
    failed for good, or has run longer than ``older_than``). Called by the
    periodic broadcast sweep.
    """
    cutoff = utcnow() - older_than
    released = db.session.execute(
        update(Recipient)
        .where(Recipient.status == _S.PENDING.value, Recipient.claim.is_not(None), Recipient.claimed_at < cutoff)
        .values(claim=None, claimed_at=None)
    ).rowcount
    flagged = db.session.execute(
        update(Recipient)
        # A literal 'sending' lets SQLite match the partial in-flight index.
        .where(Recipient.status == literal_column("'sending'"), Recipient.attention_at.is_(None),
               Recipient.claimed_at < cutoff)
        .values(attention_at=utcnow(), error="in flight when its worker stopped; waiting for Meta's status")
    ).rowcount
    db.session.commit()
    started = campaigns.start_due_campaigns()
    restarted = campaigns.restart_stalled_campaigns(running_since=cutoff)
    return {"released": released, "flagged": flagged, "started": len(started), "restarted": len(restarted)}
