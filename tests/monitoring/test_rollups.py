"""The dashboard's numbers kept ahead of time: jobs finished per hour (rollup plus live tail) and the cart snapshot,
equal to counting everything live, on both databases; and RabbitMQ's management API asked safely and rarely."""

from __future__ import annotations

import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from sqlalchemy import select

from tests.support.apps import on_both_databases
from tests.support.panel import add_job
from wch.carts.stats import cart_overview
from wch.db import db, transaction, utcnow
from wch.models import Cart, Job
from wch.monitoring import rollups
from wch.monitoring.queue_depths import broker_depths, may_send_credentials


def dashboard_hours() -> tuple[dict, dict]:
    db.session.rollback()
    totals, hourly = rollups.finished_per_hour(now=utcnow())
    db.session.rollback()
    return totals, hourly


def live_hours() -> dict[str, list[int]]:
    """Each outcome's jobs per hour of the window, counted row by row: what the rollup must agree with."""
    start = rollups.window_start(utcnow())
    series = {outcome: [0] * rollups.HOURS for outcome in rollups.OUTCOMES}
    for status, finished in db.session.execute(select(Job.status, Job.finished_at).where(Job.finished_at >= start)):
        if status in series:
            series[status][int((finished - start).total_seconds() // 3600)] += 1
    db.session.rollback()
    return series


def roll_up() -> int:
    with transaction():
        return rollups.roll_up_finished_jobs(now=utcnow())


@on_both_databases
def test_rolled_up_hours_plus_the_live_tail_equal_a_live_count(app):
    for hours_ago in (0.01, 0.5, 2, 5, 22, 30):
        add_job(status="succeeded", ago=timedelta(hours=hours_ago))
        add_job(status="failed", ago=timedelta(hours=hours_ago))
    add_job(status="queued")
    before = dashboard_hours()  # no rollup yet: everything is live

    assert roll_up() == 8  # the jobs of the last 24 clock hours but the newest, left to settle
    assert roll_up() == 0  # a second run counts nothing twice
    after = dashboard_hours()
    assert after == before
    live = live_hours()
    assert after[1]["succeeded"] == live["succeeded"] and after[1]["failed"] == live["failed"]
    assert after[0]["succeeded"] == sum(live["succeeded"]) == 5  # 30 h ago is out of the window

    add_job(status="failed", ago=timedelta(seconds=30))  # after the mark: counted live until the next rollup
    assert dashboard_hours()[0]["failed"] == 6
    roll_up()
    assert dashboard_hours()[0]["failed"] == 6


@on_both_databases
def test_the_cart_snapshot_is_used_while_fresh_and_kept_true_by_the_cleanup(app):
    now = utcnow()
    db.session.add_all([Cart(customer_phone="+1555", status="active", updated_at=now - timedelta(hours=100),
                             created_at=now - timedelta(hours=100)),
                        Cart(customer_phone="+1556", status="abandoned")])
    db.session.commit()
    live = rollups.cart_numbers(expiry_hours=72, now=now)
    assert (live["active"], live["abandoned"], live["expired_awaiting_cleanup"]) == (1, 1, 1)
    with transaction():
        rollups.refresh_cart_snapshot(expiry_hours=72, now=now)
    db.session.add(Cart(customer_phone="+1557", status="active"))
    db.session.commit()
    kept = rollups.cart_numbers(expiry_hours=72, now=now + timedelta(minutes=1))
    assert kept["active"] == 1 and kept["as_of"] == now  # the snapshot, until the next rollup
    stale = rollups.cart_numbers(expiry_hours=72, now=now + rollups.SNAPSHOT_MAX_AGE + timedelta(minutes=1))
    assert stale["active"] == 2  # a snapshot too old is not shown: counted live instead
    assert {k: v for k, v in stale.items() if k != "as_of"} == cart_overview(
        expiry_hours=72, now=now + rollups.SNAPSHOT_MAX_AGE + timedelta(minutes=1))


class _Management(BaseHTTPRequestHandler):
    calls: list[str] = []

    def do_GET(self):  # noqa: N802
        self.calls.append(self.headers.get("Authorization", ""))
        body = b'[{"name": "sync", "messages_unacknowledged": 4}]'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_management_credentials_go_only_over_https_or_to_this_machine():
    assert may_send_credentials("https://rabbit.example:15671", allow_http=False)
    assert may_send_credentials("http://127.0.0.1:15672", allow_http=False)
    assert may_send_credentials("http://localhost:15672", allow_http=False)
    assert not may_send_credentials("http://rabbit.example:15672", allow_http=False)
    assert may_send_credentials("http://rabbit.example:15672", allow_http=True)


def test_the_management_api_is_asked_once_however_many_dashboards_refresh(rabbitmq_url):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Management)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Management.calls = []
    url = f"http://127.0.0.1:{server.server_port}"
    try:
        answers = []
        threads = [threading.Thread(target=lambda: answers.append(
            broker_depths(rabbitmq_url, management_url=url, ttl=30))) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(_Management.calls) == 1 and _Management.calls[0].startswith("Basic ")
        assert all(answer.management for answer in answers)
        assert {q.name: q.unacked for q in answers[0].queues}["sync"] == 4

        remote = broker_depths(rabbitmq_url, management_url="http://rabbit.invalid:15672", ttl=0)
        assert not remote.management and "over https" in remote.management_note
    finally:
        server.shutdown()


@on_both_databases
def test_oldest_due_job_per_type_counts_due_jobs_only(app):
    from wch.jobs.queries import oldest_pending, pending_counts
    now = utcnow()
    add_job("echo", status="queued", ago=timedelta(minutes=20))
    later = add_job("echo", status="queued", ago=timedelta(hours=2))
    later.eta = now + timedelta(minutes=5)  # not due yet: does not count, however old
    overdue = add_job("slow", status="retrying", ago=timedelta(hours=1))
    overdue.eta = now - timedelta(minutes=7)  # its retry was due 7 minutes ago
    add_job("always_fails", status="running", ago=timedelta(hours=3))
    db.session.commit()
    assert pending_counts() == {"echo": {"queued": 1, "scheduled": 1, "retrying": 0, "running": 0},
                                "slow": {"queued": 0, "scheduled": 0, "retrying": 1, "running": 0},
                                "always_fails": {"queued": 0, "scheduled": 0, "retrying": 0, "running": 1}}
    ages = oldest_pending(now=now)
    assert set(ages) == {"echo", "slow"}
    assert abs(ages["echo"] - 20 * 60) < 5 and abs(ages["slow"] - 7 * 60) < 5
