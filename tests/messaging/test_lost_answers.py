"""Meta acts on a send but its answer is lost: the connection drops after the request was read, or breaks
halfway through the answer. An order update, a reminder and a campaign recipient, end to end through the
webhooks, RabbitMQ and a real ``dramatiq`` worker, on SQLite and PostgreSQL: each customer's message is
posted exactly once, its row is flagged, and Meta's signed status webhook settles it.
"""

from __future__ import annotations

import io
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from tests.support import woo
from tests.support.services import wait_for
from tests.support.whatsapp import broadcast_env, phone, post_webhook, start_campaign, status, status_payload
from wch.carts import reminder_settings, reminders
from wch.db import db, transaction, utcnow
from wch.messaging import campaigns, unsettled
from wch.models import Cart, Job, Message, Recipient

pytestmark = pytest.mark.rabbitmq

ORDER_PHONE = "+351912345678"  # the billing phone of tests.support.woo.order
CART_PHONE = phone(1)
LOST_RECIPIENT = phone(12)
EXPIRY_HOURS = 72


@pytest.fixture
def env(fake_graph):
    """Sends through the fake Graph API; the store's webhooks and order template configured too."""
    store = woo.store_env()
    return broadcast_env(fake_graph.url) | store


def rows(model, *where):
    db.session.rollback()
    found = list(db.session.scalars(select(model).where(*where)))
    db.session.expunge_all()
    db.session.rollback()
    return found


def message_about(subject_prefix: str) -> Message | None:
    found = rows(Message, Message.subject.startswith(subject_prefix))
    return found[0] if found else None


def finished_jobs(type_: str) -> list[Job]:
    return [job for job in rows(Job, Job.type == type_) if job.status in ("succeeded", "failed")]


def settle_by_status(client, fake_graph, to: str, name: str) -> None:
    """Meta's status for the one message it got for ``to``, as its signed webhook would bring it."""
    [request] = fake_graph.messages(recipient=to)
    entry = status(request.wamid, name, to)
    entry["biz_opaque_callback_data"] = request.json["biz_opaque_callback_data"]
    assert post_webhook(client, status_payload(entry)).status_code == 200


@pytest.mark.parametrize("lose", ["drop", "cut"], ids=["dropped-after-the-request", "cut-halfway-through-answer"])
def test_a_lost_answer_sends_nothing_twice_and_the_status_webhook_settles_it(rabbit_app, spawn_worker, fake_graph,
                                                                             lose):
    for to in (ORDER_PHONE, CART_PHONE, LOST_RECIPIENT):
        (fake_graph.drop_connection if lose == "drop" else fake_graph.cut_answer)(recipient=to, times=None)
    client = rabbit_app.test_client()
    with transaction():
        reminder_settings.save_settings({"enabled": True, "delay_hours": 24, "template_name": "cart_reminder"},
                                        cart_expiry_hours=EXPIRY_HOURS)
        now = utcnow()
        db.session.add(Cart(customer_phone=CART_PHONE, customer_name="Bo", items=[{"name": "Mug", "quantity": 1}],
                            total=Decimal("9.90"), currency="EUR", status="active",
                            created_at=now - timedelta(hours=31), updated_at=now - timedelta(hours=30)))
        csv = io.StringIO("phone\n" + "".join(f"{phone(n)}\n" for n in range(10, 15)))
        campaign_id = campaigns.create_campaign(name="lost", template_name="promo", csv_file=csv).campaign.id
    spawn_worker()

    assert woo.post(client, "order.updated", woo.order(900, "completed")).status_code == 200
    assert reminders.scan(cart_expiry_hours=EXPIRY_HOURS) == 1
    start_campaign(campaign_id)

    # Each lost send is flagged, not retried: the order job fails visibly, the reminder job says so.
    [order_job] = wait_for(lambda: finished_jobs("notify_order"), what="the order job")
    assert order_job.status == "failed" and "not resending" in order_job.last_error
    [reminder_job] = wait_for(lambda: finished_jobs("send_cart_reminder"), what="the reminder job")
    assert reminder_job.status == "succeeded" and reminder_job.result["sent"] is None
    info = wait_for(lambda: (p := campaigns.progress(campaign_id))["status"] == "completed" and p,
                    what="the campaign to complete")
    assert (info["sent"], info["needs_attention"]) == (4, 1)
    assert message_about("order:900:").state == "uncertain"
    assert message_about("cart:").state == "uncertain"

    # The store replays the order, the scan runs again: nothing is sent again.
    assert woo.post(client, "order.updated", woo.order(900, "completed")).status_code == 200
    wait_for(lambda: len(finished_jobs("notify_order")) == 2, what="the replayed order's job")
    assert finished_jobs("notify_order")[-1].result["skipped"] == "message already sent or being sent"
    assert reminders.scan(cart_expiry_hours=EXPIRY_HOURS) == 0
    for to in (ORDER_PHONE, CART_PHONE, LOST_RECIPIENT):
        [request] = fake_graph.messages(recipient=to)
        assert request.lost == lose and request.wamid  # Meta has it, the customer got it: once
    db.session.rollback()
    assert unsettled.count_unsettled(older_than=timedelta(0)) == 3

    # Meta's status webhooks settle all three.
    for to in (ORDER_PHONE, CART_PHONE, LOST_RECIPIENT):
        settle_by_status(client, fake_graph, to, "delivered")
    wait_for(lambda: message_about("order:900:").state == "delivered", what="the order message settled")
    wait_for(lambda: message_about("cart:").state == "delivered", what="the reminder settled")
    [recipient] = wait_for(lambda: [r for r in rows(Recipient, Recipient.phone == LOST_RECIPIENT)
                                    if r.status == "delivered"], what="the recipient settled")
    assert recipient.attention_at is None and recipient.wamid == fake_graph.messages(recipient=LOST_RECIPIENT)[0].wamid
    db.session.rollback()
    info = campaigns.progress(campaign_id)
    assert (info["sent"], info["delivered"], info["needs_attention"]) == (5, 1, 0)
    assert unsettled.count_unsettled(older_than=timedelta(0)) == 0
    assert message_about("order:900:").wamid == fake_graph.messages(recipient=ORDER_PHONE)[0].wamid
    assert len(fake_graph.messages()) == 7  # one each: the order, the reminder, five recipients
