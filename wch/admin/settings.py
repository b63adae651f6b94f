"""Reminder settings in the panel, on top of :mod:`wch.carts.reminder_settings`."""

from __future__ import annotations

from flask import flash, redirect, request, url_for
from flask_admin import BaseView, expose

from wch import runtime
from wch.admin.audit import audited
from wch.admin.auth import StaffOnly
from wch.carts import reminder_settings
from wch.db import read_only, transaction

FIELDS = ("delay_hours", "message", "template_name", "template_language", "cart_url")
# Sample values for the reminder message's live preview.
PREVIEW = {"name": "Ana", "items": "2 × Linen shirt, Canvas tote", "total": "R$ 97.80",
           "cart_link": "https://store.example/cart/1234"}


class SettingsView(StaffOnly, BaseView):
    """``/admin/settings/``: abandoned-cart reminders (enabled, delay, message with a live preview)."""

    @expose("/", methods=["GET", "POST"])
    def index(self):
        errors: dict[str, str] = {}
        expiry_hours = runtime.settings().cart_expiry_hours
        if request.method == "POST":
            values = {key: request.form.get(key, "") for key in FIELDS}
            values["enabled"] = request.form.get("enabled") == "on"
            try:
                with transaction():
                    reminder_settings.save_settings(values, cart_expiry_hours=expiry_hours)
                    audited("settings.reminders", "reminder settings", **values)
                flash("Reminder settings saved.", "success")
                return redirect(url_for(".index"))
            except reminder_settings.ReminderSettingsError as error:
                errors = error.errors
        else:
            with read_only():
                values = reminder_settings.get_settings().to_dict()
        return self.render("admin/wch/settings.html", values=values, errors=errors, preview=PREVIEW,
                           placeholders=reminder_settings.PLACEHOLDERS,
                           min_hours=reminder_settings.MIN_DELAY_HOURS,
                           max_hours=reminder_settings.MAX_DELAY_HOURS,
                           expiry_hours=expiry_hours), 400 if errors else 200
