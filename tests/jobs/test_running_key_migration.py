"""Migration 0006 (running jobs hold their dedupe key; attempt rows written when they end), on both databases."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from flask_migrate import downgrade, upgrade
from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError

from tests.support.apps import close, inside, settings_for
from wch import create_app
from wch.db import db, utcnow
from wch.models import Job, JobAttempt

JOBS, ATTEMPTS = Job.__table__, JobAttempt.__table__


def _job(status: str, *, key: str | None = None, started_minutes_ago: int = 1) -> dict:
    now = utcnow()
    return {"id": str(uuid.uuid4()), "type": "sync_product", "queue": "sync", "args": {}, "status": status,
            "attempts": 1, "enqueued_at": now - timedelta(minutes=10),
            "started_at": now - timedelta(minutes=started_minutes_ago),
            "finished_at": now if status == "failed" else None, "published_at": now, "digest": "d",
            "dedupe_key": key, "worker": "host:1"}


def _open_attempt(job: dict) -> dict:
    return {"job_id": job["id"], "number": 1, "worker": "host:1", "started_at": job["started_at"]}


def test_running_duplicates_keep_one_key_open_attempts_are_settled_and_the_key_is_then_held(empty_database_url):
    app = create_app(settings_for(empty_database_url), publisher=None)
    try:
        with inside(app):
            upgrade(revision="0005")
            older = _job("running", key="sync_product:7", started_minutes_ago=5)
            newer = _job("running", key="sync_product:7", started_minutes_ago=1)
            failed = _job("failed")
            db.session.execute(insert(JOBS), [older, newer, failed])
            db.session.execute(insert(ATTEMPTS), [_open_attempt(older), _open_attempt(newer), _open_attempt(failed)])
            db.session.commit()

            upgrade()

            keys = dict(db.session.execute(select(JOBS.c.id, JOBS.c.dedupe_key)).all())
            assert keys[newer["id"]] == "sync_product:7" and keys[older["id"]] is None
            attempts = db.session.execute(select(ATTEMPTS.c.job_id, ATTEMPTS.c.outcome, ATTEMPTS.c.finished_at)).all()
            assert [(job_id, outcome) for job_id, outcome, _ in attempts] == [(failed["id"], "interrupted")], \
                "running jobs' open attempts are written again when they end; the failed job's is closed"
            assert attempts[0].finished_at == db.session.scalar(
                select(JOBS.c.finished_at).where(JOBS.c.id == failed["id"]))
            db.session.commit()

            with pytest.raises(IntegrityError):
                db.session.execute(insert(JOBS), [_job("running", key="sync_product:7")])
            db.session.rollback()

            downgrade(revision="0005")
            db.session.execute(insert(JOBS), [_job("running", key="sync_product:7")])
            db.session.commit()
            # By the table's columns alone: the model has columns later migrations add.
            assert db.session.scalar(select(func.count()).where(
                JOBS.c.dedupe_key == "sync_product:7", JOBS.c.status == "running")) == 2
    finally:
        close(app)
