"""Broadcast campaigns: create, start, pause, resume, cancel, retry failed recipients, progress.

The CLI (``wch campaigns``) and the admin panel both call these functions
inside an app context. Each one validates, writes, commits and returns; bad
input raises :class:`CampaignError` and changes nothing. Sending itself is
the ``send_campaign_batch`` job (:mod:`wch.broadcast`).

Recipient statuses only move through :func:`move_recipients`, which updates
the campaign's counters by ``SET n = n + d`` in the same transaction.
"""

from __future__ import annotations

import csv
import itertools
import string
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import IO, Any

from flask import current_app
from sqlalchemy import ColumnElement, and_, func, insert, literal, or_, select, update

from wch.contacts import InvalidPhone, normalize_phone
from wch.db import db, utcnow
from wch.dispatcher import dispatch
from wch.models import Campaign, CampaignStatus, Contact, Job, JobStatus, Recipient, RecipientStatus
from wch.models.campaigns import COUNTERS
from wch.models.jobs import PENDING

BATCH_JOB = "send_campaign_batch"
INSERT_CHUNK = 1000
MAX_BAD_ROWS_REPORTED = 100
# Placeholders a campaign's text or template parameters may use, filled per recipient.
RECIPIENT_FIELDS = ("name", "phone")

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


class CampaignError(ValueError):
    """A campaign request that is refused; nothing was changed."""


class CampaignNotFound(CampaignError):
    pass


@dataclass
class BadRow:
    """A CSV row that was left out, and why (``line`` counts from 1, the header included)."""

    line: int
    value: str
    reason: str


@dataclass
class CreateResult:
    """The new campaign, and the CSV rows that were left out (the first 100 of ``bad_count``)."""

    campaign: Campaign
    bad_rows: list[BadRow] = field(default_factory=list)
    bad_count: int = 0


# -- creating --------------------------------------------------------------


def create_campaign(
    *,
    name: str,
    template_name: str | None = None,
    template_language: str = "en_US",
    template_parameters: Iterable[str] = (),
    text: str | None = None,
    all_contacts: bool = False,
    csv_file: IO[str] | None = None,
) -> CreateResult:
    """Create a draft campaign for every opted-in contact (``all_contacts``) or the phones of ``csv_file``.

    The message is an approved template (``template_name``, ``template_language``,
    body ``template_parameters``) or a ``text`` (only delivered to customers
    inside WhatsApp's 24-hour window). Parameters and text may use {name} and
    {phone}. The CSV has a ``phone`` column and optionally ``name`` (or, with
    no header, phone then name); invalid and repeated phones are left out and
    reported in :attr:`CreateResult.bad_rows`. Start it with :func:`start_campaign`.
    """
    name = (name or "").strip()
    template_name = (template_name or "").strip() or None
    text = (text or "").strip() or None
    parameters = [str(p) for p in template_parameters]
    if not name:
        raise CampaignError("a campaign needs a name")
    if (template_name is None) == (text is None):
        raise CampaignError("give either a template name or a text, not both")
    if template_name is not None and not (template_language or "").strip():
        raise CampaignError("a template needs a language, e.g. en_US")
    for value in [text] if text is not None else parameters:
        _check_placeholders(value)
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
    try:
        if all_contacts:
            _add_all_contacts(campaign)
        else:
            _add_csv(campaign, csv_file, result)
    except Exception:
        db.session.rollback()
        raise
    campaign.total = db.session.scalar(
        select(func.count()).select_from(Recipient).where(Recipient.campaign_id == campaign.id)
    )
    if campaign.total == 0:
        db.session.rollback()
        raise CampaignError("the audience has no valid phone numbers; nothing was created"
                            + (f" ({result.bad_count} bad row(s))" if result.bad_count else ""))
    db.session.commit()
    return result


def _add_all_contacts(campaign: Campaign) -> None:
    opted_in = select(
        literal(campaign.id), Contact.phone, Contact.name, literal(_S.PENDING.value), literal(0)
    ).where(Contact.opted_out_at.is_(None))
    db.session.execute(
        insert(Recipient).from_select(["campaign_id", "phone", "name", "status", "attempts"], opted_in)
    )


def _add_csv(campaign: Campaign, file: IO[str], result: CreateResult) -> None:
    seen: set[str] = set()
    chunk: list[dict[str, Any]] = []
    for line, raw_phone, name in _csv_rows(file):
        try:
            phone = normalize_phone(raw_phone)
        except InvalidPhone as error:
            _bad(result, line, raw_phone, str(error))
            continue
        if phone in seen:
            _bad(result, line, raw_phone, f"{phone} appears earlier in the file")
            continue
        seen.add(phone)
        chunk.append({"campaign_id": campaign.id, "phone": phone, "name": name or None,
                      "status": _S.PENDING.value, "attempts": 0})
        if len(chunk) >= INSERT_CHUNK:
            db.session.execute(insert(Recipient), chunk)
            chunk = []
    if chunk:
        db.session.execute(insert(Recipient), chunk)


def _csv_rows(file: IO[str]) -> Iterable[tuple[int, str, str]]:
    reader = csv.reader(file)
    first = next(reader, None)
    if first is None:
        return
    header = [cell.strip().lower() for cell in first]
    if "phone" in header:
        phone_at, name_at, line = header.index("phone"), (header.index("name") if "name" in header else None), 1
    else:
        phone_at, name_at, line = 0, 1, 0
        reader = itertools.chain([first], reader)
    for row in reader:
        line += 1
        if not any(cell.strip() for cell in row):
            continue
        phone = row[phone_at].strip() if phone_at < len(row) else ""
        name = row[name_at].strip() if name_at is not None and name_at < len(row) else ""
        yield line, phone, name


def _bad(result: CreateResult, line: int, value: str, reason: str) -> None:
    result.bad_count += 1
    if len(result.bad_rows) < MAX_BAD_ROWS_REPORTED:
        result.bad_rows.append(BadRow(line, value, reason))


def _check_placeholders(value: str) -> None:
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(value) if name is not None}
    except ValueError as error:
        raise CampaignError(f"{value!r}: {error} (write {{{{ and }}}} for literal braces)") from None
    unknown = names - set(RECIPIENT_FIELDS)
    if unknown:
        known = ", ".join("{" + f + "}" for f in RECIPIENT_FIELDS)
        raise CampaignError(f"unknown placeholder(s) {', '.join(sorted(unknown))} in {value!r} (known: {known})")


def render(value: str, recipient: Recipient) -> str:
    """A campaign text or parameter with the recipient's {name} and {phone} filled in."""
    return value.format(name=recipient.name or "", phone=recipient.phone)


# -- controlling -------------------------------------------------------------


def start_campaign(campaign_id: int, *, at: datetime | None = None) -> Campaign:
    """Start sending a draft campaign now, or at ``at`` (a UTC-aware time) if that is later."""
    campaign = get_campaign(campaign_id, lock=True)
    if campaign.status not in (CampaignStatus.DRAFT.value, CampaignStatus.SCHEDULED.value):
        raise CampaignError(f"campaign {campaign_id} is {campaign.status}; only a draft or scheduled one can start")
    if at is not None and at.tzinfo is None:
        raise CampaignError("give the start time with its time zone (UTC)")
    now = utcnow()
    if at is not None and at > now:
        campaign.status = CampaignStatus.SCHEDULED.value
        campaign.start_at = at
        max_delay = current_app.extensions["wch"].settings.max_broker_delay
        if (at - now).total_seconds() <= max_delay:
            dispatch_batch(campaign.id, delay=(at - now).total_seconds())
        # Later than the broker may hold a message: the broadcast sweep starts it when due.
    else:
        _begin_sending(campaign, now)
    db.session.commit()
    return campaign


def start_due_campaigns() -> list[int]:
    """Start scheduled campaigns whose time has come (called by the periodic broadcast sweep)."""
    now = utcnow()
    due = db.session.scalars(
        select(Campaign.id).where(Campaign.status == CampaignStatus.SCHEDULED.value, Campaign.start_at <= now)
    ).all()
    for campaign_id in due:
        campaign = get_campaign(campaign_id, lock=True)
        if campaign.status == CampaignStatus.SCHEDULED.value:
            _begin_sending(campaign, now)
        db.session.commit()
    return list(due)


def start_if_due(campaign_id: int) -> bool:
    """Move a scheduled campaign whose time has come to sending; True if this call moved it.

    Its delayed batch job calls this: a start within the broker's delay limit
    then begins on time instead of at the next sweep. The caller commits.
    """
    now = utcnow()
    started = db.session.execute(
        update(Campaign)
        .where(Campaign.id == campaign_id, Campaign.status == CampaignStatus.SCHEDULED.value,
               Campaign.start_at <= now)
        .values(status=CampaignStatus.SENDING.value, status_reason=None,
                started_at=func.coalesce(Campaign.started_at, now))
        .execution_options(synchronize_session=False)
    ).rowcount
    return started == 1


def restart_stalled_campaigns(*, running_since: datetime) -> list[int]:
    """Dispatch a batch for each sending campaign whose batch chain broke (its last job failed for good).

    A batch job queued, retrying, or running since ``running_since`` keeps its
    chain alive; one running longer is taken for dead with its worker (the
    sweep releases its claims). The dispatch is unique, like the chain's own,
    so a restart never doubles a campaign's batches. Called by the sweep.
    """
    live = set(db.session.scalars(select(Job.dedupe_key).where(
        Job.type == BATCH_JOB,
        or_(Job.status.in_(PENDING), and_(Job.status == JobStatus.RUNNING.value, Job.started_at >= running_since)),
    )))
    sending = db.session.scalars(select(Campaign.id).where(Campaign.status == CampaignStatus.SENDING.value)).all()
    # The dispatcher stores a unique key as "<type>:<key>".
    stalled = [campaign_id for campaign_id in sending if f"{BATCH_JOB}:{_batch_key(campaign_id)}" not in live]
    for campaign_id in stalled:
        dispatch_batch(campaign_id)
    db.session.commit()
    return stalled


def _begin_sending(campaign: Campaign, now: datetime) -> None:
    campaign.status = CampaignStatus.SENDING.value
    campaign.status_reason = None
    campaign.started_at = campaign.started_at or now
    dispatch_batch(campaign.id)


def pause_campaign(campaign_id: int, *, reason: str | None = None) -> Campaign:
    """Stop sending before the next recipient; :func:`resume_campaign` carries on where it stopped.

    Sends already under way finish, and their answers are recorded.
    """
    campaign = get_campaign(campaign_id, lock=True)
    if campaign.status not in (CampaignStatus.SENDING.value, CampaignStatus.SCHEDULED.value):
        raise CampaignError(f"campaign {campaign_id} is {campaign.status}; only a sending or scheduled one can pause")
    campaign.status = CampaignStatus.PAUSED.value
    campaign.status_reason = reason or "paused by staff"
    db.session.commit()
    return campaign


def pause_for_error(campaign_id: int, reason: str) -> bool:
    """Pause a sending campaign because Meta told us to stop; True if this call paused it."""
    paused = db.session.execute(
        update(Campaign)
        .where(Campaign.id == campaign_id, Campaign.status == CampaignStatus.SENDING.value)
        .values(status=CampaignStatus.PAUSED.value, status_reason=reason)
    ).rowcount
    db.session.commit()
    return paused == 1


def resume_campaign(campaign_id: int) -> Campaign:
    """Carry on sending a paused campaign."""
    campaign = get_campaign(campaign_id, lock=True)
    if campaign.status != CampaignStatus.PAUSED.value:
        raise CampaignError(f"campaign {campaign_id} is {campaign.status}; only a paused one can resume")
    _begin_sending(campaign, utcnow())
    db.session.commit()
    return campaign


def cancel_campaign(campaign_id: int) -> Campaign:
    """Stop for good: recipients not yet sent are marked skipped."""
    campaign = get_campaign(campaign_id)
    if campaign.status in _CLOSED:
        raise CampaignError(f"campaign {campaign_id} is already {campaign.status}")
    # Recipients before the campaign row, in the order the batch job locks them, so
    # the two never wait on each other. Claimed ones too: a batch in flight only
    # sends recipients it can still move from pending.
    move_recipients(campaign.id, (_S.PENDING,), _S.SKIPPED, values={"error": "campaign cancelled", "claim": None})
    if not _change_status(campaign.id, _OPEN_FOR_CANCEL, CampaignStatus.CANCELLED, reason="cancelled by staff",
                          finished_at=utcnow()):
        db.session.rollback()
        raise CampaignError(f"campaign {campaign_id} changed meanwhile; look again")
    db.session.commit()
    return get_campaign(campaign_id)


def retry_failed(campaign_id: int) -> int:
    """Send again to the recipients whose message failed; returns how many. A finished campaign resumes."""
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
    db.session.commit()
    return count


_CLOSED = (CampaignStatus.COMPLETED.value, CampaignStatus.CANCELLED.value)
_OPEN_FOR_CANCEL = (CampaignStatus.DRAFT, CampaignStatus.SCHEDULED, CampaignStatus.SENDING, CampaignStatus.PAUSED,
                    CampaignStatus.FAILED)


def _change_status(campaign_id: int, sources, target: CampaignStatus, **values: Any) -> bool:
    reason = values.pop("reason", None)
    changed = db.session.execute(
        update(Campaign)
        .where(Campaign.id == campaign_id, Campaign.status.in_([str(s) for s in sources]))
        .values(status=str(target), status_reason=reason, **values)
        .execution_options(synchronize_session=False)
    ).rowcount
    return changed == 1


def dispatch_batch(campaign_id: int, *, delay: float | None = None) -> None:
    """Dispatch the campaign's next batch job; the caller commits."""
    # One pending batch job per campaign: starting twice does not double its sending.
    dispatch(BATCH_JOB, {"campaign_id": campaign_id}, delay=delay or None, unique=_batch_key(campaign_id))


def _batch_key(campaign_id: int) -> str:
    return f"campaign:{campaign_id}"


# -- reading -----------------------------------------------------------------


def get_campaign(campaign_id: int, *, lock: bool = False) -> Campaign:
    campaign = db.session.get(Campaign, campaign_id, with_for_update=lock, populate_existing=True)
    if campaign is None:
        raise CampaignNotFound(f"no campaign with id {campaign_id}")
    return campaign


def list_campaigns(*, limit: int = 50) -> list[Campaign]:
    """Campaigns, newest first."""
    return list(db.session.scalars(select(Campaign).order_by(Campaign.id.desc()).limit(limit)))


def list_recipients(campaign_id: int, *, status: str | None = None, attention: bool = False,
                    limit: int = 100, offset: int = 0) -> list[Recipient]:
    """A page of a campaign's recipients, optionally of one status or only those needing attention."""
    query = select(Recipient).where(Recipient.campaign_id == campaign_id)
    if status is not None:
        query = query.where(Recipient.status == status)
    if attention:
        query = query.where(Recipient.attention_at.is_not(None), Recipient.status == _S.SENDING.value)
    return list(db.session.scalars(query.order_by(Recipient.id).limit(limit).offset(offset)))


def progress(campaign_id: int) -> dict[str, Any]:
    """The campaign with its counters, what is still to send, and how far along it is.

    ``pending`` is waiting to be sent (some after a retry delay), ``in_flight``
    is being sent now, ``needs_attention`` was in flight when its worker died
    (the status webhook settles it; it is never resent automatically).
    """
    campaign = get_campaign(campaign_id)
    by_status = dict(db.session.execute(
        select(Recipient.status, func.count())
        .where(Recipient.campaign_id == campaign_id, Recipient.status.in_((_S.PENDING.value, _S.SENDING.value)))
        .group_by(Recipient.status)
    ).all())
    attention = db.session.scalar(
        select(func.count()).select_from(Recipient).where(
            Recipient.campaign_id == campaign_id, Recipient.status == _S.SENDING.value,
            Recipient.attention_at.is_not(None),
        )
    )
    sending = by_status.get(_S.SENDING.value, 0)
    settled = campaign.sent + campaign.failed + campaign.skipped
    return {
        **campaign.to_dict(),
        "pending": by_status.get(_S.PENDING.value, 0),
        "in_flight": sending - attention,
        "needs_attention": attention,
        "settled": settled,
        "percent": round(100.0 * settled / campaign.total, 1) if campaign.total else 100.0,
    }


# -- recipient transitions ---------------------------------------------------


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


def retry_at(attempts: int, *, retry_after: float | None = None) -> datetime:
    """When a recipient whose send failed retryably is tried again, after ``attempts`` tries."""
    delays = current_app.extensions["wch"].settings.broadcast_retry_delays
    delay = delays[min(attempts, len(delays)) - 1] if delays else 0
    return utcnow() + timedelta(seconds=max(delay, retry_after or 0))
