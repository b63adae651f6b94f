"""Migration 0008 on both databases: existing jobs get their subject, staff keep their log-in, and it downgrades."""

from __future__ import annotations

import uuid
from datetime import timedelta

from flask_migrate import downgrade, upgrade
from sqlalchemy import inspect, select, text

from tests.support.apps import inside, settings_for
from wch import create_app
from wch.db import db, transaction, utcnow
from wch.jobs.messages import args_digest
from wch.models import Job, User


def _job(type_: str, args: dict) -> dict:
    now = utcnow()
    return {"id": str(uuid.uuid4()), "type": type_, "queue": "sync", "args": args, "status": "succeeded",
            "attempts": 1, "enqueued_at": now - timedelta(minutes=5), "finished_at": now, "published_at": now,
            "digest": args_digest(type_, args)}


def test_existing_jobs_get_their_subject_and_staff_keep_their_accounts(empty_database_url):
    app = create_app(settings_for(empty_database_url), publisher=None)
    with inside(app):
        upgrade(revision="0005")
        rows = [_job("notify_order", {"store_id": 1234}), _job("sync_product", {"store_id": 42}),
                _job("send_cart_reminder", {"cart_id": 7, "updated_at": "x"}), _job("echo", {"value": 1})]
        with transaction():
            db.session.execute(Job.__table__.insert(), rows)
            db.session.execute(text("INSERT INTO users (email, password_hash, role, created_at) "
                                    "VALUES ('ana@example.com', 'x', 'admin', :now)"), {"now": utcnow()})
        upgrade()

        subjects = dict(db.session.execute(select(Job.type, Job.subject)).all())
        assert subjects == {"notify_order": "order:1234", "sync_product": "product:42",
                            "send_cart_reminder": "cart:7", "echo": None}
        user = db.session.scalar(select(User))
        assert user.session_version == 1 and user.is_active and user.get_id() == f"{user.id}.1"
        db.session.rollback()

        downgrade(revision="0005")
        tables = inspect(db.engine).get_table_names()
        assert "audit_log" not in tables and "job_hour_counts" not in tables
        assert "subject" not in {c["name"] for c in inspect(db.engine).get_columns("jobs")}
        upgrade()
        assert db.session.scalar(select(Job.subject).where(Job.type == "sync_product")) == "product:42"
        db.session.rollback()
