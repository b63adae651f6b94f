"""Read-only screens of the store's side: orders (with their notification), products (with their catalog sync) and
the store's webhook deliveries, each linking to the jobs about it."""

from __future__ import annotations

from flask import abort, request
from flask_admin import BaseView, expose
from sqlalchemy import or_, select

from wch.admin.auth import StaffOnly
from wch.admin.paging import requested_page
from wch.admin.subjects import PHONE, whole_number
from wch.db import db, read_only
from wch.messaging.contacts import InvalidPhone, normalize_phone
from wch.models import Job, Message, Order, Product, WebhookDelivery
from wch.store.orders import message_subject

JOBS_SHOWN = 20


def jobs_about(subject: str) -> list[Job]:
    """The newest jobs about ``subject``, read through ``ix_jobs_subject_enqueued_at``."""
    query = select(Job).where(Job.subject == subject).order_by(Job.enqueued_at.desc()).limit(JOBS_SHOWN)
    return list(db.session.scalars(query))


def _text_arg(name: str, length: int = 100) -> str:
    return request.args.get(name, "").strip()[:length]


class OrdersView(StaffOnly, BaseView):
    """``/admin/orders/``: orders by last change, found by number or the customer's phone; each with its messages."""

    @expose("/")
    def index(self):
        q = _text_arg("q", 64)
        query = select(Order)
        if q:
            query = query.where(_order_search(q))
        with read_only():
            page = requested_page(query, at=Order.updated_at, key=Order.id)
            notifications = _notifications(page.rows)
            filters = {"q": q} if q else {}
            return self.render("admin/wch/orders_list.html", orders=page.rows, notifications=notifications,
                               q=q, first_page=page.first,
                               older=page.older_url(filters))

    @expose("/<int:store_id>")
    def details(self, store_id: int):
        with read_only():
            order = db.session.scalars(select(Order).where(Order.store_id == store_id)).first()
            if order is None:
                abort(404)
            # Subjects are order:<store id>:<status>; the prefix is matched without a wildcard's escapes.
            prefix = message_subject(store_id, "")
            sent = list(db.session.scalars(select(Message).where(Message.subject.startswith(prefix, autoescape=True))
                                           .order_by(Message.created_at.desc())))
            notifications = [(message.subject.removeprefix(prefix), message) for message in sent]
            return self.render("admin/wch/order_detail.html", order=order, notifications=notifications,
                               jobs=jobs_about(f"order:{store_id}"))


def _order_search(q: str):
    number = whole_number(q.lstrip("#"))
    by_number = Order.number == q.lstrip("#")
    if number is not None:
        by_number = or_(by_number, Order.store_id == number)
    if PHONE.match(q):
        try:
            return or_(by_number, Order.customer_phone == normalize_phone(q))
        except InvalidPhone:
            pass
    return by_number


def _notifications(orders: list[Order]) -> dict[int, Message]:
    """The message about each order's current status, if one was made."""
    if not orders:
        return {}
    wanted = {message_subject(order.store_id, order.status): order.id for order in orders}
    rows = db.session.scalars(select(Message).where(Message.subject.in_(list(wanted))))
    return {wanted[row.subject]: row for row in rows}


class ProductsView(StaffOnly, BaseView):
    """``/admin/products/``: products by last change, found by SKU or store id, with their catalog sync state."""

    @expose("/")
    def index(self):
        q = _text_arg("q")
        unsynced = request.args.get("sync") == "pending"
        query = select(Product)
        if q:
            number = whole_number(q)
            query = query.where(or_(Product.retailer_id == q, Product.store_id == number) if number is not None
                                else Product.retailer_id == q)
        if unsynced:
            query = query.where(or_(Product.synced_at.is_(None), Product.synced_at < Product.updated_at))
        filters = {key: value for key, value in (("q", q), ("sync", "pending" if unsynced else "")) if value}
        with read_only():
            page = requested_page(query, at=Product.updated_at, key=Product.id)
            return self.render("admin/wch/products_list.html", products=page.rows, q=q, unsynced=unsynced,
                               filters=filters, first_page=page.first,
                               older=page.older_url(filters))

    @expose("/<int:store_id>")
    def details(self, store_id: int):
        with read_only():
            product = db.session.scalars(select(Product).where(Product.store_id == store_id)).first()
            if product is None:
                abort(404)
            return self.render("admin/wch/product_detail.html", product=product,
                               jobs=jobs_about(f"product:{store_id}"))


class DeliveriesView(StaffOnly, BaseView):
    """``/admin/deliveries/``: the store's webhook deliveries, newest first: topic, what it was about, the job."""

    @expose("/")
    def index(self):
        topic = _text_arg("topic", 64)
        query = select(WebhookDelivery)
        if topic:
            query = query.where(WebhookDelivery.topic == topic)
        with read_only():
            page = requested_page(query, at=WebhookDelivery.received_at, key=WebhookDelivery.id)
            ids = [row.job_id for row in page.rows if row.job_id]
            jobs = {job.id: job for job in db.session.scalars(select(Job).where(Job.id.in_(ids)))} if ids else {}
            filters = {"topic": topic} if topic else {}
            return self.render("admin/wch/deliveries_list.html", deliveries=page.rows, jobs=jobs, topic=topic,
                               first_page=page.first,
                               older=page.older_url(filters))
