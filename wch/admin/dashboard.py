"""The dashboard at ``/admin/``: what is pending, what failed, workers, queues, carts, campaigns."""

from __future__ import annotations

from flask import current_app, flash, redirect, url_for
from flask_admin import AdminIndexView, expose

from wch.admin.auth import StaffOnly
from wch.db import db
from wch.dispatcher import dispatch
from wch.overview import overview


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
        job = dispatch("cleanup_carts", {"trigger": "panel"}, unique=True)
        job_id = job.id
        db.session.commit()
        flash(f"Cart cleanup queued (job {job_id}).", "success")
        return redirect(url_for(".index"))

    def _numbers(self) -> dict:
        settings = current_app.extensions["wch"].settings
        return {"o": overview(settings), "settings": settings}
