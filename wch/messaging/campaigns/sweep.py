"""The broadcast sweep, once a minute: due campaigns started, dead batches settled, broken chains restarted."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import and_, literal_column, or_, select, update

from wch.db import db, transaction, utcnow
from wch.jobs import JobType, dispatch
from wch.jobs.dispatcher import dedupe_key_of
from wch.messaging import standing
from wch.messaging.campaigns.lifecycle import SEND_CAMPAIGN_BATCH, batch_key, dispatch_batch, start_if_due
from wch.messaging.messages import LEFT_SENDING
from wch.models import Campaign, CampaignStatus, Job, JobStatus, Recipient, RecipientStatus
from wch.models.jobs import PENDING

SWEEP_BROADCASTS = JobType("sweep_broadcasts", queue="broadcast")

_S = RecipientStatus


def sweep_later() -> Job:
    """Dispatch the sweep; one pending at a time."""
    return dispatch(SWEEP_BROADCASTS, unique=True)


def sweep(*, stale_after: timedelta, sender: str) -> dict[str, int]:
    """Safety net for batches that died and were not redelivered, and the start of scheduled campaigns.

    Untried recipients claimed longer than ``stale_after`` ago (still pending)
    are released to be sent; recipients in flight that long are marked for
    attention, never resent. Due scheduled campaigns start, and sending ones
    whose batch chain broke (its last job failed for good, or has run longer
    than ``stale_after``) get a new batch; ``sender`` is the number they send
    from. Runs its own transactions.
    """
    cutoff = utcnow() - stale_after
    with transaction():
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
            .values(attention_at=utcnow(), error=LEFT_SENDING)
        ).rowcount
    started = start_due_campaigns(sender=sender)
    with transaction():
        restarted = restart_stalled_campaigns(running_since=cutoff)
    return {"released": released, "flagged": flagged, "started": len(started), "restarted": len(restarted)}


def start_due_campaigns(*, sender: str) -> list[int]:
    """Start scheduled campaigns whose time has come; paused instead while Meta has ``sender`` flagged.

    Runs its own transactions, one per campaign.
    """
    now = utcnow()
    with transaction():
        due = db.session.scalars(
            select(Campaign.id).where(Campaign.status == CampaignStatus.SCHEDULED.value, Campaign.start_at <= now)
        ).all()
    for campaign_id in due:
        with transaction():
            hold = standing.start_hold(sender)
            if start_if_due(campaign_id, hold=hold) and hold is None:
                dispatch_batch(campaign_id)
    return list(due)


def restart_stalled_campaigns(*, running_since: datetime) -> list[int]:
    """Dispatch a batch for each sending campaign whose batch chain broke (its last job failed for good).

    A batch job queued, retrying, or running since ``running_since`` keeps its
    chain alive; one running longer is taken for dead with its worker (the
    sweep releases its claims). The dispatch is unique, like the chain's own,
    so a restart never doubles a campaign's batches. The caller commits.
    """
    live = set(db.session.scalars(select(Job.dedupe_key).where(
        Job.type == SEND_CAMPAIGN_BATCH.name,
        or_(Job.status.in_(PENDING), and_(Job.status == JobStatus.RUNNING.value, Job.started_at >= running_since)),
    )))
    sending = db.session.scalars(select(Campaign.id).where(Campaign.status == CampaignStatus.SENDING.value)).all()
    stalled = [campaign_id for campaign_id in sending
               if dedupe_key_of(SEND_CAMPAIGN_BATCH.name, batch_key(campaign_id)) not in live]
    for campaign_id in stalled:
        dispatch_batch(campaign_id)
    return stalled
