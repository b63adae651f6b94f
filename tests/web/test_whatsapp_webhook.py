"""``/webhooks/whatsapp``: verification, signatures, statuses applied monotonically, inbound messages and opt-outs."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from tests.support.apps import overrides, run_jobs
from tests.support.whatsapp import (
    VERIFY_TOKEN,
    add_contacts,
    broadcast_env,
    inbound_payload,
    phone,
    post_webhook,
    status,
    status_payload,
)
from wch import runtime
from wch.db import db, transaction, utcnow
from wch.messaging import campaigns
from wch.models import Contact, Job, Recipient


@pytest.fixture
def env(request, fake_graph):
    """Meta's app secret and verify token; campaigns send through the fake Graph API."""
    return broadcast_env(fake_graph.url) | overrides(request)


def sent_campaign(broker, worker, count=3):
    add_contacts(count)
    campaign = campaigns.create_campaign(name="n", template_name="t", all_contacts=True).campaign
    with transaction():
        campaigns.start_campaign(campaign.id, max_broker_delay=runtime.settings().max_broker_delay)
    run_jobs(broker, worker)
    return campaign.id, {r.phone: r.wamid for r in db.session.scalars(select(Recipient))}


def counters(campaign_id):
    db.session.expire_all()
    return campaigns.progress(campaign_id)


def deliver(client, broker, worker, *statuses_):
    response = post_webhook(client, status_payload(*statuses_))
    assert response.status_code == 200
    run_jobs(broker, worker)


def test_verification_answers_the_challenge_for_our_token_only(client):
    ok = client.get("/webhooks/whatsapp", query_string={"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN,
                                                         "hub.challenge": "1158201444"})
    assert ok.status_code == 200 and ok.get_data(as_text=True) == "1158201444"
    wrong = client.get("/webhooks/whatsapp", query_string={"hub.mode": "subscribe", "hub.verify_token": "guess",
                                                            "hub.challenge": "1158201444"})
    assert wrong.status_code == 403 and "1158201444" not in wrong.get_data(as_text=True)


def test_statuses_move_recipients_forward_and_counters_follow(client, broker, stub_worker):
    campaign_id, wamids = sent_campaign(broker, stub_worker)
    a, b, c = (phone(i) for i in range(3))
    deliver(client, broker, stub_worker,
            status(wamids[a], "delivered", a), status(wamids[b], "delivered", b), status(wamids[b], "read", b))
    info = counters(campaign_id)
    assert (info["sent"], info["delivered"], info["read"], info["failed"]) == (3, 2, 1, 0)

    deliver(client, broker, stub_worker, status(wamids[c], "failed", c, error_code=131026))
    info = counters(campaign_id)
    assert (info["sent"], info["delivered"], info["read"], info["failed"]) == (2, 2, 1, 1)
    failed = db.session.scalars(select(Recipient).where(Recipient.phone == c)).one()
    assert failed.status == "failed" and failed.error_code == 131026 and "undeliverable" in failed.error


def test_replayed_and_out_of_order_statuses_count_once(client, broker, stub_worker):
    campaign_id, wamids = sent_campaign(broker, stub_worker)
    a = phone(0)
    read, delivered = status(wamids[a], "read", a), status(wamids[a], "delivered", a)
    for _ in range(2):
        deliver(client, broker, stub_worker, read)           # read before delivered, twice
    deliver(client, broker, stub_worker, delivered, delivered)  # late delivered, duplicated in one payload
    deliver(client, broker, stub_worker, status(wamids[a], "sent", a))

    info = counters(campaign_id)
    assert (info["sent"], info["delivered"], info["read"]) == (3, 1, 1)
    recipient = db.session.scalars(select(Recipient).where(Recipient.phone == a)).one()
    assert recipient.status == "read"
    deliver(client, broker, stub_worker, status(wamids[a], "failed", a, error_code=131026))
    assert counters(campaign_id)["failed"] == 0  # a read message does not fail afterwards


def test_unsigned_or_badly_signed_deliveries_get_401_and_change_nothing(client, broker, stub_worker):
    campaign_id, wamids = sent_campaign(broker, stub_worker)
    a = phone(0)
    jobs_before = db.session.scalar(select(func.count()).select_from(Job))
    payload = status_payload(status(wamids[a], "read", a))
    assert post_webhook(client, payload, secret=None).status_code == 401
    assert post_webhook(client, payload, secret="not-the-secret").status_code == 401
    assert post_webhook(client, payload, signature="sha1=abc").status_code == 401
    run_jobs(broker, stub_worker)
    assert db.session.scalar(select(func.count()).select_from(Job)) == jobs_before
    assert counters(campaign_id)["read"] == 0


def test_an_oversized_delivery_is_refused_before_its_signature_is_checked(client):
    from wch.web.whatsapp import MAX_BODY

    response = client.post(
        "/webhooks/whatsapp", data=b"{" + b" " * MAX_BODY + b"}", content_type="application/json",
        headers={"X-Hub-Signature-256": "sha256=" + "0" * 64},
    )
    assert response.status_code == 413
    assert db.session.scalar(select(func.count()).select_from(Job)) == 0


def test_a_recipient_left_in_flight_is_settled_by_its_status(client, broker, stub_worker):
    campaign_id, _ = sent_campaign(broker, stub_worker, count=2)
    # As a worker that died after Meta took the message leaves it: sending, no wamid, flagged.
    recipient = db.session.scalars(select(Recipient).where(Recipient.phone == phone(1))).one()
    recipient.status, recipient.wamid, recipient.attention_at = "sending", None, utcnow()
    campaign = campaigns.get_campaign(campaign_id)
    campaign.sent -= 1
    db.session.commit()
    assert counters(campaign_id)["needs_attention"] == 1

    entry = status("wamid.settled", "delivered", phone(1))
    entry["biz_opaque_callback_data"] = f"wch:recipient:{recipient.id}"
    deliver(client, broker, stub_worker, entry)
    info = counters(campaign_id)
    assert (info["sent"], info["delivered"], info["needs_attention"]) == (2, 1, 0)
    db.session.refresh(recipient)
    assert recipient.wamid == "wamid.settled" and recipient.status == "delivered"


def test_inbound_messages_open_the_window_and_stop_start_opt_out_and_in(client, broker, stub_worker):
    customer = phone(42)
    response = post_webhook(client, inbound_payload(customer, "Hi, is the red one in stock?", name="Ann"))
    assert response.status_code == 200
    run_jobs(broker, stub_worker)
    contact = db.session.scalars(select(Contact).where(Contact.phone == customer)).one()
    assert contact.name == "Ann" and contact.opted_out_at is None
    assert utcnow() - contact.last_inbound_at < timedelta(minutes=1)

    post_webhook(client, inbound_payload(customer, "  stop "))
    run_jobs(broker, stub_worker)
    db.session.refresh(contact)
    assert contact.opted_out_at is not None

    # Delivered out of order: the later START wins whichever is applied first.
    later = int(time.time()) + 5
    post_webhook(client, inbound_payload(customer, "START", ts=later))
    post_webhook(client, inbound_payload(customer, "UNSUBSCRIBE", ts=later - 1))
    run_jobs(broker, stub_worker)
    db.session.refresh(contact)
    assert contact.opted_out_at is None
