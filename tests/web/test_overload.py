"""When the database cannot serve a request now, the answer is 503 with ``Retry-After``: never a 500, never a hang."""

from __future__ import annotations

import sqlite3
import time

from tests.support import woo
from tests.support.apps import with_env
from wch.db import db

NOT_NOW = {"WCH_DB_POOL_SIZE": "1", "WCH_DB_POOL_TIMEOUT": "0.3", "WCH_SQLITE_BUSY_TIMEOUT": "0.3"}


@with_env(**woo.sync_env("http://127.0.0.1:9"), **NOT_NOW)
def test_every_pooled_connection_in_use_answers_503_with_retry_after_then_serves_again(app, client):
    # Two connections (the pool's one and one overflow) held by other work.
    held = [db.engine.connect() for _ in range(2)]
    try:
        started = time.monotonic()
        response = woo.post(client, "product.updated", woo.product(1))
        waited = time.monotonic() - started
    finally:
        for connection in held:
            connection.close()
    assert response.status_code == 503 and response.headers["Retry-After"] == "5"
    assert response.json["reason"] == "busy: every database connection is in use"
    assert waited < 3, "the request waited WCH_DB_POOL_TIMEOUT, not longer"

    assert woo.post(client, "product.updated", woo.product(1)).status_code == 200


@with_env(**woo.sync_env("http://127.0.0.1:9"), **NOT_NOW)
def test_a_locked_or_unreachable_database_answers_503_with_retry_after(app, client, sqlite_url):
    lock = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    try:
        response = woo.post(client, "order.updated", woo.order(7, "completed"))
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    assert response.status_code == 503 and response.headers["Retry-After"] == "5"
    assert response.json["reason"] == "the database is unreachable"
    assert woo.post(client, "order.updated", woo.order(7, "completed")).status_code == 200
