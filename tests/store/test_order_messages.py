"""Order messages made safe and settled: sanitised parameters, paid statuses only, a daily cap per customer,
and Meta's status webhook settling (and, where the error allows, resending) a message; on the StubBroker."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from tests.support import woo
from tests.support.apps import run_jobs, with_env
from tests.support.whatsapp import APP_SECRET, post_webhook, status, status_payload
from wch.db import db
from wch.messaging import messages
from wch.models import Job, Message

PHONE = "+351912345678"  # the billing phone of woo.order


@pytest.fixture
def env(request, fake_graph):
    """The store's settings, and Meta's webhook secret so its statuses can be posted."""
    return woo.sync_env(fake_graph.url) | {"WHATSAPP_APP_SECRET": APP_SECRET} | dict(getattr(request, "param", {}))


def parameters(request) -> list[str]:
    return [p["text"] for p in request.json["template"]["components"][0]["parameters"]]


def order_message() -> Message:
    db.session.rollback()
    return db.session.scalars(select(Message).where(Message.kind == "order")).one()


@pytest.mark.parametrize("first_name, shown", [
    ("https://evil.example/win", "there"),
    ("bit.ly/free", "there"),
    ("Ana <b>*Win*</b> www.x.example", "Ana"),
    ("call@me.example", "there"),
    ("Zoë-Marie 0800123", "Zoë-Marie"),
    ("A" * 200, "A" * 30),
])
def test_the_name_and_number_from_the_store_are_sanitised(client, broker, stub_worker, fake_graph, first_name, shown):
    payload = woo.order(900, "completed", number="evil.example/#1")
    payload["billing"]["first_name"] = first_name
    woo.post(client, "order.updated", payload)
    run_jobs(broker, stub_worker)
    [request] = fake_graph.messages()
    assert parameters(request) == [shown, "900", "completed"]


def test_only_paid_and_fulfilment_statuses_are_told_by_default(client, broker, stub_worker, fake_graph):
    for n, status_ in enumerate(("pending", "on-hold", "failed", "cancelled", "processing", "completed", "refunded")):
        woo.post(client, "order.updated", woo.order(900, status_, date_modified_gmt=f"2026-11-0{n + 1}T00:00:00"))
        run_jobs(broker, stub_worker)
    assert [parameters(r)[2] for r in fake_graph.messages()] == ["processing", "completed", "refunded"]


@with_env(WCH_ORDER_MESSAGES_PER_DAY="2")
def test_a_customer_gets_no_more_order_messages_a_day_than_the_cap(client, broker, stub_worker, fake_graph):
    for store_id in (900, 901, 902):
        woo.post(client, "order.updated", woo.order(store_id, "completed"))
        run_jobs(broker, stub_worker)
    assert len(fake_graph.messages()) == 2
    job = db.session.scalars(select(Job).where(Job.type == "notify_order").order_by(Job.enqueued_at.desc())).first()
    assert job.result["skipped"] == "this customer had 2 order messages today"


def test_an_uncertain_message_is_settled_by_meta_s_status(client, broker, stub_worker, fake_graph):
    fake_graph.cut_answer()
    woo.post(client, "order.updated", woo.order(900, "completed"))
    run_jobs(broker, stub_worker)
    assert order_message().state == "uncertain"
    [request] = fake_graph.messages()

    # Read before sent, repeated, out of order: it only moves forward.
    for name in ("read", "sent", "read"):
        entry = status(request.wamid, name, PHONE)
        entry["biz_opaque_callback_data"] = "order:900:completed"  # its wamid never reached wch: found by this
        assert post_webhook(client, status_payload(entry)).status_code == 200
        run_jobs(broker, stub_worker)
    message = order_message()
    assert (message.state, message.wamid, message.read_at is not None) == ("read", request.wamid, True)


def test_a_failure_meta_reports_later_is_resent_when_the_error_allows_it(client, broker, stub_worker, fake_graph,
                                                                        monkeypatch):
    monkeypatch.setattr(messages, "RESEND_DELAY", 0.2)  # Meta's pause for this customer, shortened
    woo.post(client, "order.updated", woo.order(900, "completed"))
    run_jobs(broker, stub_worker)
    [first] = fake_graph.messages()
    failed = status(first.wamid, "failed", PHONE, error_code=131000)  # "something went wrong" on Meta's side
    assert post_webhook(client, status_payload(failed)).status_code == 200
    run_jobs(broker, stub_worker)

    first_try, second_try = fake_graph.messages()
    assert second_try.json == first_try.json  # the same message, once more
    message = order_message()
    assert (message.state, message.attempts, message.wamid) == ("sent", 2, second_try.wamid)
    assert post_webhook(client, status_payload(status(second_try.wamid, "delivered", PHONE))).status_code == 200
    run_jobs(broker, stub_worker)
    assert order_message().state == "delivered"
    assert len(fake_graph.messages()) == 2


def test_a_failure_the_error_says_not_to_retry_is_not_resent(client, broker, stub_worker, fake_graph):
    woo.post(client, "order.updated", woo.order(900, "completed"))
    run_jobs(broker, stub_worker)
    [first] = fake_graph.messages()
    assert post_webhook(client, status_payload(
        status(first.wamid, "failed", PHONE, error_code=131026))).status_code == 200
    run_jobs(broker, stub_worker)
    assert (order_message().state, order_message().error_code) == ("failed", 131026)
    assert db.session.scalars(select(Job).where(Job.type == "notify_order", Job.status == "queued")).first() is None
    assert len(fake_graph.messages()) == 1
