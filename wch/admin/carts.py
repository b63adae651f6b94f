"""Carts in the panel: a list filtered by status and idle time, and one cart with its items."""

from __future__ import annotations

from datetime import timedelta

from flask import abort, request
from flask_admin import BaseView, expose
from sqlalchemy import select
from sqlalchemy.orm import defer

from wch import runtime
from wch.admin.auth import StaffOnly
from wch.admin.paging import requested_page
from wch.db import db, utcnow
from wch.models import Cart, CartStatus

IDLE = {"1h": timedelta(hours=1), "24h": timedelta(hours=24), "expired": None, "7d": timedelta(days=7)}


class CartsView(StaffOnly, BaseView):
    """``/admin/carts/``: carts by last activity, newest first; ``expired`` means idle past the cleanup cutoff."""

    @expose("/")
    def index(self):
        now = utcnow()
        expiry = timedelta(hours=runtime.settings().cart_expiry_hours)
        status = request.args.get("status", "")
        status = status if status in {s.value for s in CartStatus} else ""
        idle = request.args.get("idle", "")
        idle = idle if idle in IDLE else ""
        filters = {key: value for key, value in (("status", status), ("idle", idle)) if value}

        query = select(Cart).options(defer(Cart.items))
        if status:
            query = query.where(Cart.status == status)
        if idle:
            query = query.where(Cart.updated_at < now - (IDLE[idle] or expiry))
        page = requested_page(query, at=Cart.updated_at, key=Cart.id)
        return self.render(
            "admin/wch/carts_list.html",
            carts=page.rows,
            filters=filters,
            statuses=[s.value for s in CartStatus],
            idle_choices={"1h": "idle > 1 h", "24h": "idle > 24 h",
                          "expired": f"expired (idle > {expiry.total_seconds() / 3600:.0f} h)", "7d": "idle > 7 days"},
            older=page.older_url(filters),
            first_page=page.first,
            now=now,
            expiry=expiry,
        )

    @expose("/<int:cart_id>")
    def details(self, cart_id: int):
        cart = db.session.get(Cart, cart_id)
        if cart is None:
            abort(404)
        expiry = timedelta(hours=runtime.settings().cart_expiry_hours)
        return self.render("admin/wch/cart_detail.html", cart=cart, now=utcnow(), expiry=expiry)

