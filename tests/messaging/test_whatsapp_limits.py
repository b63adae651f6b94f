"""WhatsApp's limits on the sending number, with real ``dramatiq`` workers on RabbitMQ, SQLite and PostgreSQL:
a quality webhook pauses a running campaign, and a campaign larger than the messaging limit is planned and
sent across days.
"""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from tests.support.apps import overrides, with_env
from tests.support.panel import logged_in_admin
from tests.support.services import wait_for
from tests.support.whatsapp import SENDER, broadcast_env, phone, post_webhook
from tests.support.whatsapp import campaign_progress as progress
from tests.support.whatsapp import start_campaign as start
from wch.db import db, transaction, utcnow
from wch.jobs.queries import pending_counts
from wch.messaging import campaigns, limits
from wch.models import Message, PhoneNumber, Recipient

pytestmark = pytest.mark.rabbitmq

CAP = 20
DAY = timedelta(hours=24, minutes=1)


@pytest.fixture
def env(request, fake_graph):
    """At most CAP sends a second; a campaign waiting for the messaging limit looks again every 2 s."""
    return broadcast_env(fake_graph.url) | {"WCH_SEND_RATE_LIMIT": str(CAP), "WCH_BROADCAST_BATCH_SIZE": "20",
                                            "WCH_BROADCAST_BATCH_INTERVAL": "1.0", "WCH_MAX_BROKER_DELAY": "2",
                                            } | overrides(request)


def new_campaign(size: int) -> int:
    csv = io.StringIO("phone\n" + "".join(f"{phone(n)}\n" for n in range(size)))
    with transaction():
        return campaigns.create_campaign(name="big", template_name="promo", csv_file=csv).campaign.id


def quality_update(event: str, limit: str) -> dict:
    """A ``phone_number_quality_update`` delivery, shaped as Meta's webhook reference describes it."""
    return {"object": "whatsapp_business_account", "entry": [{"id": "WABA", "time": 1767000000, "changes": [
        {"field": "phone_number_quality_update",
         "value": {"display_phone_number": "15550100001", "event": event,
                   "max_daily_conversations_per_business": limit}}]}]}


def batches_pending() -> bool:
    db.session.rollback()
    counts = pending_counts().get("send_campaign_batch", {})
    db.session.rollback()
    return any(counts.values())


def test_a_quality_webhook_flagging_the_number_pauses_the_running_campaign(rabbit_app, spawn_worker, fake_graph):
    campaign_id = new_campaign(200)
    spawn_worker()
    start(campaign_id)
    fake_graph.wait_for_requests(CAP, "messages")
    client = rabbit_app.test_client()

    assert post_webhook(client, quality_update("FLAGGED", "TIER_10K")).status_code == 200
    info = wait_for(lambda: (p := progress(campaign_id))["status"] == "paused" and p, what="the campaign to pause")
    assert "flagged" in info["status_reason"]
    wait_for(lambda: progress(campaign_id)["in_flight"] == 0 and not batches_pending(),
             what="the batch under way to finish and the chain to stop")
    info = progress(campaign_id)
    sent_when_paused = len(fake_graph.messages())
    assert info["sent"] == sent_when_paused and 0 < info["pending"] < 200
    db.session.rollback()
    number = db.session.get(PhoneNumber, SENDER)
    assert number.flagged_at is not None and number.last_event == "FLAGGED" and number.messaging_limit == "10000"
    db.session.rollback()
    page = logged_in_admin(rabbit_app).get("/admin/messages/").get_data(as_text=True)
    assert "running campaigns were paused" in page and "10000 customers" in page.replace(",", "")

    # Meta clears the flag; staff resume; the rest goes out, each recipient once.
    assert post_webhook(client, quality_update("UNFLAGGED", "TIER_10K")).status_code == 200
    wait_for(lambda: db.session.get(PhoneNumber, SENDER, populate_existing=True).flagged_at is None,
             what="the flag to clear")
    db.session.rollback()
    with transaction():
        campaigns.resume_campaign(campaign_id)
    info = wait_for(lambda: (p := progress(campaign_id))["status"] == "completed" and p, timeout=60,
                    what="the campaign to complete")
    assert info["sent"] == 200 and len(fake_graph.messages()) == 200 > sent_when_paused


def shift_a_day_back() -> None:
    """Let a day pass for the messaging limit: every send so far moves 24 hours into the past."""
    with transaction():
        for model, column in ((Recipient, "sent_at"), (Message, "created_at")):
            stamped = db.session.execute(select(model.id, getattr(model, column))
                                         .where(getattr(model, column).is_not(None))).all()
            db.session.execute(update(model), [{"id": id_, column: when - DAY} for id_, when in stamped])


def sent_count() -> int:
    db.session.rollback()
    count = db.session.scalar(select(func.count()).select_from(Recipient).where(Recipient.sent_at.is_not(None)))
    db.session.rollback()
    return count


@with_env(WCH_MESSAGING_LIMIT="100")
def test_a_campaign_larger_than_the_messaging_limit_is_planned_and_sent_across_days(rabbit_app, spawn_worker,
                                                                                    fake_graph):
    with transaction():  # an order update to another customer went out as a template an hour ago: it counts
        db.session.add(Message(kind="order", subject="order:7:completed", phone=phone(9999), state="sent",
                               form="template", created_at=utcnow() - timedelta(hours=1)))
    campaign_id = new_campaign(250)

    # Shown before it starts: on the command line and in the panel.
    plan = rabbit_app.test_cli_runner().invoke(args=["campaigns", "plan", str(campaign_id)])
    assert "250 recipients: today 99, tomorrow 100, day 3 51" in plan.output, plan.output
    page = logged_in_admin(rabbit_app).get(f"/admin/campaigns/{campaign_id}").get_data(as_text=True)
    assert "250 recipients: today 99, tomorrow 100, day 3 51" in page
    db.session.rollback()

    spawn_worker()
    start(campaign_id)
    for day, total in enumerate((99, 199, 250)):
        if day:
            shift_a_day_back()
        wait_for(lambda total=total: sent_count() == total, timeout=60, what=f"{total} sends")
        if total < 250:
            info = wait_for(lambda: (p := progress(campaign_id))["status_reason"] and p,
                            what="the campaign to wait for the limit")
            assert info["status"] == "sending" and "waiting for WhatsApp's messaging limit" in info["status_reason"]
            assert len(fake_graph.messages()) == total  # nothing beyond the limit reached Meta
            db.session.rollback()
            assert limits.room(SENDER, configured=100) == 0
            db.session.rollback()
    info = wait_for(lambda: (p := progress(campaign_id))["status"] == "completed" and p, what="completion")
    assert info["sent"] == 250 and len(fake_graph.messages()) == 250 and info["status_reason"] is None
