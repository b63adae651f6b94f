"""The admin panel at ``/admin/`` (Flask-Admin, Bootstrap 4) and staff log-in.

:func:`init_admin` builds a fresh :class:`flask_admin.Admin` for each app, since
Flask-Admin views are bound to the app they are registered on.
"""

from __future__ import annotations

from datetime import datetime

from flask import Flask
from flask_admin import Admin
from flask_admin.theme import Bootstrap4Theme

from wch import runtime
from wch.admin.auth import bp as auth_bp
from wch.admin.auth import login_manager
from wch.admin.campaigns import CampaignsView
from wch.admin.carts import CartsView
from wch.admin.dashboard import DashboardView
from wch.admin.jobs import JobsView
from wch.admin.settings import SettingsView
from wch.admin.store_import import StoreImportView
from wch.monitoring.humanize import duration


def init_admin(app: Flask) -> Admin:
    login_manager.init_app(app)
    app.register_blueprint(auth_bp)
    admin = Admin(
        app,
        name="wch",
        index_view=DashboardView(name="Dashboard", url="/admin"),
        theme=Bootstrap4Theme(base_template="admin/wch/base.html", fluid=True),
    )
    admin.add_view(JobsView(name="Jobs", endpoint="jobs", url="/admin/jobs"))
    admin.add_view(CartsView(name="Carts", endpoint="carts", url="/admin/carts"))
    admin.add_view(CampaignsView(name="Campaigns", endpoint="campaigns", url="/admin/campaigns"))
    admin.add_view(SettingsView(name="Settings", endpoint="reminder_settings", url="/admin/settings"))
    admin.add_view(StoreImportView(name="Store import", endpoint="store_import", url="/admin/store-import"))
    app.jinja_env.filters["when"] = when
    app.jinja_env.filters["iso_when"] = lambda value: when(datetime.fromisoformat(value)) if value else "—"
    app.jinja_env.filters["ago"] = ago
    app.jinja_env.filters["duration"] = duration
    # Loud on every page: in the sandbox no customer hears anything, whatever the panel shows.
    app.context_processor(lambda: {"whatsapp_sandbox": runtime.settings().whatsapp_sandbox})
    return admin


def when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else "—"


def ago(value: datetime | None, now: datetime) -> str:
    if value is None:
        return "—"
    seconds = (now - value).total_seconds()
    return f"in {duration(-seconds)}" if seconds < 0 else f"{duration(seconds)} ago"
