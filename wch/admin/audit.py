"""The audit trail in the panel: :func:`audited` records a staff action; ``/admin/audit/`` lists them (admins only)."""

from __future__ import annotations

from typing import Any

from flask import request
from flask_admin import BaseView, expose
from flask_login import current_user
from sqlalchemy import select

from wch.admin.auth import AdminOnly
from wch.admin.paging import requested_page
from wch.db import read_only
from wch.models import AuditEntry
from wch.staff import audit


def audited(action: str, target: str | None = None, **details: Any) -> None:
    """Record ``action`` by the logged-in staff member, from the request's address. The caller commits."""
    audit.record(action, actor=current_user.email, target=target, address=request.remote_addr, details=details)


class AuditView(AdminOnly, BaseView):
    """``/admin/audit/``: who changed what, when and from where, newest first, by action or staff member."""

    @expose("/")
    def index(self):
        action = request.args.get("action", "")
        action = action if action in audit.ACTIONS else ""
        actor = request.args.get("actor", "").strip()[:254]
        filters = {key: value for key, value in (("action", action), ("actor", actor)) if value}
        query = select(AuditEntry)
        if action:
            query = query.where(AuditEntry.action == action)
        if actor:
            query = query.where(AuditEntry.actor == actor)
        with read_only():
            page = requested_page(query, at=AuditEntry.at, key=AuditEntry.id)
            return self.render("admin/wch/audit_list.html", entries=page.rows, filters=filters,
                               actions=audit.ACTIONS, first_page=page.first,
                               older=page.older_url(filters))
