"""A burst of signed store webhooks into one real gunicorn process with 32 threads, on SQLite and PostgreSQL.

A bulk edit in the store sends many deliveries at once. Every one must be
answered 2xx, or 503 with ``Retry-After`` (the store retries those), never a
500 or a timeout, and every delivery answered "recorded" must be in the
ledger with its job: WooCommerce disables a webhook after repeated failures.
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
from contextlib import contextmanager

import pytest
import requests
from sqlalchemy import func, select

from tests.support import woo
from tests.support.services import BIN, ROOT, wait_for
from wch import runtime
from wch.db import db
from wch.models import Job, WebhookDelivery

pytestmark = pytest.mark.rabbitmq

DELIVERIES = 100
THREADS = 32


@pytest.fixture
def env():
    return woo.sync_env("http://127.0.0.1:9")  # no job runs here: the Graph API is never called


@contextmanager
def gunicorn(settings_env: dict[str, str], log):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [str(BIN / "gunicorn"), "-k", "gthread", "-w", "1", "--threads", str(THREADS), "-b", f"127.0.0.1:{port}",
         "--timeout", "120", "wch:create_app()"],
        env=os.environ | settings_env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/webhooks/woocommerce"
    try:
        wait_for(lambda: _answers(url), timeout=60, interval=0.2, what="gunicorn to answer")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def _answers(url: str) -> bool:
    try:
        return requests.post(url, data=b"webhook_id=1", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def test_a_burst_of_webhooks_into_one_process_is_answered_and_every_accepted_one_recorded(
    rabbit_app, rabbitmq_url, env, tmp_path
):
    settings = runtime.settings()
    deliveries = [woo.delivery("product.updated", woo.product(n + 1)) if n % 2
                  else woo.delivery("order.updated", woo.order(5000 + n, "completed")) for n in range(DELIVERIES)]
    answers: list[tuple[int, str | None, dict]] = []
    lock = threading.Lock()
    start = threading.Barrier(DELIVERIES)

    def post(body: bytes, headers: dict[str, str]) -> None:
        start.wait()
        try:
            response = requests.post(url, data=body, headers=headers, timeout=90)
            answer = (response.status_code, response.headers.get("Retry-After"), response.json())
        except requests.RequestException as error:
            answer = (0, None, {"error": str(error)})
        with lock:
            answers.append(answer)

    server_env = {"WCH_DATABASE_URL": settings.database_url, "WCH_BROKER_URL": rabbitmq_url,
                  "WCH_SECRET_KEY": "test-secret-key"} | env
    with (tmp_path / "gunicorn.log").open("wb") as log, gunicorn(server_env, log) as url:
        threads = [threading.Thread(target=post, args=delivery) for delivery in deliveries]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    log_text = (tmp_path / "gunicorn.log").read_text(errors="replace")
    statuses = sorted({status for status, _, _ in answers})
    assert len(answers) == DELIVERIES
    assert all(status == 200 or (status == 503 and retry_after) for status, retry_after, _ in answers), (
        statuses, log_text[-3000:])
    recorded = [body for status, _, body in answers if status == 200]
    assert all(body["outcome"] == "recorded" and body["job"] for body in recorded)
    db.session.rollback()
    jobs = set(db.session.scalars(select(Job.id)))
    assert {body["job"] for body in recorded} <= jobs, "every accepted delivery's job is in the ledger"
    assert db.session.scalar(select(func.count()).select_from(WebhookDelivery)) == len(recorded)
    assert "QueuePool limit" not in log_text
    db.session.rollback()
