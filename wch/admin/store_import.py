"""``/admin/store-import/``: bring the store's catalog and orders in, with each import's progress."""

from __future__ import annotations

from flask import flash, redirect, url_for
from flask_admin import BaseView, expose

from wch import runtime
from wch.admin.auth import StaffOnly
from wch.db import read_only, transaction
from wch.jobs import find_pending
from wch.store import importer


class StoreImportView(StaffOnly, BaseView):
    """The last import of products and of orders, and buttons (admins only) that start or resume one."""

    @expose("/")
    def index(self):
        settings = runtime.settings()
        with read_only():
            imports = {kind: importer.latest(kind) for kind in importer.KINDS}
            pending = {kind: find_pending(importer.IMPORT_STORE, kind) is not None for kind in importer.KINDS}
            failed = {kind: _last_failure(kind) for kind in importer.KINDS}
            shown = {kind: row.to_dict() if row else None for kind, row in imports.items()}
        running = any(pending.values()) or any(row and row["status"] == "running" for row in shown.values())
        return self.render("admin/wch/store_import.html", imports=shown, pending=pending, failed=failed,
                           store_url=settings.woocommerce_url, configured=_configured(settings),
                           currency=settings.store_currency, refresh=running)

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


def _last_failure(kind: str) -> str | None:
    """Why the last import job of ``kind`` failed for good (a refused key, say), if it did."""
    job = importer.last_job(kind)
    return job.last_error if job is not None and job.status == "failed" else None
