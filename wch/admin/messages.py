"""Messages in the panel: the sending number's limits and standing, and the messages in doubt, to settle.

Every change goes through :mod:`wch.messaging.unsettled` and
:mod:`wch.messaging.standing`; these views turn forms into calls and commit.
"""

from __future__ import annotations

from datetime import timedelta

from flask import flash, redirect, request, url_for
from flask_admin import BaseView, expose
from flask_login import current_user

from wch import runtime
from wch.admin.auth import StaffOnly
from wch.db import read_only, transaction
from wch.messaging import standing, unsettled
from wch.whatsapp import DEFAULT_SENDER, WhatsAppError, shared_client


class MessagesView(StaffOnly, BaseView):
    """``/admin/messages/``: WhatsApp's limits on the number, and customer messages whose fate is in doubt."""

    @expose("/")
    def index(self):
        settings = runtime.settings()
        with read_only():
            number = standing.current(_sender(), configured=settings.messaging_limit)
            rows = unsettled.list_unsettled(older_than=timedelta(seconds=settings.uncertain_after))
        return self.render("admin/wch/messages.html", standing=number, rows=rows,
                           uncertain_after=settings.uncertain_after)

    @expose("/settle", methods=["POST"])
    def settle(self):
        outcome = request.form.get("outcome")
        if outcome not in ("sent", "not-sent"):
            flash("Say whether the customer got the message.", "danger")
            return redirect(url_for(".index"))
        try:
            with transaction():
                done = unsettled.settle(request.form.get("ref", ""), sent=outcome == "sent",
                                        by=f"panel:{current_user.email}")
            flash(done[:1].upper() + done[1:] + ".", "success")
        except unsettled.SettleError as error:
            flash(str(error), "danger")
        return redirect(url_for(".index"))

    @expose("/refresh", methods=["POST"])
    def refresh(self):
        try:
            answer = shared_client(runtime.settings()).phone_number_standing()
        except WhatsAppError as error:
            flash(f"Meta did not answer: {error}", "danger")
            return redirect(url_for(".index"))
        with transaction():
            standing.apply_api_standing(_sender(), answer)
        flash("Quality rating and messaging limit read from Meta.", "success")
        return redirect(url_for(".index"))


def _sender() -> str:
    return runtime.settings().whatsapp_phone_number_id or DEFAULT_SENDER
