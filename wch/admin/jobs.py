"""Jobs in the panel: a filtered list, a job's page, retry and cancel (one, selected, or all matching)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import abort, flash, redirect, request, url_for
from flask_admin import BaseView, expose
from sqlalchemy import func, select
from sqlalchemy.orm import load_only

from wch import runtime
from wch.admin import subjects
from wch.admin.audit import audited
from wch.admin.auth import StaffOnly
from wch.admin.export import csv_response
from wch.admin.formatting import short
from wch.admin.paging import requested_page
from wch.db import db, read_only, transaction, utcnow
from wch.jobs import DispatchError, cancel, end_stuck, retry, retry_many
from wch.jobs.dispatcher import job_types
from wch.models import Job, JobStatus, WorkerProcess
from wch.redact import redact_text, redact_value

# An error-text search reads at most this many failed jobs (newest first) of
# the chosen type and time window, never the whole table: LIKE '%text%' cannot
# use an index, so the scan itself has to be bounded.
SEARCH_SCAN_CAP = 10_000
MAX_SELECTED = 500
WINDOWS = {"1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}
JOB_ID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
LIST_COLUMNS = (Job.id, Job.type, Job.status, Job.attempts, Job.enqueued_at, Job.eta, Job.finished_at, Job.last_error,
                Job.subject)
# Most rows one CSV export of the jobs list holds (newest first).
EXPORT_CAP = 10_000


@dataclass(frozen=True)
class JobFilter:
    """The list's filters, from the query string: type, status, time window and search text."""

    type: str = ""
    status: str = ""
    since: str = ""
    q: str = ""

    @classmethod
    def from_args(cls, args) -> JobFilter:
        status = args.get("status", "")
        since = args.get("since", "")
        return cls(
            type=args.get("type", "").strip(),
            status=status if status in {s.value for s in JobStatus} else "",
            since=since if since in WINDOWS else "",
            q=args.get("q", "").strip()[:200],
        )

    def as_args(self) -> dict[str, str]:
        return {key: value for key, value in vars(self).items() if value}

    @property
    def is_id_search(self) -> bool:
        return bool(JOB_ID.match(self.q))

    @property
    def is_error_search(self) -> bool:
        return bool(self.q) and not self.is_id_search

    def where(self, query, *, now: datetime):
        if self.type:
            query = query.where(Job.type == self.type)
        if self.status:
            query = query.where(Job.status == self.status)
        if self.since:
            query = query.where(Job.enqueued_at >= now - WINDOWS[self.since])
        return query


def failed_matching(filters: JobFilter, *, limit: int, now: datetime):
    """Ids of failed jobs matching ``filters``, newest first, at most ``limit``.

    With search text, only the newest :data:`SEARCH_SCAN_CAP` failed jobs of the
    window are read (through ``ix_jobs_status_enqueued_at``), then filtered by
    their error text.
    """
    failed = JobFilter(type=filters.type, status=JobStatus.FAILED.value, since=filters.since)
    subject = subjects.parse(filters.q) if filters.is_error_search else None
    if subject is not None:
        query = failed.where(select(Job.id).where(Job.subject.in_(subject.subjects or ("",))), now=now)
        return query.order_by(Job.enqueued_at.desc(), Job.id.desc()).limit(limit)
    if not filters.q:
        query = failed.where(select(Job.id), now=now).order_by(Job.enqueued_at.desc(), Job.id.desc())
        return query.limit(limit)
    if filters.is_id_search:
        return select(Job.id).where(Job.id == filters.q.lower(), Job.status == JobStatus.FAILED.value)
    window = failed.where(select(Job.id), now=now).order_by(Job.enqueued_at.desc()).limit(SEARCH_SCAN_CAP)
    return (
        select(Job.id)
        .where(Job.id.in_(window.scalar_subquery()), func.lower(Job.last_error).contains(filters.q.lower(),
                                                                                        autoescape=True))
        .order_by(Job.enqueued_at.desc(), Job.id.desc())
        .limit(limit)
    )


def matching(filters: JobFilter, query, *, now: datetime):
    """``query`` narrowed to the jobs ``filters`` match, and a note on how the search was read (or None).

    A job id is one primary-key lookup; ``order 1234``, ``sku SKU-9`` or a
    phone reads the jobs about those subjects (:mod:`wch.admin.subjects`);
    other text searches the error of recent failed jobs.
    """
    if filters.is_id_search:
        return query.where(Job.id == filters.q.lower()), None
    subject = subjects.parse(filters.q) if filters.q else None
    if subject is not None:
        query = filters.where(query.where(Job.subject.in_(subject.subjects or ("",))), now=now)
        return query, f"Jobs about {subject.label}" + ("" if subject.subjects else ": nothing by that name.")
    if filters.is_error_search:
        query = query.where(Job.id.in_(failed_matching(filters, limit=SEARCH_SCAN_CAP, now=now).scalar_subquery()))
        return query, (f"Error text is searched in failed jobs only: the newest {SEARCH_SCAN_CAP:,} of the chosen "
                       "type and time window.")
    return filters.where(query, now=now), None


class JobsView(StaffOnly, BaseView):
    """``/admin/jobs/``: the jobs ledger, newest first, filtered by type, status, time, id or error text."""

    @expose("/")
    def index(self):
        now = utcnow()
        filters = JobFilter.from_args(request.args)
        query, notice = matching(filters, select(Job).options(load_only(*LIST_COLUMNS)), now=now)
        page = requested_page(query, at=Job.enqueued_at, key=Job.id)
        return self.render(
            "admin/wch/jobs_list.html",
            jobs=page.rows,
            filters=filters,
            types=job_types(),
            statuses=[s.value for s in JobStatus],
            windows=list(WINDOWS),
            older=page.older_url(filters.as_args()),
            first_page=page.first,
            notice=notice,
            errors={job.id: short(redact_text(job.last_error)) for job in page.rows},
            now=now,
        )

    @expose("/export.csv")
    def export(self):
        """The filtered list as CSV, newest first, at most :data:`EXPORT_CAP` rows."""
        now = utcnow()
        filters = JobFilter.from_args(request.args)
        with read_only():
            query, _ = matching(filters, select(*LIST_COLUMNS), now=now)
            rows = db.session.execute(query.order_by(Job.enqueued_at.desc(), Job.id.desc()).limit(EXPORT_CAP)).all()
        header = ["id", "type", "status", "attempts", "enqueued_at", "eta", "finished_at", "last_error", "subject"]
        return csv_response("jobs.csv", header, ([*row[:7], redact_text(row.last_error), row.subject] for row in rows))

    @expose("/<job_id>")
    def details(self, job_id: str):
        job = db.session.get(Job, job_id)
        if job is None:
            abort(404)
        return self.render(
            "admin/wch/job_detail.html",
            job=job,
            args_text=_pretty(redact_value(job.args)),
            result_text=_pretty(redact_value(job.result)) if job.result is not None else None,
            last_error=redact_text(job.last_error),
            traceback=redact_text(job.traceback),
            attempts=[
                {"attempt": a, "error": redact_text(a.error), "traceback": redact_text(a.traceback)}
                for a in job.attempt_log
            ],
            worker_gone=job.status == JobStatus.RUNNING.value and _worker_gone(job.worker),
            now=utcnow(),
        )

    @expose("/<job_id>/retry", methods=["POST"])
    def retry(self, job_id: str):
        self._act(retry, [job_id], done="retrying", audit_as="job.retry", via="job page")
        return redirect(url_for(".details", job_id=job_id))

    @expose("/<job_id>/fail", methods=["POST"])
    def fail(self, job_id: str):
        self._act(end_stuck, [job_id], done="failed", audit_as="job.fail", via="job page")
        return redirect(url_for(".details", job_id=job_id))

    @expose("/<job_id>/cancel", methods=["POST"])
    def cancel(self, job_id: str):
        self._act(cancel, [job_id], done="canceled", audit_as="job.cancel", via="job page")
        return redirect(url_for(".details", job_id=job_id))

    @expose("/bulk", methods=["POST"])
    def bulk(self):
        ids = request.form.getlist("ids")[:MAX_SELECTED]
        action = request.form.get("action")
        if action not in {"retry", "cancel"}:
            abort(400, "unknown action")
        if not ids:
            flash("Select some jobs first.", "warning")
        elif action == "retry":
            self._act(retry, ids, done="retrying", audit_as="job.retry", via="selected")
        else:
            self._act(cancel, ids, done="canceled", audit_as="job.cancel", via="selected")
        return redirect(_same_site(request.form.get("next")) or url_for(".index"))

    @expose("/retry-failed", methods=["GET", "POST"])
    def retry_matching(self):
        """Retry every failed job the filter matches, up to ``WCH_PANEL_RETRY_CAP``, after a confirmation."""
        cap = runtime.settings().panel_retry_cap
        source = request.form if request.method == "POST" else request.args
        filters = JobFilter.from_args(source)
        now = utcnow()
        if request.method == "POST" and request.form.get("confirm") == "yes":
            with transaction():
                ids = list(db.session.scalars(failed_matching(filters, limit=cap, now=now)))
                retried = retry_many(ids)
                for job_id in retried:
                    audited("job.retry", f"job:{job_id}", via="all failed matching a filter")
            if retried:
                flash(f"{len(retried)} job(s) retrying.", "success")
            if len(retried) < len(ids):
                flash(f"{len(ids) - len(retried)} job(s) left as they were (retried meanwhile, or a job with "
                      "the same dedupe key is pending).", "warning")
            return redirect(url_for(".index", **filters.as_args()))
        matching = db.session.scalar(
            select(func.count()).select_from(failed_matching(filters, limit=cap + 1, now=now).subquery())
        )
        return self.render("admin/wch/jobs_retry_confirm.html", filters=filters, matching=matching, cap=cap)

    def _act(self, action, ids: list[str], *, done: str, audit_as: str, via: str) -> None:
        """Apply ``action`` to each job in its own transaction (with its audit entry), so one refusal does not
        undo the others."""
        applied, refused = 0, []
        for job_id in ids:
            try:
                with transaction():
                    action(job_id)
                    audited(audit_as, f"job:{job_id}", via=via)
                applied += 1
            except DispatchError as error:
                refused.append(str(error))
        if applied:
            flash(f"{applied} job(s) {done}.", "success")
        for message in refused[:5]:
            flash(message, "warning")
        if len(refused) > 5:
            flash(f"… and {len(refused) - 5} more job(s) refused.", "warning")


def _worker_gone(worker: str | None) -> bool:
    """Whether the worker has been silent longer than ``WCH_WORKER_LOST_AFTER`` (or never announced itself)."""
    beat = db.session.scalar(select(WorkerProcess.heartbeat_at).where(WorkerProcess.id == worker))
    return beat is None or beat < utcnow() - timedelta(seconds=runtime.settings().worker_lost_after)


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


def _same_site(target: str | None) -> str | None:
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return None
