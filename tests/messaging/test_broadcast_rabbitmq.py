"""Campaigns on the real RabbitMQ with real ``dramatiq`` worker processes and the fake Graph API,
on SQLite and PostgreSQL: the rate cap, exactly-once sending, a worker killed mid-campaign, Meta's errors.
"""

from __future__ import annotations

import io
from collections import Counter
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from tests.support.services import wait_for
from tests.support.whatsapp import (
    SENDER,
    WHATSAPP_ENV,
    add_contacts,
    max_in_any_second,
    phone,
    post_webhook,
    status,
    status_payload,
)
from tests.support.whatsapp import (
    campaign_progress as progress,
)
from tests.support.whatsapp import start_campaign as start
from wch.carts import reminder_settings, reminders
from wch.db import db, transaction, utcnow
from wch.jobs import dispatch
from wch.jobs.queries import pending_counts
from wch.messaging import campaigns
from wch.messaging.events import apply_webhook
from wch.models import Cart, Job, Recipient

pytestmark = pytest.mark.rabbitmq

CAP = 50
EXPIRY_HOURS = 72  # WCH_CART_EXPIRY_HOURS's default


@pytest.fixture
def env(fake_graph):
    """The app and its workers send through the fake Graph API at no more than ``CAP`` a second."""
    return WHATSAPP_ENV | {"WHATSAPP_API_URL": fake_graph.url, "WCH_SEND_RATE_LIMIT": str(CAP),
                           "WCH_BROADCAST_BATCH_SIZE": "50", "WCH_BROADCAST_BATCH_INTERVAL": "1.0",
                           "WCH_BROADCAST_RETRY_DELAYS": "0.5,0.5,0.5"}


FAST = {"WCH_SEND_RATE_LIMIT": "400", "WCH_BROADCAST_BATCH_INTERVAL": "0.1"}


def wait_until(campaign_id: int, *states: str, timeout: float = 60) -> dict:
    return wait_for(lambda: (info := progress(campaign_id))["status"] in states and info, timeout=timeout,
                    interval=0.2, what=f"campaign {campaign_id} to be {'/'.join(states)}")


def new_campaign(**kwargs) -> int:
    campaign_id = campaigns.create_campaign(name="test", template_name="promo", all_contacts=True, **kwargs).campaign.id
    db.session.commit()
    return campaign_id


def test_500_recipients_get_exactly_one_message_each_within_the_cap(spawn_worker, fake_graph):
    phones = add_contacts(500)
    campaign_id = new_campaign()
    spawn_worker()
    start(campaign_id)

    info = wait_until(campaign_id, "completed", timeout=60)
    messages = fake_graph.messages()
    assert sorted(m.recipient for m in messages) == sorted(phones)  # all 500, each once
    assert max_in_any_second([m.time for m in messages]) <= CAP
    assert (info["total"], info["sent"], info["failed"], info["skipped"], info["pending"]) == (500, 500, 0, 0, 0)
    assert info["in_flight"] == info["needs_attention"] == 0
    wamids = {r.wamid for r in db.session.scalars(select(Recipient).where(Recipient.campaign_id == campaign_id))}
    assert wamids == {m.answer["messages"][0]["id"] for m in messages}


def test_two_campaigns_on_two_workers_share_the_cap(spawn_worker, fake_graph):
    add_contacts(150)
    first, second = new_campaign(), new_campaign()
    spawn_worker()
    spawn_worker()
    start(first)
    start(second)

    wait_until(first, "completed")
    wait_until(second, "completed")
    messages = fake_graph.messages()
    assert len(messages) == 300
    assert max(Counter(m.recipient for m in messages).values()) == 2  # once per campaign
    assert max_in_any_second([m.time for m in messages]) <= CAP


def test_worker_killed_mid_campaign_no_recipient_twice_none_forgotten(spawn_worker, fake_graph):
    phones = add_contacts(150)
    campaign_id = new_campaign()
    worker = spawn_worker()
    start(campaign_id)
    fake_graph.wait_for_requests(60, "messages")
    worker.kill()
    spawn_worker()

    info = wait_until(campaign_id, "completed", timeout=90)
    messaged = Counter(m.recipient for m in fake_graph.messages())
    assert max(messaged.values()) == 1, "a recipient got the campaign twice"
    recipients = list(db.session.scalars(select(Recipient).where(Recipient.campaign_id == campaign_id)))
    flagged = [r for r in recipients if r.attention_at is not None]
    assert {r.phone for r in recipients if r.status == "sent"} | {r.phone for r in flagged} == set(phones)
    assert all(r.status == "sending" for r in flagged)
    assert info["sent"] + info["needs_attention"] == 150

    # Meta's status webhook settles the ones that were in flight: each was sent once, or not at all.
    for recipient in flagged:
        [request] = fake_graph.messages(recipient=recipient.phone) or [None]
        if request is not None:
            entry = status(f"wamid.settled{recipient.id}", "sent", recipient.phone)
            entry["biz_opaque_callback_data"] = request.json["biz_opaque_callback_data"]
            apply_webhook(status_payload(entry), sender=SENDER)
    info = progress(campaign_id)
    assert info["sent"] == len(messaged) and info["needs_attention"] == 150 - len(messaged)


def test_meta_errors_retries_failures_and_opt_outs(spawn_worker, fake_graph):
    add_contacts(40, opted_out=[5])
    fake_graph.rate_limit(times=3, recipient=phone(1))
    fake_graph.fail(status=503, times=2, recipient=phone(2))
    fake_graph.fail(status=500, times=1, recipient=phone(3))
    fake_graph.fail(code=131026, times=None, recipient=phone(4))
    campaign_id = campaigns.create_campaign(name="t", template_name="promo", csv_file=_csv(range(40))).campaign.id
    db.session.commit()
    spawn_worker(**FAST)
    start(campaign_id)

    info = wait_until(campaign_id, "completed", timeout=60)
    assert (info["sent"], info["failed"], info["skipped"]) == (38, 1, 1)
    accepted = Counter(m.recipient for m in fake_graph.messages() if m.status == 200)
    assert set(accepted) == {phone(i) for i in range(40)} - {phone(4), phone(5)}
    assert max(accepted.values()) == 1
    assert len(fake_graph.messages(recipient=phone(4))) == 1  # 131026 is not retried
    assert fake_graph.messages(recipient=phone(5)) == []      # opted out
    failed = db.session.scalars(select(Recipient).where(Recipient.status == "failed")).one()
    assert failed.phone == phone(4) and failed.error_code == 131026


def test_spam_limit_pauses_the_campaign(spawn_worker, fake_graph):
    add_contacts(60)
    fake_graph.fail(code=131048, times=1, recipient=phone(20), message="(#131048) Spam rate limit hit")
    campaign_id = new_campaign()
    spawn_worker(**FAST)
    start(campaign_id)

    info = wait_until(campaign_id, "paused")
    assert "131048" in info["status_reason"]
    wait_for(lambda: progress(campaign_id)["in_flight"] == 0, what="the batch in flight to finish")
    info = progress(campaign_id)
    assert info["pending"] > 0 and info["sent"] + info["pending"] == 60
    with transaction():
        campaigns.resume_campaign(campaign_id)
    info = wait_until(campaign_id, "completed")
    accepted = Counter(m.recipient for m in fake_graph.messages() if m.status == 200)
    assert info["sent"] == 60 and set(accepted) == {phone(i) for i in range(60)} and max(accepted.values()) == 1


def test_signed_status_webhooks_move_counters_once(rabbit_app, spawn_worker, fake_graph):
    add_contacts(3)
    campaign_id = new_campaign()
    spawn_worker(**FAST)
    start(campaign_id)
    wait_until(campaign_id, "completed")
    wamids = {r.phone: r.wamid for r in db.session.scalars(select(Recipient))}
    db.session.rollback()
    client = rabbit_app.test_client()
    a, b = phone(0), phone(1)

    unsigned = post_webhook(client, status_payload(status(wamids[a], "read", a)), secret=None)
    assert unsigned.status_code == 401
    for _ in range(2):  # delivered twice, and read before delivered
        assert post_webhook(client, status_payload(status(wamids[b], "read", b))).status_code == 200
        assert post_webhook(client, status_payload(status(wamids[b], "delivered", b),
                                                   status(wamids[a], "delivered", a))).status_code == 200
    wait_for(lambda: progress(campaign_id)["delivered"] == 2, what="the statuses to be applied")
    wait_for(lambda: not _pending_webhook_jobs(), what="every webhook job to finish")
    info = progress(campaign_id)
    assert (info["sent"], info["delivered"], info["read"]) == (3, 2, 1)


def _pending_webhook_jobs() -> bool:
    db.session.rollback()
    counts = pending_counts().get("process_whatsapp_webhook", {})
    db.session.rollback()
    return any(counts.values())


def _csv(numbers):
    return io.StringIO("phone,name\n" + "".join(f"{phone(i)},Customer {i}\n" for i in numbers))


def test_reminders_on_real_workers_once_per_idle_cart(spawn_worker, fake_graph):
    with transaction():
        reminder_settings.save_settings({"enabled": True, "delay_hours": 24, "template_name": "cart_reminder",
                                         "template_language": "en_US"}, cart_expiry_hours=EXPIRY_HOURS)
    now = utcnow()
    add_contacts(3, opted_out=[2])
    for n, idle_hours in ((0, 30), (1, 5), (2, 30)):  # idle, too recent, opted out
        db.session.add(Cart(customer_phone=phone(n), customer_name="Ann", items=[{"name": "Mug", "quantity": 1}],
                            total=Decimal("9.90"), currency="EUR", status="active",
                            created_at=now - timedelta(hours=40), updated_at=now - timedelta(hours=idle_hours)))
    db.session.commit()
    spawn_worker()

    assert reminders.scan(cart_expiry_hours=EXPIRY_HOURS) == 1
    [message] = fake_graph.wait_for_requests(1, "messages")
    assert message.recipient == phone(0) and message.json["type"] == "template"
    job = wait_for(lambda: _finished_reminder_job(), what="the reminder job to finish")
    assert reminders.scan(cart_expiry_hours=EXPIRY_HOURS) == 0

    dispatch("send_cart_reminder", job.args)  # a replay of the same job
    db.session.commit()
    wait_for(lambda: len(_finished_reminder_jobs()) == 2, what="the replayed job to finish")
    assert len(fake_graph.messages()) == 1


def _finished_reminder_jobs() -> list[Job]:
    db.session.rollback()
    jobs = list(db.session.scalars(select(Job).where(Job.type == "send_cart_reminder",
                                                     Job.status == "succeeded")))
    db.session.expunge_all()
    db.session.rollback()
    return jobs


def _finished_reminder_job() -> Job | None:
    jobs = _finished_reminder_jobs()
    return jobs[0] if jobs else None
