"""The admin panel at ``/admin/`` (Flask-Admin, Bootstrap 4) and staff log-in.

:func:`init_admin` builds a fresh :class:`flask_admin.Admin` for each app, since
Flask-Admin views are bound to the app they are registered on.
"""

from __future__ import annotations

from flask import Flask
from flask_admin import Admin
from flask_admin.theme import Bootstrap4Theme

from wch.admin.audit import AuditView
from wch.admin.auth import init_auth
from wch.admin.campaigns import CampaignsView
from wch.admin.carts import CartsView
from wch.admin.contacts import ContactsView
from wch.admin.dashboard import DashboardView
from wch.admin.formatting import StoreTime, ago, short
from wch.admin.jobs import JobsView
from wch.admin.messages import MessagesView
from wch.admin.settings import SettingsView
from wch.admin.store import DeliveriesView, OrdersView, ProductsView
from wch.admin.store_import import StoreImportView
from wch.admin.users import UsersView
from wch.config import Settings
from wch.monitoring.humanize import duration
from wch.redact import redact_text


def init_admin(app: Flask, settings: Settings) -> Admin:
    init_auth(app, settings)
    admin = Admin(
        app,
        name="wch",
        index_view=DashboardView(name="Dashboard", url="/admin"),
        theme=Bootstrap4Theme(base_template="admin/wch/base.html", fluid=True),
    )
    admin.add_view(JobsView(name="Jobs", endpoint="jobs", url="/admin/jobs"))
    admin.add_view(OrdersView(name="Orders", endpoint="orders", url="/admin/orders", category="Store"))
    admin.add_view(ProductsView(name="Products", endpoint="products", url="/admin/products", category="Store"))
    admin.add_view(DeliveriesView(name="Webhook deliveries", endpoint="deliveries", url="/admin/deliveries",
                                  category="Store"))
    admin.add_view(CartsView(name="Carts", endpoint="carts", url="/admin/carts"))
    admin.add_view(ContactsView(name="Contacts", endpoint="contacts", url="/admin/contacts"))
    admin.add_view(CampaignsView(name="Campaigns", endpoint="campaigns", url="/admin/campaigns"))
    admin.add_view(SettingsView(name="Settings", endpoint="reminder_settings", url="/admin/settings"))
    admin.add_view(MessagesView(name="Messages", endpoint="messages", url="/admin/messages"))
    admin.add_view(StoreImportView(name="Store import", endpoint="store_import", url="/admin/store-import",
                                   category="Store"))
    admin.add_view(UsersView(name="Users", endpoint="users", url="/admin/users", category="Staff"))
    admin.add_view(AuditView(name="Audit log", endpoint="audit", url="/admin/audit", category="Staff"))
    store_time = StoreTime(settings.timezone)
    app.jinja_env.filters["when"] = store_time.when
    app.jinja_env.filters["iso_when"] = store_time.iso_when
    app.jinja_env.filters["ago"] = ago
    app.jinja_env.filters["duration"] = duration
    app.jinja_env.filters["redact_short"] = lambda text: short(redact_text(text))
    app.jinja_env.globals["store_time"] = store_time
    # Loud on every page: in the sandbox no customer hears anything, whatever the panel shows.
    app.jinja_env.globals["whatsapp_sandbox"] = settings.whatsapp_sandbox
    return admin
