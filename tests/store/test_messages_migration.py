"""Migration 0007 moves the order notifications into the messages table and back, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from flask_migrate import downgrade, upgrade
from sqlalchemy import select

from tests.support.apps import close, inside, settings_for
from wch import create_app
from wch.db import db, transaction, utcnow
from wch.models import Message

ORDERS = sa.table("orders", sa.column("id"), sa.column("store_id"), sa.column("number"), sa.column("status"),
                  sa.column("customer_phone"), sa.column("currency"), sa.column("updated_at"))
NOTIFICATIONS = sa.table("order_notifications", sa.column("order_id"), sa.column("status"), sa.column("state"),
                         sa.column("kind"), sa.column("wamid"), sa.column("error"), sa.column("created_at"),
                         sa.column("sent_at"))


def test_order_notifications_become_messages_settled_by_their_callback_data_and_go_back(empty_database_url):
    app = create_app(settings_for(empty_database_url), publisher=None)
    try:
        with inside(app):
            upgrade(revision="0005")
            now = utcnow().replace(tzinfo=None)
            with transaction():
                db.session.execute(ORDERS.insert(), [
                    {"id": 1, "store_id": 900, "number": "900", "status": "completed",
                     "customer_phone": "+351912345678", "currency": "EUR", "updated_at": now},
                    {"id": 2, "store_id": 9001, "number": "9001", "status": "processing", "customer_phone": None,
                     "currency": "EUR", "updated_at": now}])
                db.session.execute(NOTIFICATIONS.insert(), [
                    {"order_id": 1, "status": "processing", "state": "sent", "kind": "template", "wamid": "wamid.a",
                     "created_at": now - timedelta(hours=2), "sent_at": now - timedelta(hours=2)},
                    {"order_id": 1, "status": "completed", "state": "uncertain", "kind": "text", "wamid": None,
                     "error": "timed out", "created_at": now, "sent_at": None},
                    {"order_id": 2, "status": "processing", "state": "failed", "kind": "template", "wamid": None,
                     "error": "131026", "created_at": now, "sent_at": None}])
            upgrade()

            moved = {m.subject: m for m in db.session.scalars(select(Message))}
            assert {s: (m.kind, m.state, m.form, m.wamid) for s, m in moved.items()} == {
                "order:900:processing": ("order", "sent", "template", "wamid.a"),
                "order:900:completed": ("order", "uncertain", "text", None),
                "order:9001:processing": ("order", "failed", "template", None),
            }
            assert moved["order:900:completed"].phone == "+351912345678" and moved["order:900:completed"].attempts == 1
            db.session.rollback()  # SQLite: the inspector's connection needs the write lock
            assert not sa.inspect(db.engine).has_table("order_notifications")

            downgrade(revision="0005")
            back = db.session.execute(select(NOTIFICATIONS.c.order_id, NOTIFICATIONS.c.status, NOTIFICATIONS.c.state)
                                      .order_by(NOTIFICATIONS.c.order_id, NOTIFICATIONS.c.status)).all()
            assert back == [(1, "completed", "uncertain"), (1, "processing", "sent"), (2, "processing", "failed")]
            db.session.rollback()
            assert not sa.inspect(db.engine).has_table("messages")
            upgrade()  # and up again, cleanly
    finally:
        close(app)
