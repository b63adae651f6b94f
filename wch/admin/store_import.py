"""``/admin/store-import/``: bring the store's catalog and orders in, with each import's progress."""

from __future__ import annotations

from flask import flash, redirect, url_for
from flask_admin import BaseView, expose

from wch import runtime
from wch.admin.auth import StaffOnly
from wch.db import read_only, transaction
from wch.store import importer


class StoreImportView(StaffOnly, BaseView):
    """The last import of products and of orders, and buttons (admins only) that start or resume one."""

    @expose("/")
    def index(self):
        settings = runtime.settings()
        with read_only():
            shown = {kind: _shown(importer.latest(kind)) for kind in importer.KINDS}
            jobs = {kind: importer.last_job(kind) for kind in importer.KINDS}
            busy = {kind: importer.is_busy(job) for kind, job in jobs.items()}
            failed = {kind: job.last_error if job is not None and job.status == "failed" else None
                      for kind, job in jobs.items()}
        return self.render("admin/wch/store_import.html", imports=shown, busy=busy, failed=failed,
                           store_url=settings.woocommerce_url, configured=_configured(settings),
                           currency=settings.store_currency, refresh=any(busy.values()))

    @expose("/<kind>", methods=["POST"])
    def start(self, kind: str):
        if kind not in importer.KINDS:
            flash(f"Unknown import {kind!r}.", "danger")
            return redirect(url_for(".index"))
        with transaction():
            importer.import_later(kind)
        flash(f"Import of {kind} queued: it resumes an unfinished one, if any.", "success")
        return redirect(url_for(".index"))


def _configured(settings) -> bool:
    return bool(settings.woocommerce_url and settings.woocommerce_consumer_key and settings.woocommerce_consumer_secret)


def _shown(row) -> dict | None:
    return row.to_dict() if row is not None else None
