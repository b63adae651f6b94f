"""Contacts in the panel: found by phone, with what was sent to them; admins opt them out or back in."""

from __future__ import annotations

from flask import abort, flash, redirect, request, url_for
from flask_admin import BaseView, expose
from sqlalchemy import select

from wch.admin.audit import audited
from wch.admin.auth import StaffOnly
from wch.admin.paging import requested_page
from wch.db import db, read_only, transaction
from wch.messaging import contacts
from wch.models import Campaign, Cart, Contact, Order, Recipient

SHOWN = 50


class ContactsView(StaffOnly, BaseView):
    """``/admin/contacts/``: customers by when we first heard of them, by phone or opt-out; opt-out and opt-in."""

    @expose("/")
    def index(self):
        q = request.args.get("q", "").strip()[:40]
        opted_out = request.args.get("opted_out") == "yes"
        query = select(Contact)
        if q:
            try:
                query = query.where(Contact.phone == contacts.normalize_phone(q))
            except contacts.InvalidPhone:
                query = query.where(Contact.phone == q)
        if opted_out:
            query = query.where(Contact.opted_out_at.is_not(None))
        filters = {key: value for key, value in (("q", q), ("opted_out", "yes" if opted_out else "")) if value}
        with read_only():
            page = requested_page(query, at=Contact.created_at, key=Contact.id)
            return self.render("admin/wch/contacts_list.html", contacts=page.rows, q=q, opted_out=opted_out,
                               filters=filters, first_page=page.first,
                               older=page.older_url(filters))

    @expose("/<int:contact_id>")
    def details(self, contact_id: int):
        with read_only():
            contact = db.session.get(Contact, contact_id)
            if contact is None:
                abort(404)
            sent = db.session.execute(
                select(Recipient, Campaign.name).join(Campaign, Campaign.id == Recipient.campaign_id)
                .where(Recipient.phone == contact.phone).order_by(Recipient.id.desc()).limit(SHOWN)
            ).all()
            orders = list(db.session.scalars(select(Order).where(Order.customer_phone == contact.phone)
                                             .order_by(Order.updated_at.desc()).limit(SHOWN)))
            carts = list(db.session.scalars(select(Cart).where(Cart.customer_phone == contact.phone)
                                            .order_by(Cart.updated_at.desc()).limit(SHOWN)))
            return self.render("admin/wch/contact_detail.html", contact=contact, sent=sent, orders=orders,
                               carts=carts)

    @expose("/<int:contact_id>/<action>", methods=["POST"])
    def change_opt_out(self, contact_id: int, action: str):
        if action not in ("opt-out", "opt-in"):
            abort(404)
        with transaction():
            contact = db.session.get(Contact, contact_id)
            if contact is None:
                abort(404)
            phone = contact.phone
            (contacts.opt_out if action == "opt-out" else contacts.opt_in)(phone)
            audited("contact.opt_out" if action == "opt-out" else "contact.opt_in", f"contact:{phone}")
        flash(f"{phone} will get no broadcasts or reminders." if action == "opt-out"
              else f"{phone} may get broadcasts and reminders again.", "success")
        return redirect(url_for(".details", contact_id=contact_id))

