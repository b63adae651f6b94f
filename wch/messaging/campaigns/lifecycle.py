"""A campaign's life: create, start (now or later), pause, resume, cancel, retry its failed recipients.

The panel and the command line call these and commit; bad input raises
:class:`~wch.messaging.campaigns.errors.CampaignError` and changes nothing.
Sending itself is the ``send_campaign_batch`` job (:mod:`.sending`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any

from sqlalchemy import delete, func, select, update

from wch.db import db, utcnow
from wch.jobs import JobType, dispatch
from wch.messaging.campaigns.audience import BadRow, add_all_contacts, add_csv
from wch.messaging.campaigns.errors import CampaignError, CampaignNotFound
from wch.messaging.campaigns.message import check_placeholders
from wch.messaging.campaigns.recipients import move_recipients
from wch.models import Campaign, CampaignStatus, Recipient, RecipientStatus

SEND_CAMPAIGN_BATCH = JobType("send_campaign_batch", queue="broadcast", subject="campaign:{campaign_id}")

_S = RecipientStatus
_CLOSED = (CampaignStatus.COMPLETED.value, CampaignStatus.CANCELLED.value)
IMPORTING = "importing its audience"
# Column sizes (and WhatsApp's limit on a text body): longer input is refused, not cut.
LIMITS = {"name": 200, "template name": 200, "template language": 20, "text": 4096, "template parameter": 1024}
_OPEN_FOR_CANCEL = (CampaignStatus.DRAFT, CampaignStatus.SCHEDULED, CampaignStatus.SENDING, CampaignStatus.PAUSED,
                    CampaignStatus.FAILED)


@dataclass
class CreateResult:
    """The new campaign, and the CSV rows that were left out (the first 100 of ``bad_count``)."""

    campaign: Campaign
    bad_rows: list[BadRow] = field(default_factory=list)
    bad_count: int = 0


def create_campaign(
    *,
    name: str,
    template_name: str | None = None,
    template_language: str = "en_US",
    template_parameters: Iterable[str] = (),
    text: str | None = None,
    all_contacts: bool = False,
    csv_file: IO[str] | None = None,
    on_chunk: Callable[[int], None] | None = None,
) -> CreateResult:
    """Create a draft campaign for every opted-in contact (``all_contacts``) or the phones of ``csv_file``.

    The message is an approved template (``template_name``, ``template_language``,
    body ``template_parameters``) or a ``text`` (only delivered to customers
    inside WhatsApp's 24-hour window). Parameters and text may use {name} and
    {phone}. Invalid and repeated CSV phones are left out and reported in
    :attr:`CreateResult.bad_rows`. Start it with :func:`start_campaign`. The caller commits.

    ``on_chunk`` is called with the number of CSV recipients added so far
    after each chunk of the file; a caller that commits there keeps
    transactions short on a large file. The campaign cannot be started while
    its audience is being imported, and if the import is refused midway the
    campaign and what was committed of it are deleted (in a transaction of
    its own).
    """
    name = (name or "").strip()
    template_name = (template_name or "").strip() or None
    text = (text or "").strip() or None
    parameters = [str(p) for p in template_parameters]
    if not name:
        raise CampaignError("a campaign needs a name")
    for what, value in (("name", name), ("template name", template_name), ("template language", template_language),
                        ("text", text), *(("template parameter", p) for p in parameters)):
        if value is not None and len(value) > LIMITS[what]:
            raise CampaignError(f"the {what} is too long ({len(value)} characters; at most {LIMITS[what]})")
    if (template_name is None) == (text is None):
        raise CampaignError("give either a template name or a text, not both")
    if template_name is not None and not (template_language or "").strip():
        raise CampaignError("a template needs a language, e.g. en_US")
    for value in [text] if text is not None else parameters:
        check_placeholders(value)
    if all_contacts == (csv_file is not None):
        raise CampaignError("choose the audience: all contacts, or a CSV file")

    campaign = Campaign(
        name=name,
        template_name=template_name,
        template_language=template_language.strip() if template_name else None,
        template_parameters=parameters,
        text=text,
        audience="all_contacts" if all_contacts else "csv",
        status=CampaignStatus.DRAFT.value,
        created_at=utcnow(),
        total=0, sent=0, delivered=0, read=0, failed=0, skipped=0,
    )
    db.session.add(campaign)
    db.session.flush()
    result = CreateResult(campaign)
    if all_contacts:
        add_all_contacts(campaign.id)
    else:
        campaign.status_reason = IMPORTING
        campaign_id = campaign.id
        try:
            left_out = add_csv(campaign.id, csv_file, on_chunk=on_chunk)
        except CampaignError:
            if on_chunk is not None:
                db.session.rollback()
                db.session.execute(delete(Campaign).where(Campaign.id == campaign_id))
                db.session.commit()
            raise
        result.bad_rows, result.bad_count = left_out.rows, left_out.count
        campaign.status_reason = None
    campaign.total = db.session.scalar(
        select(func.count()).select_from(Recipient).where(Recipient.campaign_id == campaign.id)
    )
    if campaign.total == 0:
        raise CampaignError("the audience has no valid phone numbers; nothing was created"
                            + (f" ({result.bad_count} bad row(s))" if result.bad_count else ""))
    return result


def start_campaign(campaign_id: int, *, at: datetime | None = None, max_broker_delay: float) -> Campaign:
    """Start sending a draft campaign now, or at ``at`` (a UTC-aware time) if that is later.

    A start within ``max_broker_delay`` seconds is a delayed batch job; a later
    one is started by the broadcast sweep when it is due. The caller commits.
    """
    campaign = get_campaign(campaign_id, lock=True)
    if campaign.status not in (CampaignStatus.DRAFT.value, CampaignStatus.SCHEDULED.value):
        raise CampaignError(f"campaign {campaign_id} is {campaign.status}; only a draft or scheduled one can start")
    if campaign.status_reason == IMPORTING:
        raise CampaignError(f"campaign {campaign_id} is still importing its audience; start it when that is done")
    if at is not None and at.tzinfo is None:
        raise CampaignError("give the start time with its time zone (UTC)")
    now = utcnow()
    if at is not None and at > now:
        campaign.status = CampaignStatus.SCHEDULED.value
        campaign.start_at = at
        if (at - now).total_seconds() <= max_broker_delay:
            dispatch_batch(campaign.id, delay=(at - now).total_seconds())
    else:
        begin_sending(campaign, now)
    return campaign


def start_if_due(campaign_id: int, *, hold: str | None = None) -> bool:
    """Move a scheduled campaign whose time has come to sending; True if this call moved it.

    With ``hold`` (why it must not begin on its own: Meta has flagged the
    number), it moves to paused with that reason instead, for staff to
    resume. Its delayed batch job calls this: a start within the broker's
    delay limit then begins on time instead of at the next sweep. The caller commits.
    """
    now = utcnow()
    if hold is None:
        values = {"status": CampaignStatus.SENDING.value, "status_reason": None,
                  "started_at": func.coalesce(Campaign.started_at, now)}
    else:
        values = {"status": CampaignStatus.PAUSED.value, "status_reason": hold}
    started = db.session.execute(
        update(Campaign)
        .where(Campaign.id == campaign_id, Campaign.status == CampaignStatus.SCHEDULED.value,
               Campaign.start_at <= now)
        .values(**values)
        .execution_options(synchronize_session=False)
    ).rowcount
    return started == 1


def begin_sending(campaign: Campaign, now: datetime) -> None:
    """Mark the campaign sending and dispatch its first batch. The caller commits."""
    campaign.status = CampaignStatus.SENDING.value
    campaign.status_reason = None
    campaign.started_at = campaign.started_at or now
    dispatch_batch(campaign.id)


def pause_campaign(campaign_id: int, *, reason: str | None = None) -> Campaign:
    """Stop sending before the next recipient; :func:`resume_campaign` carries on where it stopped.

    Sends already under way finish, and their answers are recorded. The caller commits.
    """
    campaign = get_campaign(campaign_id, lock=True)
    if campaign.status not in (CampaignStatus.SENDING.value, CampaignStatus.SCHEDULED.value):
        raise CampaignError(f"campaign {campaign_id} is {campaign.status}; only a sending or scheduled one can pause")
    campaign.status = CampaignStatus.PAUSED.value
    campaign.status_reason = reason or "paused by staff"
    return campaign


def pause_for_error(campaign_id: int, reason: str) -> bool:
    """Pause a sending campaign because Meta told us to stop; True if this call paused it. The caller commits."""
    paused = db.session.execute(
        update(Campaign)
        .where(Campaign.id == campaign_id, Campaign.status == CampaignStatus.SENDING.value)
        .values(status=CampaignStatus.PAUSED.value, status_reason=reason)
    ).rowcount
    return paused == 1


def resume_campaign(campaign_id: int) -> Campaign:
    """Carry on sending a paused campaign. The caller commits."""
    campaign = get_campaign(campaign_id, lock=True)
    if campaign.status != CampaignStatus.PAUSED.value:
        raise CampaignError(f"campaign {campaign_id} is {campaign.status}; only a paused one can resume")
    begin_sending(campaign, utcnow())
    return campaign


def cancel_campaign(campaign_id: int) -> Campaign:
    """Stop for good: recipients not yet sent are marked skipped. The caller commits."""
    campaign = get_campaign(campaign_id)
    if campaign.status in _CLOSED:
        raise CampaignError(f"campaign {campaign_id} is already {campaign.status}")
    # Recipients before the campaign row, in the order the batch job locks them, so
    # the two never wait on each other. Claimed ones too: a batch in flight only
    # sends recipients it can still move from pending.
    move_recipients(campaign.id, (_S.PENDING,), _S.SKIPPED, values={"error": "campaign cancelled", "claim": None})
    if not _change_status(campaign.id, _OPEN_FOR_CANCEL, CampaignStatus.CANCELLED, reason="cancelled by staff",
                          finished_at=utcnow()):
        raise CampaignError(f"campaign {campaign_id} changed meanwhile; look again")
    return get_campaign(campaign_id)


def retry_failed(campaign_id: int) -> int:
    """Send again to the recipients whose message failed; returns how many. A finished campaign resumes.

    The caller commits.
    """
    campaign = get_campaign(campaign_id)
    if campaign.status in (CampaignStatus.CANCELLED.value, CampaignStatus.DRAFT.value):
        raise CampaignError(f"campaign {campaign_id} is {campaign.status}; nothing to retry")
    count = move_recipients(
        campaign.id, (_S.FAILED,), _S.PENDING,
        values={"attempts": 0, "next_attempt_at": None, "claim": None, "error": None, "error_code": None,
                "failed_at": None},
    )
    if count and (
        _change_status(campaign.id, (CampaignStatus.COMPLETED, CampaignStatus.FAILED), CampaignStatus.SENDING,
                       reason=None, finished_at=None)
        or campaign.status == CampaignStatus.SENDING.value
    ):
        dispatch_batch(campaign.id)
    return count


def _change_status(campaign_id: int, sources, target: CampaignStatus, **values: Any) -> bool:
    reason = values.pop("reason", None)
    changed = db.session.execute(
        update(Campaign)
        .where(Campaign.id == campaign_id, Campaign.status.in_([str(s) for s in sources]))
        .values(status=str(target), status_reason=reason, **values)
        .execution_options(synchronize_session=False)
    ).rowcount
    return changed == 1


def dispatch_batch(campaign_id: int, *, delay: float | None = None, not_before: datetime | None = None) -> None:
    """Dispatch the campaign's next batch job; the caller commits.

    ``not_before``: the batch may start earlier (to claim its recipients) but sends nothing before then.
    """
    args: dict[str, Any] = {"campaign_id": campaign_id}
    if not_before is not None:
        args["not_before"] = not_before.isoformat(timespec="milliseconds")
    # One pending batch job per campaign: starting twice does not double its sending.
    dispatch(SEND_CAMPAIGN_BATCH, args, delay=delay or None, unique=batch_key(campaign_id))


def batch_key(campaign_id: int) -> str:
    """The unique key of a campaign's pending batch job."""
    return f"campaign:{campaign_id}"


def get_campaign(campaign_id: int, *, lock: bool = False) -> Campaign:
    campaign = db.session.get(Campaign, campaign_id, with_for_update=lock, populate_existing=True)
    if campaign is None:
        raise CampaignNotFound(f"no campaign with id {campaign_id}")
    return campaign
