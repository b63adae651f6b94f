"""The dashboard at ``/admin/``: what is pending, what failed, workers, queues, carts, campaigns."""

from __future__ import annotations

from datetime import datetime

from flask import flash, redirect, url_for
from flask_admin import AdminIndexView, expose

from wch import runtime
from wch.admin.audit import audited
from wch.admin.auth import StaffOnly
from wch.admin.formatting import StoreTime
from wch.carts.cleanup import cleanup_later
from wch.db import transaction
from wch.monitoring.overview import overview


class DashboardView(StaffOnly, AdminIndexView):
    """The panel's home page; ``/admin/fragment`` is its body alone, fetched every 30 s to refresh it."""

    @expose("/")
    def index(self):
        return self.render("admin/wch/dashboard.html", **self._numbers())

    @expose("/fragment")
    def fragment(self):
        return self.render("admin/wch/_dashboard_body.html", **self._numbers())

    @expose("/cleanup", methods=["POST"])
    def cleanup(self):
        # unique: a double click (or two staff members) queue one cleanup, not two.
        with transaction():
            job_id = cleanup_later("panel", unique=True).id
            audited("carts.cleanup", f"job:{job_id}")
        flash(f"Cart cleanup queued (job {job_id}).", "success")
        return redirect(url_for(".index"))

    def _numbers(self) -> dict:
        settings = runtime.settings()
        numbers = overview(settings)
        store_time = StoreTime(settings.timezone)
        hourly = numbers["hourly"]
        hourly["labels"] = [store_time.hour_label(datetime.fromisoformat(hour)) for hour in hourly["hours"]]
        return {"o": numbers, "settings": settings}
