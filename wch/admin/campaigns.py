"""Campaigns in the panel, on top of :mod:`wch.messaging.campaigns`.

Every change goes through that package's functions, which validate; these
views only turn forms into calls, commit, and turn errors into messages.
"""

from __future__ import annotations

import io
from datetime import datetime

from flask import abort, flash, redirect, request, url_for
from flask_admin import BaseView, expose
from sqlalchemy import select

from wch import runtime
from wch.admin.audit import audited
from wch.admin.auth import StaffOnly
from wch.admin.export import csv_response
from wch.admin.formatting import StoreTime
from wch.db import db, read_only, transaction
from wch.messaging import campaigns, limits
from wch.models import Campaign, CampaignStatus, Recipient, RecipientStatus
from wch.whatsapp import DEFAULT_SENDER

RECIPIENTS_PAGE = 100
MAX_PAGE = 100_000  # 10 million recipients; a larger page number would overflow the database's OFFSET
CLOSED = (CampaignStatus.COMPLETED.value, CampaignStatus.CANCELLED.value)
ACTIONS = {
    "pause": campaigns.pause_campaign,
    "resume": campaigns.resume_campaign,
    "cancel": campaigns.cancel_campaign,
    "retry": campaigns.retry_failed,
}


class CampaignsView(StaffOnly, BaseView):
    """``/admin/campaigns/``: campaigns with their progress; create, start, pause, resume, cancel, retry failed."""

    @expose("/")
    def index(self):
        found = campaigns.list_campaigns(limit=100)
        return self.render("admin/wch/campaigns_list.html", campaigns=found)

    @expose("/new", methods=["GET", "POST"])
    def create(self):
        form = request.form
        if request.method == "GET":
            return self.render("admin/wch/campaign_new.html", form={}, error=None)
        upload = request.files.get("csv_file")
        use_csv = form.get("audience") == "csv"
        if use_csv and (upload is None or not upload.filename):
            return self.render("admin/wch/campaign_new.html", form=form, error="choose a CSV file"), 400
        use_template = form.get("kind", "template") == "template"
        try:
            start_at = _start_time(form)
            with transaction():
                result = campaigns.create_campaign(
                    name=form.get("name", ""),
                    template_name=form.get("template_name") if use_template else None,
                    template_language=form.get("template_language") or "en_US",
                    template_parameters=[p.strip() for p in form.get("template_parameters", "").splitlines()
                                         if p.strip()] if use_template else (),
                    text=None if use_template else form.get("text"),
                    all_contacts=not use_csv,
                    csv_file=(io.TextIOWrapper(upload.stream, encoding="utf-8-sig", errors="replace")
                              if use_csv else None),
                    # A chunk at a time: a big file never holds the database (SQLite's write lock) for long.
                    on_chunk=lambda added: db.session.commit(),
                )
                # Read before the commit: reading the committed (expired) campaign later would
                # begin a transaction, holding SQLite's write lock, until the request ends.
                campaign_id, total = result.campaign.id, result.campaign.total
                audited("campaign.create", f"campaign:{campaign_id}", name=result.campaign.name, recipients=total,
                        audience="csv" if use_csv else "all contacts")
        except (campaigns.CampaignError, ValueError) as error:
            return self.render("admin/wch/campaign_new.html", form=form, error=str(error)), 400
        if form.get("start") in {"now", "at"}:
            try:
                with transaction():
                    campaigns.start_campaign(campaign_id, at=start_at,
                                             max_broker_delay=runtime.settings().max_broker_delay)
                    audited("campaign.start", f"campaign:{campaign_id}", at=start_at.isoformat() if start_at else "now")
            except campaigns.CampaignError as error:
                flash(f"Created, but not started: {error}", "warning")
        flash(f"Campaign created with {total} recipient(s).", "success")
        if result.bad_count:
            flash(f"{result.bad_count} CSV row(s) were left out; see the report below.", "warning")
        return self.render("admin/wch/campaign_created.html", result=result, campaign_id=campaign_id,
                           plan=_plan(campaign_id))

    @expose("/<int:campaign_id>")
    def details(self, campaign_id: int):
        try:
            progress = campaigns.progress(campaign_id)
        except campaigns.CampaignNotFound:
            abort(404)
        status = request.args.get("status", "")
        status = status if status in {s.value for s in RecipientStatus} else ""
        page = min(max(0, request.args.get("page", 0, type=int)), MAX_PAGE)
        rows = campaigns.list_recipients(campaign_id, status=status or None, limit=RECIPIENTS_PAGE + 1,
                                         offset=page * RECIPIENTS_PAGE)
        plan = _plan(campaign_id) if progress["status"] not in CLOSED else None
        return self.render("admin/wch/campaign_detail.html", c=progress, plan=plan, recipients=rows[:RECIPIENTS_PAGE],
                           has_more=len(rows) > RECIPIENTS_PAGE, page=page, status=status,
                           statuses=[s.value for s in RecipientStatus])

    @expose("/<int:campaign_id>/recipients.csv")
    def export(self, campaign_id: int):
        """Every recipient of the campaign as CSV: phone, name, state, when sent, delivered and read, error."""
        columns = (Recipient.phone, Recipient.name, Recipient.status, Recipient.sent_at, Recipient.delivered_at,
                   Recipient.read_at, Recipient.error_code, Recipient.error)
        with read_only():
            if db.session.get(Campaign, campaign_id) is None:
                abort(404)
            rows = db.session.execute(select(*columns).where(Recipient.campaign_id == campaign_id)
                                      .order_by(Recipient.id)).all()
        return csv_response(f"campaign-{campaign_id}-recipients.csv", [c.key for c in columns], rows)

    @expose("/<int:campaign_id>/start", methods=["POST"])
    def start(self, campaign_id: int):
        try:
            at = _start_time(request.form)
            with transaction():
                campaigns.start_campaign(campaign_id, at=at, max_broker_delay=runtime.settings().max_broker_delay)
                audited("campaign.start", f"campaign:{campaign_id}", at=at.isoformat() if at else "now")
            flash("Campaign started." if request.form.get("start") != "at" else "Campaign scheduled.", "success")
        except (campaigns.CampaignError, ValueError) as error:
            flash(str(error), "danger")
        return redirect(url_for(".details", campaign_id=campaign_id))

    @expose("/<int:campaign_id>/<action>", methods=["POST"])
    def act(self, campaign_id: int, action: str):
        if action not in ACTIONS:
            abort(404)
        try:
            with transaction():
                outcome = ACTIONS[action](campaign_id)
                audited("campaign.retry_failed" if action == "retry" else f"campaign.{action}",
                        f"campaign:{campaign_id}")
                message = (f"{outcome} failed recipient(s) will be sent again." if action == "retry"
                           else f"Campaign {outcome.status}.")
            flash(message, "success")
        except campaigns.CampaignError as error:
            flash(str(error), "danger")
        return redirect(url_for(".details", campaign_id=campaign_id))


def _plan(campaign_id: int) -> dict:
    """How the campaign's recipients still to send spread over the days WhatsApp's messaging limit allows."""
    settings = runtime.settings()
    with read_only():
        return limits.plan_campaign(campaign_id, sender=settings.whatsapp_phone_number_id or DEFAULT_SENDER,
                                    configured=settings.messaging_limit)


def _start_time(form) -> datetime | None:
    """The ``start_at`` field when ``start`` is ``at``, in UTC; else now (None).

    A time without an offset (what a ``datetime-local`` input sends) is in
    the store's zone (``WCH_TIMEZONE``); one with an offset is converted.
    """
    if form.get("start") != "at":
        return None
    try:
        return StoreTime(runtime.settings().timezone).parse(form.get("start_at") or "")
    except ValueError as error:
        raise campaigns.CampaignError(str(error)) from None
