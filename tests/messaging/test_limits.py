"""WhatsApp's limits on the number as wch keeps them: planning against the messaging limit, Meta's webhooks about
the number and the account, failures Meta reports later, and the Graph API's word on the number."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import update

from tests.support.apps import on_both_databases, with_env
from tests.support.whatsapp import SENDER, add_contacts, phone, status, status_payload
from wch.db import db, transaction, utcnow
from wch.messaging import campaigns, limits, standing
from wch.messaging.events import apply_webhook
from wch.models import Campaign, Message, PhoneNumber, Recipient


@pytest.mark.parametrize(("recipients", "limit", "used", "days", "text"), [
    (12_000, 10_000, 0, [10_000, 2_000], "12,000 recipients: today 10,000, tomorrow 2,000"),
    (600, 250, 50, [200, 250, 150], "600 recipients: today 200, tomorrow 250, day 3 150"),
    (600, 250, 300, [0, 250, 250, 100], "600 recipients: today 0, tomorrow 250, day 3 250, day 4 100"),
    (5_000, None, 9_999, [5_000], "5,000 recipients: today 5,000"),
    (1, 250, 0, [1], "1 recipient: today 1"),
])
def test_a_campaign_is_planned_over_the_days_the_limit_allows(recipients, limit, used, days, text):
    assert limits.plan(recipients, limit=limit, used=used) == days
    assert limits.describe_plan(days) == text


def sending_campaign(size: int = 3) -> int:
    add_contacts(size)
    campaign = campaigns.create_campaign(name="c", template_name="promo", all_contacts=True).campaign
    campaign.status = "sending"
    db.session.commit()
    return campaign.id


def change(field: str, value: dict) -> dict:
    return {"object": "whatsapp_business_account",
            "entry": [{"id": "WABA", "time": 1767000000, "changes": [{"field": field, "value": value}]}]}


@on_both_databases
def test_meta_flagging_the_number_pauses_running_campaigns_and_sets_the_limit(app):
    campaign_id = sending_campaign()
    summary = apply_webhook(change("phone_number_quality_update", {
        "display_phone_number": "15550100001", "event": "FLAGGED", "current_limit": "TIER_10K",
        "max_daily_conversations_per_business": "TIER_2K"}), sender=SENDER)
    assert summary["paused"] == 1
    db.session.rollback()
    campaign = db.session.get(Campaign, campaign_id)
    assert campaign.status == "paused" and "flagged" in campaign.status_reason
    number = standing.current(SENDER, configured=250)
    assert (number.limit, number.limit_source, number.flagged) == (2000, "Meta", True)

    apply_webhook(change("phone_number_quality_update", {"display_phone_number": "15550100001",
                                                         "event": "UNFLAGGED", "current_limit": "TIER_2K"}),
                  sender=SENDER)
    db.session.rollback()
    assert not standing.current(SENDER, configured=250).flagged


def test_a_quality_update_about_another_number_of_the_business_only_changes_the_shared_limit(app):
    with transaction():
        standing.record_display_number(SENDER, "+1 555-010-0001")
    campaign_id = sending_campaign()
    apply_webhook(change("phone_number_quality_update", {"display_phone_number": "15550109999", "event": "FLAGGED",
                                                         "max_daily_conversations_per_business": "TIER_100K"}),
                  sender=SENDER)
    db.session.rollback()
    assert db.session.get(Campaign, campaign_id).status == "sending"
    number = standing.current(SENDER, configured=250)
    assert (number.limit, number.flagged) == (100_000, False)


@pytest.mark.parametrize("value", [
    {"event": "ACCOUNT_VIOLATION", "violation_info": {"violation_type": "SCAM"}},
    {"event": "DISABLED_UPDATE", "ban_info": {"waba_ban_state": "SCHEDULE_FOR_DISABLE", "waba_ban_date": "2027-01-01"}},
    {"event": "ACCOUNT_RESTRICTION", "restriction_info": [{"restriction_type": "RESTRICTED_BIZ_INITIATED_MESSAGING",
                                                           "expiration": "2027-01-01T00:00:00+0000"}]},
], ids=["violation", "ban", "restriction"])
def test_an_account_update_that_stops_business_messages_pauses_running_campaigns(app, value):
    campaign_id = sending_campaign()
    assert apply_webhook(change("account_update", {"phone_number": "15550100001", **value}),
                         sender=SENDER)["paused"] == 1
    db.session.rollback()
    assert db.session.get(Campaign, campaign_id).status == "paused"
    assert db.session.get(PhoneNumber, SENDER).last_event == value["event"]


@pytest.mark.parametrize("code, status_after, campaign_after", [
    (131049, "failed", "paused"),  # Meta chose not to deliver it, for the ecosystem's sake: stop and look
    (131048, "failed", "paused"),  # spam rate limit
    (131056, "pending", "sending"),  # pair rate limit: this customer again, later
    (131026, "failed", "sending"),  # undeliverable: that customer only
])
def test_a_failure_meta_reports_later_for_a_recipient_acts_as_its_error_requires(app, code, status_after,
                                                                                 campaign_after):
    campaign_id = sending_campaign(1)
    db.session.execute(update(Recipient).values(status="sent", wamid="wamid.x", sent_at=utcnow(), attempts=1))
    db.session.commit()
    apply_webhook(status_payload(status("wamid.x", "failed", phone(0), error_code=code)), sender=SENDER)
    db.session.rollback()
    recipient = db.session.get(Recipient, 1)
    assert (recipient.status, recipient.error_code) == (status_after, code)
    assert db.session.get(Campaign, campaign_id).status == campaign_after
    if status_after == "pending":
        assert recipient.next_attempt_at > utcnow() + timedelta(seconds=30)


def test_the_graph_api_tells_the_quality_and_the_limit_and_the_setting_comes_back_when_forgotten(app, fake_graph):
    runner = app.test_cli_runner()
    before = json.loads(runner.invoke(args=["messages", "limits", "--json"]).output)
    assert (before["limit"], before["limit_source"], before["quality_rating"]) == ("unlimited", "setting", None)

    refreshed = json.loads(runner.invoke(args=["messages", "limits", "--refresh", "--json"]).output)
    assert (refreshed["limit"], refreshed["limit_source"], refreshed["quality_rating"]) == ("2,000", "Meta", "GREEN")
    assert fake_graph.received("phone_number")[0].query["fields"].split(",") == [
        "display_phone_number", "quality_rating", "whatsapp_business_manager_messaging_limit"]
    assert "2,000 customers / 24 h (from Meta)" in runner.invoke(args=["messages", "limits"]).output

    forgotten = json.loads(runner.invoke(args=["messages", "limits", "--forget", "--json"]).output)
    assert (forgotten["limit"], forgotten["limit_source"]) == ("unlimited", "setting")


@with_env(WCH_MESSAGING_LIMIT="250")
def test_order_and_campaign_templates_of_the_last_24_hours_count_once_per_customer(app):
    now = utcnow()
    db.session.add_all([
        Message(kind="order", subject="order:1:completed", phone=phone(1), state="sent", form="template",
                created_at=now - timedelta(hours=2)),
        Message(kind="order", subject="order:2:completed", phone=phone(1), state="delivered", form="template",
                created_at=now - timedelta(hours=1)),  # the same customer: counted once
        Message(kind="reminder", subject="cart:3:x", phone=phone(2), state="sent", form="text",
                created_at=now),  # inside the customer's window: free
        Message(kind="order", subject="order:4:completed", phone=phone(3), state="failed", form="template",
                created_at=now),  # never reached them
        Message(kind="order", subject="order:5:completed", phone=phone(4), state="sent", form="template",
                created_at=now - timedelta(hours=25)),  # out of the window
    ])
    campaign_id = sending_campaign(3)
    db.session.execute(update(Recipient).where(Recipient.campaign_id == campaign_id)
                       .values(status="sent", sent_at=now))  # phone(0), phone(1) (again), phone(2)
    db.session.commit()
    assert limits.customers_messaged() == 3
    assert limits.room(SENDER, configured=250) == 247
    info = json.loads(app.test_cli_runner().invoke(args=["messages", "limits", "--json"]).output)
    assert (info["used"], info["left"], info["limit"]) == (3, 247, "250")
