"""Migration 0005 renames the job types already in the ledger, so history and pending counts stay continuous."""

from __future__ import annotations

import uuid
from datetime import timedelta

from flask_migrate import downgrade, upgrade
from sqlalchemy import select

from tests.support.apps import close, inside, settings_for
from wch import create_app
from wch.db import db, transaction, utcnow
from wch.jobs import dispatch
from wch.jobs.messages import args_digest
from wch.jobs.queries import is_scheduled, pending_counts
from wch.models import Job
from wch.store.catalog import SYNC_PRODUCT


def _row(type_: str, status: str, args: dict, *, dedupe_key: str | None = None) -> dict:
    now = utcnow()
    return {"id": str(uuid.uuid4()), "type": type_, "queue": "sync", "args": args, "status": status,
            "attempts": 1 if status == "succeeded" else 0, "enqueued_at": now - timedelta(minutes=5),
            "finished_at": now if status == "succeeded" else None, "published_at": now,
            "digest": args_digest(type_, args), "dedupe_key": dedupe_key}


def test_old_type_names_are_renamed_with_their_keys_and_pending_jobs_go_back_to_the_outbox(empty_database_url):
    app = create_app(settings_for(empty_database_url), publisher=None)
    try:
        with inside(app):
            upgrade(revision="0004")
            old = [
                _row("product", "queued", {"store_id": 42}, dedupe_key="product:42"),
                _row("product", "succeeded", {"store_id": 7}, dedupe_key="product:7"),
                _row("order", "retrying", {"store_id": 9}, dedupe_key="order:9"),
                _row("hourly", "succeeded", {}),
                _row("echo", "queued", {"value": 1}),
            ]
            with transaction():
                db.session.execute(Job.__table__.insert(), old)
            upgrade()

            jobs = {job.id: job for job in db.session.scalars(select(Job))}
            pending_product, done_product, order, hourly, echo = (jobs[row["id"]] for row in old)
            assert (pending_product.type, pending_product.dedupe_key) == ("sync_product", "sync_product:42")
            assert pending_product.digest == args_digest("sync_product", {"store_id": 42})
            assert pending_product.published_at is None, "the relay publishes it under its new name"
            assert (done_product.type, done_product.dedupe_key) == ("sync_product", "sync_product:7")
            assert done_product.published_at is not None
            assert (order.type, order.dedupe_key, order.status) == ("notify_order", "notify_order:9", "retrying")
            assert hourly.type == "trigger_hourly_work"
            assert (echo.type, echo.published_at) == ("echo", old[4]["published_at"])
            assert pending_counts()["sync_product"]["queued"] == 1
            assert is_scheduled(SYNC_PRODUCT, {"store_id": 42})
            # The renamed pending job still holds its unique key: a new dispatch returns it.
            assert dispatch(SYNC_PRODUCT, {"store_id": 42}, unique="42").id == pending_product.id
            db.session.rollback()

            downgrade(revision="0004")
            types = dict(db.session.execute(select(Job.id, Job.type)).all())
            assert [types[row["id"]] for row in old] == ["product", "product", "order", "hourly", "echo"]
            db.session.rollback()
    finally:
        close(app)
