"""The panel's pages on the in-process broker: dashboard numbers, job search and actions, carts, and the
``users`` and ``demo`` commands."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from tests.support.apps import on_both_databases, run_jobs, with_env
from tests.support.panel import add_job, client_for, csrf_token, log_in
from wch import runtime
from wch.db import db, utcnow
from wch.jobs import dispatcher, queries
from wch.models import Cart, CleanupRun, Job, User, WorkerProcess


def pending_row(html: str, type_: str) -> dict[str, int]:
    row = re.search(rf'<tr data-type="{type_}">(.*?)</tr>', html, re.S).group(1)
    return {key: int(value) for key, value in re.findall(r'data-count="(\w+)">(\d+)<', row)}


def test_dashboard_shows_pending_by_type_and_todays_outcomes(app, admin):
    for _ in range(3):
        dispatcher.dispatch("echo", {"value": 1})
    dispatcher.dispatch("echo", {"value": 2}, delay=600)
    dispatcher.dispatch("always_fails")
    db.session.commit()
    add_job(status="failed", ago=timedelta(hours=2))
    add_job(status="failed", ago=timedelta(hours=30))  # outside the last 24 hours
    add_job(status="succeeded", ago=timedelta(hours=1))

    html = admin.get("/admin/").get_data(as_text=True)
    assert pending_row(html, "echo") == {"queued": 3, "scheduled": 1, "retrying": 0, "running": 0}
    assert pending_row(html, "always_fails") == {"queued": 1, "scheduled": 0, "retrying": 0, "running": 0}
    assert re.search(r'id="failed-24h">1<', html) and re.search(r'id="succeeded-24h">1<', html)
    hourly = json.loads(re.search(r'id="hourly-data">(.*?)</script>', html, re.S).group(1))
    assert len(hourly["labels"]) == 24 and sum(hourly["failed"]) == 1 and sum(hourly["succeeded"]) == 1
    assert hourly["failed"][-3] == 1 or hourly["failed"][-2] == 1  # finished about two hours ago
    assert "No worker has announced itself" in html  # the warning banner
    assert "In-process broker" in html
    assert admin.get("/admin/fragment").get_data(as_text=True).count('data-type="echo"') == 1


def test_dashboard_warns_when_workers_are_silent_or_jobs_wait_too_long(app, admin):
    now = utcnow()
    db.session.add(WorkerProcess(id="w:1", host="box", pid=1, queues=["sync"], threads=2,
                                 started_at=now - timedelta(hours=1), heartbeat_at=now - timedelta(minutes=5)))
    job = add_job(status="queued", ago=timedelta(minutes=20))
    html = admin.get("/admin/").get_data(as_text=True)
    assert "No worker has been seen for 5 min" in html
    assert f"{job.type} jobs have been waiting for 20 min" in html

    db.session.get(WorkerProcess, "w:1").heartbeat_at = utcnow()
    db.session.commit()
    html = admin.get("/admin/").get_data(as_text=True)
    assert "No worker has been seen" not in html and "alive" in html


def test_run_cleanup_now_queues_one_cleanup_job(app, admin, broker, stub_worker):
    old = utcnow() - timedelta(hours=100)
    db.session.add_all([Cart(customer_phone="+1555", status="active", updated_at=old, created_at=old),
                        Cart(customer_phone="+1556", status="active")])
    db.session.commit()
    assert re.search(r'data-cart="expired">1<', admin.get("/admin/").get_data(as_text=True))
    token = csrf_token(admin, "/admin/")
    response = admin.post("/admin/cleanup", data={"csrf_token": token})
    assert response.status_code == 302
    run_jobs(broker, stub_worker)
    html = admin.get("/admin/").get_data(as_text=True)
    assert re.search(r'data-cart="expired">0<', html) and re.search(r'data-cart="active">1<', html)
    assert "(panel)" in html and "deleted 1" in html
    assert db.session.scalar(select(CleanupRun.trigger)) == "panel"


def test_jobs_list_filters_and_finds_by_id_or_error_text(app, admin):
    card = add_job("echo", status="failed", error="RuntimeError: card declined 100%_off")
    timeout = add_job("always_fails", status="failed", error="TimeoutError: graph.facebook.com", ago=timedelta(days=2))
    done = add_job("echo", status="succeeded")

    def listed(query: str) -> set[str]:
        html = admin.get(f"/admin/jobs/?{query}").get_data(as_text=True)
        return set(re.findall(r'data-job-id="([^"]+)"', html))

    assert listed("") == {card.id, timeout.id, done.id}
    assert listed("status=failed") == {card.id, timeout.id}
    assert listed("status=failed&type=echo") == {card.id}
    assert listed("status=failed&since=24h") == {card.id}
    assert listed(f"q={done.id}") == {done.id}
    assert listed("q=DECLINED") == {card.id}
    assert listed("q=100%25_off") == {card.id}  # LIKE wildcards are matched literally
    assert listed("q=50%25") == set()
    assert listed("q=graph&since=24h") == set()


def test_jobs_list_pages_newest_first_without_counting(app, admin):
    ids = [add_job(status="succeeded", ago=timedelta(minutes=120 - i)).id for i in range(60)]
    html = admin.get("/admin/jobs/").get_data(as_text=True)
    first = re.findall(r'data-job-id="([^"]+)"', html)
    assert first == ids[::-1][:50]
    older = re.search(r'href="([^"]+)" id="older-page"', html).group(1).replace("&amp;", "&")
    second = re.findall(r'data-job-id="([^"]+)"', admin.get(older).get_data(as_text=True))
    assert second == ids[::-1][50:]


def test_job_page_shows_every_attempt_and_retry_runs_it_again(app, admin, broker, stub_worker, tmp_path):
    marker = tmp_path / "runs"
    job = dispatcher.dispatch("fail_then_succeed", {"marker": str(marker), "failures": 4})
    run_jobs(broker, stub_worker)
    html = admin.get(f"/admin/jobs/{job.id}").get_data(as_text=True)
    assert html.count("RuntimeError: failure") >= 4 and html.count("traceback</summary>") == 4
    assert 'id="retry-job"' in html and 'id="cancel-job"' not in html

    response = admin.post(f"/admin/jobs/{job.id}/retry", data={"csrf_token": csrf_token(admin, "/admin/")})
    assert response.status_code == 302
    run_jobs(broker, stub_worker)
    html = admin.get(f"/admin/jobs/{job.id}").get_data(as_text=True)
    assert "wch-status-succeeded" in html and 'id="job-result"' in html


def test_cancel_and_bulk_actions(app, admin):
    queued = [dispatcher.dispatch("echo", {"value": i}, delay=600) for i in range(3)]
    failed = add_job(status="failed")
    db.session.commit()
    token = csrf_token(admin, "/admin/")
    admin.post(f"/admin/jobs/{queued[0].id}/cancel", data={"csrf_token": token})
    assert queries.status(queued[0].id) == "canceled"

    response = admin.post("/admin/jobs/bulk", data={"csrf_token": token, "action": "cancel",
                                                    "ids": [queued[1].id, queued[2].id, failed.id]})
    assert response.status_code == 302
    db.session.expire_all()
    assert [queries.status(j.id) for j in queued] == ["canceled"] * 3
    assert queries.status(failed.id) == "failed"  # refused, the others still canceled
    admin.post("/admin/jobs/bulk", data={"csrf_token": token, "action": "retry", "ids": [failed.id, queued[0].id]})
    db.session.expire_all()
    assert queries.status(failed.id) == "queued" and queries.status(queued[0].id) == "queued"


def test_a_running_job_whose_worker_is_gone_can_be_marked_failed(app, admin):
    alive, gone = add_job(status="running"), add_job(status="running")
    now = utcnow()
    db.session.add(WorkerProcess(id="busy:1", host="busy", pid=1, queues=["sync"], threads=2, started_at=now,
                                 heartbeat_at=now))
    for job, worker in ((alive, "busy:1"), (gone, "dead:2")):
        row = db.session.get(Job, job.id)
        row.worker, row.attempts, row.started_at = worker, 1, now - timedelta(minutes=3)
    db.session.commit()

    html = admin.get(f"/admin/jobs/{alive.id}").get_data(as_text=True)
    assert 'id="running-attempt"' in html and 'id="fail-job"' not in html
    html = admin.get(f"/admin/jobs/{gone.id}").get_data(as_text=True)
    assert "its worker stopped heart-beating" in html and 'id="fail-job"' in html

    token = csrf_token(admin, "/admin/")
    admin.post(f"/admin/jobs/{alive.id}/fail", data={"csrf_token": token})
    admin.post(f"/admin/jobs/{gone.id}/fail", data={"csrf_token": token})
    db.session.expire_all()
    assert queries.status(alive.id) == "running", "its worker is alive: refused"
    assert queries.status(gone.id) == "failed"
    assert 'id="retry-job"' in admin.get(f"/admin/jobs/{gone.id}").get_data(as_text=True)


@with_env(WCH_PANEL_RETRY_CAP="3")
def test_retry_all_failed_matching_asks_first_and_stops_at_the_cap(app, admin):
    jobs = [add_job("echo", status="failed", ago=timedelta(minutes=10 - i)) for i in range(5)]
    other = add_job("always_fails", status="failed")

    html = admin.get("/admin/jobs/retry-failed?type=echo").get_data(as_text=True)
    assert "More than 3 failed jobs match" in html
    assert all(queries.status(j.id) == "failed" for j in jobs)  # asking changes nothing

    admin.post("/admin/jobs/retry-failed", data={"csrf_token": csrf_token(admin, "/admin/"), "type": "echo",
                                                 "confirm": "yes"})
    db.session.expire_all()
    assert [queries.status(j.id) for j in jobs] == ["failed", "failed", "queued", "queued", "queued"]
    assert queries.status(other.id) == "failed"


def test_carts_list_filters_by_status_and_idle_time_and_shows_items(app, admin):
    now = utcnow()
    fresh = Cart(customer_phone="+1", status="active", updated_at=now, created_at=now,
                 items=[{"name": "Linen <b>shirt</b>", "quantity": 2, "price": "39.90"}], total=Decimal("79.80"))
    stale = Cart(customer_phone="+2", status="abandoned", updated_at=now - timedelta(hours=80),
                 created_at=now - timedelta(hours=81))
    done = Cart(customer_phone="+3", status="completed", updated_at=now - timedelta(hours=30),
                created_at=now - timedelta(hours=31))
    db.session.add_all([fresh, stale, done])
    db.session.commit()

    def listed(query: str) -> set[int]:
        html = admin.get(f"/admin/carts/?{query}").get_data(as_text=True)
        return {int(i) for i in re.findall(r'data-cart-id="(\d+)"', html)}

    assert listed("") == {fresh.id, stale.id, done.id}
    assert listed("status=abandoned") == {stale.id}
    assert listed("idle=24h") == {stale.id, done.id}
    assert listed("idle=expired") == {stale.id}
    html = admin.get(f"/admin/carts/{fresh.id}").get_data(as_text=True)
    assert "Linen &lt;b&gt;shirt&lt;/b&gt;" in html and "79.80" in html


def test_users_create_reads_the_password_from_stdin_and_refuses_duplicates(app):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["users", "create", "Boss@Example.com", "--role", "admin"],
                           input="a long enough password\n")
    assert result.exit_code == 0, result.output
    assert "a long enough password" not in result.output
    user = db.session.scalar(select(User))
    assert user.role == "admin" and user.check_password("a long enough password")

    again = runner.invoke(args=["users", "create", "boss@example.com", "--role", "viewer"], input="another password\n")
    assert again.exit_code != 0 and "already exists" in again.output
    short = runner.invoke(args=["users", "create", "v@example.com", "--role", "viewer"], input="short\n")
    assert short.exit_code != 0 and "at least" in short.output
    bad_role = runner.invoke(args=["users", "create", "v@example.com", "--role", "root"], input="long password 1\n")
    assert bad_role.exit_code != 0
    assert db.session.scalar(select(func.count()).select_from(User)) == 1


def test_demo_fills_an_empty_database_once_and_its_admin_can_log_in(app):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["demo", "--seed", "7"])
    assert result.exit_code == 0, result.output
    password = re.search(r"password: (\S+)", result.output).group(1)
    statuses = dict(db.session.execute(select(Job.status, func.count()).group_by(Job.status)).all())
    assert statuses["succeeded"] and statuses["failed"] and statuses["queued"]
    carts = dict(db.session.execute(select(Cart.status, func.count()).group_by(Cart.status)).all())
    assert set(carts) == {"active", "abandoned", "completed"}

    client = client_for(app)
    log_in(client, "admin@demo.store", password)
    assert client.get("/admin/").status_code == 200

    again = runner.invoke(args=["demo"])
    assert again.exit_code != 0 and "not empty" in again.output
    jobs_before = db.session.scalar(select(func.count()).select_from(Job))
    skipped = runner.invoke(args=["demo", "--if-empty"])
    assert skipped.exit_code == 0 and "no demo store added" in skipped.output
    assert db.session.scalar(select(func.count()).select_from(Job)) == jobs_before


@on_both_databases
def test_dashboard_numbers_are_the_same_on_sqlite_and_postgresql(app):
    from wch.monitoring.overview import overview

    add_job(status="failed", ago=timedelta(minutes=90))
    add_job(status="succeeded", ago=timedelta(minutes=30))
    add_job(status="succeeded", ago=timedelta(hours=26))
    add_job(status="queued", ago=timedelta(minutes=12))
    old = utcnow() - timedelta(hours=100)
    db.session.add_all([Cart(customer_phone="+1", status="active", updated_at=old, created_at=old),
                        Cart(customer_phone="+2", status="abandoned", reminder_sent_at=utcnow()),
                        Cart(customer_phone="+3", status="completed", reminder_sent_at=utcnow(),
                             recovered_at=utcnow())])
    db.session.commit()
    numbers = overview(runtime.settings())
    assert numbers["finished_24h"] == {"succeeded": 1, "failed": 1}
    assert sum(numbers["hourly"]["succeeded"]) == 1 and sum(numbers["hourly"]["failed"]) == 1
    assert numbers["hourly"]["succeeded"][-1] + numbers["hourly"]["succeeded"][-2] == 1
    assert 11 * 60 < numbers["oldest_pending"]["echo"] < 13 * 60
    carts = numbers["carts"]
    assert (carts["active"], carts["abandoned"], carts["completed_7d"]) == (1, 1, 1)
    assert carts["expired_awaiting_cleanup"] == 1
    assert (carts["reminders_sent_7d"], carts["recovered_7d"], carts["recovery_rate"]) == (2, 1, 0.5)


@pytest.mark.rabbitmq
def test_queue_depths_come_from_rabbitmq_without_consuming(rabbitmq_url):
    import dramatiq
    from dramatiq.brokers.rabbitmq import RabbitmqBroker

    from tests.support.services import purge_queues
    from wch.monitoring.queue_depths import broker_depths

    publisher = RabbitmqBroker(url=rabbitmq_url, confirm_delivery=True, middleware=[])
    publisher.declare_queue("sync")
    try:
        for value in range(3):
            publisher.enqueue(dramatiq.Message(queue_name="sync", actor_name="echo", args=(), kwargs={"value": value},
                                               options={}))
        depths = {q.name: q for q in broker_depths(rabbitmq_url).queues}
        assert depths["sync"].ready == 3 and depths["carts"].ready in (0, None)
        assert {q.name: q.ready for q in broker_depths(rabbitmq_url).queues}["sync"] == 3  # nothing was consumed
    finally:
        publisher.close()
        purge_queues(rabbitmq_url)

    down = broker_depths("amqp://guest:guest@127.0.0.1:1/%2F")
    assert down.reachable is False and down.error
