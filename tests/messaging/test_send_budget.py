"""One number, three senders at once: a campaign, order updates and abandoned-cart reminders share the
number's send budget, through the webhooks, RabbitMQ and real ``dramatiq`` workers, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import io
import time
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from tests.support import woo
from tests.support.services import wait_for
from tests.support.whatsapp import broadcast_env, max_in_any_second, phone, start_campaign
from wch.carts import reminder_settings, reminders
from wch.db import db, transaction, utcnow
from wch.messaging import campaigns
from wch.models import Cart, Message

pytestmark = pytest.mark.rabbitmq

CAP = 20
CAMPAIGN, REMINDED, ORDERS = 160, 20, 10
EXPIRY_HOURS = 72


@pytest.fixture
def env(fake_graph):
    store = woo.store_env()
    return broadcast_env(fake_graph.url) | store | {
        "WCH_SEND_RATE_LIMIT": str(CAP), "WCH_BROADCAST_BATCH_SIZE": "20", "WCH_BROADCAST_BATCH_INTERVAL": "1.0"}


def order_phone(n: int) -> str:
    return f"+3519123456{n:02d}"


def test_a_campaign_reminders_and_order_updates_stay_under_the_cap_and_orders_go_first(rabbit_app, spawn_worker,
                                                                                      fake_graph):
    fake_graph.slow(0.05)  # Meta answers in 50 ms
    client = rabbit_app.test_client()
    with transaction():
        reminder_settings.save_settings({"enabled": True, "delay_hours": 24, "template_name": "cart_reminder"},
                                        cart_expiry_hours=EXPIRY_HOURS)
        now = utcnow()
        db.session.add_all(
            Cart(customer_phone=phone(5000 + n), customer_name="Bo", items=[{"name": "Mug", "quantity": 1}],
                 total=Decimal("9.90"), currency="EUR", status="active",
                 created_at=now - timedelta(hours=31), updated_at=now - timedelta(hours=30))
            for n in range(REMINDED))
        csv = io.StringIO("phone\n" + "".join(f"{phone(n)}\n" for n in range(CAMPAIGN)))
        campaign_id = campaigns.create_campaign(name="busy", template_name="promo", csv_file=csv).campaign.id
    spawn_worker()
    spawn_worker()

    start_campaign(campaign_id)
    fake_graph.wait_for_requests(2 * CAP, "messages")  # the campaign runs at full pace
    assert reminders.scan(cart_expiry_hours=EXPIRY_HOURS) == REMINDED
    for n in range(ORDERS):
        payload = woo.order(900 + n, "completed")
        payload["billing"]["phone"] = order_phone(n)
        assert woo.post(client, "order.updated", payload).status_code == 200
        time.sleep(0.3)  # order updates trickle in while the campaign and the reminders send

    wait_for(lambda: campaigns.progress(campaign_id)["status"] == "completed", timeout=60, interval=0.2,
             what="the campaign to complete")
    wait_for(lambda: len(fake_graph.messages()) == CAMPAIGN + REMINDED + ORDERS, timeout=30,
             what="every message to reach Meta")
    sends = fake_graph.messages()
    assert all(m.status == 200 for m in sends)
    assert max_in_any_second([m.time for m in sends]) <= CAP

    # The three really competed: reminders and orders went out while the campaign was sending.
    campaign_times = [m.time for m in sends if m.recipient in {phone(n) for n in range(CAMPAIGN)}]
    during = [m for m in sends if campaign_times[0] < m.time < campaign_times[-1]
              and m.recipient not in {phone(n) for n in range(CAMPAIGN)}]
    assert len(during) >= REMINDED // 2 + ORDERS // 2

    # An order update waits for no campaign: from its claim to Meta within a second.
    db.session.rollback()
    claimed = {m.phone: m.created_at.timestamp()
               for m in db.session.scalars(select(Message).where(Message.kind == "order"))}
    db.session.rollback()
    delays = {to: fake_graph.messages(recipient=to)[0].time - claimed[to] for to in map(order_phone, range(ORDERS))}
    assert max(delays.values()) <= 1.0, delays
