"""Catalog and order sync end to end: signed webhooks into the app, jobs through the real RabbitMQ,
a real ``dramatiq`` worker process calling the fake Graph API; on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import time

import pytest
from sqlalchemy import func, select

from tests.support import woo
from tests.support.services import wait_for
from wch.db import db
from wch.models import Job, Message, Order, Product, WebhookDelivery

pytestmark = pytest.mark.rabbitmq

TOKEN = woo.sync_env("")["WHATSAPP_ACCESS_TOKEN"]


def jobs(type_: str | None = None) -> list[Job]:
    db.session.rollback()
    query = select(Job).order_by(Job.enqueued_at)
    if type_:
        query = query.where(Job.type == type_)
    found = list(db.session.scalars(query))
    for job in found:
        job.attempt_log  # noqa: B018  (loaded before the session lets go)
    db.session.expunge_all()
    db.session.rollback()
    return found


def finished(type_: str, count: int = 1, *, timeout: float = 30) -> list[Job]:
    """Wait until ``count`` jobs of ``type_`` have finished; return them, oldest first."""
    def done():
        found = [j for j in jobs(type_) if j.status in ("succeeded", "failed")]
        return found if len(found) >= count else None

    return wait_for(done, timeout=timeout, interval=0.1, what=f"{count} {type_} job(s) to finish")


def table_counts() -> dict[str, int]:
    db.session.rollback()
    counts = {m.__tablename__: db.session.scalar(select(func.count()).select_from(m))
              for m in (Job, Product, Order, Message, WebhookDelivery)}
    db.session.rollback()
    return counts


def test_a_signed_product_update_makes_one_items_batch_call(rabbit_client, spawn_worker, fake_graph):
    spawn_worker()
    response = woo.post(rabbit_client, "product.updated",
                        woo.product(41, regular_price="24.5", stock_status="onbackorder"))
    assert response.status_code == 200

    [job] = finished("sync_product")
    assert job.status == "succeeded" and job.id == response.json["job"]
    [batch] = fake_graph.batches()
    assert batch.path == "/v24.0/777/items_batch" and batch.json["item_type"] == "PRODUCT_ITEM"
    [item] = batch.json["requests"]
    assert item["method"] == "UPDATE"
    assert (item["data"]["id"], item["data"]["price"], item["data"]["availability"]) == (
        "SHIRT-41", "24.50 EUR", "available for order")
    assert batch.headers["Authorization"] == f"Bearer {TOKEN}"


def test_a_stock_change_alone_sends_only_availability_and_quantity(rabbit_client, spawn_worker, fake_graph):
    spawn_worker()
    woo.post(rabbit_client, "product.updated", woo.product(41))
    finished("sync_product")
    woo.post(rabbit_client, "product.updated", woo.product(41, stock_quantity=0, stock_status="outofstock",
                                                    date_modified_gmt="2026-11-02T00:00:00"))
    [job] = finished("sync_inventory")
    assert job.status == "succeeded"
    assert fake_graph.batches()[1].json["requests"] == [
        {"method": "UPDATE", "data": {"id": "SHIRT-41", "availability": "out of stock",
                                      "quantity_to_sell_on_facebook": 0}}]


def test_a_burst_of_updates_while_the_sync_waits_makes_one_call_with_the_latest(rabbit_client, spawn_worker,
                                                                               fake_graph):
    for n in range(10):
        response = woo.post(rabbit_client, "product.updated", woo.product(41, regular_price=f"{10 + n}.00"))
        assert response.status_code == 200
    spawn_worker()  # the jobs were waiting in RabbitMQ all along

    [job] = finished("sync_product")
    assert job.status == "succeeded"
    [item] = fake_graph.batch_items()
    assert item["data"]["price"] == "19.00 EUR"
    assert len(fake_graph.batches()) == 1


def test_a_completed_order_messages_the_customer_once_and_a_replay_does_not(rabbit_client, spawn_worker, fake_graph):
    spawn_worker()
    payload = woo.order(900, "completed")
    assert woo.post(rabbit_client, "order.updated", payload).status_code == 200
    [job] = finished("notify_order")
    assert job.status == "succeeded" and job.result["sent"] == "template"
    [message] = fake_graph.messages()
    assert message.json["to"] == "+351912345678"

    # The store replays it (a new delivery), and the same delivery comes twice.
    body, headers = woo.delivery("order.updated", payload, delivery_id="replayed-1")
    assert rabbit_client.post("/webhooks/woocommerce", data=body, headers=headers).status_code == 200
    assert rabbit_client.post("/webhooks/woocommerce", data=body, headers=headers).json["outcome"] == "duplicate"
    # Even a job forced through the command line sends nothing new.
    result = rabbit_client.application.test_cli_runner().invoke(args=["sync", "order", "900", "--json"])
    forced = json.loads(result.output)["job"]
    wait_for(lambda: [j for j in jobs("notify_order") if j.id == forced and j.status == "succeeded"],
             what="the forced job")
    assert len(fake_graph.messages()) == 1
    assert [n.state for n in db.session.scalars(select(Message))] == ["sent"]


def test_server_errors_are_retried_on_the_schedule_then_succeed(rabbit_client, spawn_worker, fake_graph):
    fake_graph.fail(status=503, times=2)
    spawn_worker()
    woo.post(rabbit_client, "product.updated", woo.product(41))

    [job] = finished("sync_product")
    assert job.status == "succeeded" and job.attempts == 3
    assert [a.outcome for a in job.attempt_log] == ["retrying", "retrying", "succeeded"]
    times = [r.time for r in fake_graph.batches()]
    assert [r.status for r in fake_graph.batches()] == [503, 503, 200]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    # WORKER_RETRY_DELAYS is 1,2,3 s: each retry waits its delay (and not much longer).
    assert 0.9 <= gaps[0] < 3 and 1.9 <= gaps[1] < 4, gaps
    assert "503" in job.attempt_log[0].error


def test_an_undeliverable_number_fails_at_once_with_the_error_in_the_ledger(rabbit_client, spawn_worker, fake_graph):
    fake_graph.fail(code=131026, recipient="+351912345678", message="(#131026) Message undeliverable",
                    times=None)
    spawn_worker()
    woo.post(rabbit_client, "order.updated", woo.order(900, "completed"))

    [job] = finished("notify_order")
    assert job.status == "failed" and job.attempts == 1
    assert "RecipientUnreachable" in job.last_error and "131026" in job.last_error
    assert TOKEN not in job.last_error and TOKEN not in (job.traceback or "")
    assert len(fake_graph.messages()) == 1
    assert [n.state for n in db.session.scalars(select(Message))] == ["failed"]


def test_a_worker_killed_while_sending_does_not_make_the_customer_get_it_twice(rabbit_client, spawn_worker, fake_graph):
    fake_graph.slow(5, kind="messages", times=1)
    first = spawn_worker(WHATSAPP_READ_TIMEOUT="10")
    started = time.monotonic()
    assert woo.post(rabbit_client, "order.updated", woo.order(900, "completed")).status_code == 200
    wait_for(fake_graph.messages, what="the message to reach Meta")  # it has left; the answer is 5 s away
    # The worker holds no database lock while it waits on Meta: the webhook (and its outbox write) was quick.
    assert time.monotonic() - started < 2
    first.kill()
    spawn_worker()  # RabbitMQ redelivers the unacknowledged job to the new worker

    [job] = finished("notify_order")
    assert job.status == "succeeded", (job.result, job.last_error, [(a.outcome, a.error) for a in job.attempt_log])
    assert job.result.get("skipped") == "message already sent or being sent", (job.result, job.attempts)
    assert len(fake_graph.messages()) == 1


BAD_DELIVERIES = [
    ("no signature", "product.updated", json.dumps(woo.product(5)).encode(), {"X-WC-Webhook-Signature": None}, 401),
    ("wrong signature", "product.updated", json.dumps(woo.product(5)).encode(),
     {"X-WC-Webhook-Signature": "AAAA"}, 401),
    ("malformed JSON", "product.updated", b'{"id": 5,', {}, 400),
    ("no id", "order.updated", json.dumps({"status": "completed"}).encode(), {}, 400),
    ("bad price", "product.updated", json.dumps(woo.product(5, price="free")).encode(), {}, 400),
    ("unknown topic", "customer.created", json.dumps({"id": 5}).encode(), {}, 200),
]


def test_bad_deliveries_get_their_status_and_touch_neither_the_database_nor_meta(rabbit_client, spawn_worker,
                                                                                 fake_graph):
    spawn_worker()
    for name, topic, body, overrides, status in BAD_DELIVERIES:
        _, headers = woo.delivery(topic, body)
        headers = {k: v for k, v in (headers | overrides).items() if v is not None}
        response = rabbit_client.post("/webhooks/woocommerce", data=body, headers=headers)
        assert response.status_code == status, name
    assert table_counts() == {"jobs": 0, "products": 0, "orders": 0, "messages": 0,
                              "webhook_deliveries": 0}
    # A good delivery afterwards goes through: the worker was listening all along and saw nothing else.
    woo.post(rabbit_client, "product.updated", woo.product(6))
    finished("sync_product")
    assert [item["data"]["id"] for item in fake_graph.batch_items()] == ["SHIRT-6"]
    assert len(fake_graph.received()) == 1
