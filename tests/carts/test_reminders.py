"""Abandoned-cart reminders: settings validation, the scan, the reminder job, recovery."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from tests.support.apps import run_jobs, stub_worker_for
from tests.support.services import wait_for
from tests.support.whatsapp import SENDER, phone, status, status_payload
from wch.carts import reminder_settings, reminders
from wch.carts.recovery import mark_recovered
from wch.carts.stats import recovery_stats
from wch.db import db, transaction, utcnow
from wch.jobs import dispatch
from wch.messaging import contacts, messages
from wch.messaging.events import apply_webhook
from wch.models import Cart, Contact, Job, Message

ITEMS = [{"name": "Red shirt", "quantity": 2}, {"name": "Mug", "quantity": 1}]
EXPIRY_HOURS = 72  # WCH_CART_EXPIRY_HOURS's default


@pytest.fixture
def enabled(app):
    with transaction():
        return reminder_settings.save_settings({
            "enabled": True, "delay_hours": 24, "template_name": "cart_reminder", "template_language": "en_US",
            "message": "Hi {name}, your {items} ({total}) wait for you: {cart_link}",
            "cart_url": "https://shop.example.com/cart/?restore={cart_id}",
        }, cart_expiry_hours=EXPIRY_HOURS)


def cart(n: int, *, idle_hours: float, items=ITEMS, name="Ann", inbound_hours: float | None = None,
         opted_out: bool = False) -> Cart:
    now = utcnow()
    contact = contacts.get_or_create(phone(n), name=name)
    if inbound_hours is not None:
        contact.last_inbound_at = now - timedelta(hours=inbound_hours)
    if opted_out:
        contact.opted_out_at = now
    row = Cart(customer_phone=phone(n), customer_name=name, items=items, total=Decimal("54.90"), currency="EUR",
               status="active", created_at=now - timedelta(hours=idle_hours + 1),
               updated_at=now - timedelta(hours=idle_hours))
    db.session.add(row)
    db.session.commit()
    return row


def test_idle_cart_gets_one_template_reminder_outside_the_window(app, broker, stub_worker, fake_graph, enabled):
    row = cart(1, idle_hours=30)
    stub_worker.pause()
    assert reminders.scan(cart_expiry_hours=EXPIRY_HOURS) == 1
    assert reminders.scan(cart_expiry_hours=EXPIRY_HOURS) == 1  # the job is still pending: the same one, not a second
    stub_worker.resume()
    run_jobs(broker, stub_worker)
    assert reminders.scan(cart_expiry_hours=EXPIRY_HOURS) == 0
    run_jobs(broker, stub_worker)

    [message] = fake_graph.messages()
    assert message.recipient == phone(1) and message.json["type"] == "template"
    assert message.json["template"]["name"] == "cart_reminder"
    params = [p["text"] for p in message.json["template"]["components"][0]["parameters"]]
    assert params == ["Ann", "2 × Red shirt, 1 × Mug", "54.90 EUR", f"https://shop.example.com/cart/?restore={row.id}"]
    db.session.refresh(row)
    assert row.status == "abandoned" and row.reminder_sent_at is not None
    assert row.updated_at < row.reminder_sent_at - timedelta(hours=29)  # the stamp is not cart activity


def test_inside_the_window_the_reminder_is_text(app, broker, stub_worker, fake_graph, enabled):
    cart(2, idle_hours=25, inbound_hours=20)
    reminders.scan(cart_expiry_hours=EXPIRY_HOURS)
    run_jobs(broker, stub_worker)
    [message] = fake_graph.messages()
    assert message.json["type"] == "text"
    assert message.json["text"]["body"].startswith("Hi Ann, your 2 × Red shirt, 1 × Mug (54.90 EUR) wait for you")


def test_no_reminder_before_the_delay_nor_to_opted_out_or_empty_carts(app, broker, stub_worker, fake_graph, enabled):
    cart(3, idle_hours=23)
    cart(4, idle_hours=48, opted_out=True)
    cart(5, idle_hours=48, items=[])
    assert reminders.scan(cart_expiry_hours=EXPIRY_HOURS) == 0
    run_jobs(broker, stub_worker)
    assert fake_graph.messages() == []


def test_meta_settles_a_reminder_and_one_it_failed_for_now_is_sent_again_once(app, broker, stub_worker, fake_graph,
                                                                              enabled, monkeypatch):
    monkeypatch.setattr(messages, "RESEND_DELAY", 0.2)  # Meta's pause for this customer, shortened
    row = cart(18, idle_hours=30)
    reminders.scan(cart_expiry_hours=EXPIRY_HOURS)
    run_jobs(broker, stub_worker)
    [first] = fake_graph.messages()
    assert first.json["biz_opaque_callback_data"] == f"cart:{row.id}:{row.updated_at.isoformat()}"
    failed = status(first.wamid, "failed", phone(18), error_code=131000)
    failed["biz_opaque_callback_data"] = first.json["biz_opaque_callback_data"]
    apply_webhook(status_payload(failed), sender=SENDER)
    run_jobs(broker, stub_worker)

    first_try, second_try = fake_graph.messages()
    assert second_try.json == first_try.json
    reminder = db.session.scalars(select(Message)).one()
    assert (reminder.kind, reminder.state, reminder.attempts, reminder.wamid) == (
        "reminder", "sent", 2, second_try.wamid)
    assert reminders.scan(cart_expiry_hours=EXPIRY_HOURS) == 0
    run_jobs(broker, stub_worker)
    assert len(fake_graph.messages()) == 2


def test_a_replayed_reminder_job_sends_nothing(app, broker, stub_worker, fake_graph, enabled):
    row = cart(6, idle_hours=30)
    reminders.scan(cart_expiry_hours=EXPIRY_HOURS)
    run_jobs(broker, stub_worker)
    job = db.session.scalars(select(Job).where(Job.type == "send_cart_reminder")).one()
    dispatch("send_cart_reminder", job.args)  # a second copy, as a replay would be
    db.session.commit()
    run_jobs(broker, stub_worker)
    assert len(fake_graph.messages()) == 1
    db.session.refresh(row)
    assert row.status == "abandoned"


def test_a_customer_who_opted_out_after_the_scan_gets_nothing(app, broker, stub_worker, fake_graph, enabled):
    cart(7, idle_hours=30)
    stub_worker.pause()
    reminders.scan(cart_expiry_hours=EXPIRY_HOURS)
    contacts.opt_out(phone(7))
    db.session.commit()
    stub_worker.resume()
    run_jobs(broker, stub_worker)
    assert fake_graph.messages() == []


def test_a_refused_send_is_retried_and_then_sent_once(app, broker, stub_worker, fake_graph, enabled):
    cart(8, idle_hours=30)
    fake_graph.fail(status=503, times=1)
    reminders.scan(cart_expiry_hours=EXPIRY_HOURS)
    run_jobs(broker, stub_worker)
    assert [m.status for m in fake_graph.messages()] == [503, 200]


def reminder_job() -> Job:
    db.session.rollback()
    return db.session.scalars(select(Job).where(Job.type == "send_cart_reminder").order_by(Job.enqueued_at.desc())
                              ).first()


def test_a_reminder_without_an_access_token_fails_and_is_sent_once_the_token_is_set(app, app_factory, sqlite_url,
                                                                                      broker, fake_graph, enabled):
    row = cart(13, idle_hours=30)
    # Run first by a worker whose app has no access token yet.
    with stub_worker_for(app_factory(sqlite_url, WHATSAPP_ACCESS_TOKEN=""), broker) as worker:
        reminders.scan(cart_expiry_hours=EXPIRY_HOURS)
        run_jobs(broker, worker)
    job = reminder_job()
    assert job.status == "failed" and "WHATSAPP_ACCESS_TOKEN" in job.last_error
    db.session.refresh(row)
    assert (row.status, row.reminder_sent_at) == ("active", None)  # not lost: still due

    with stub_worker_for(app, broker) as worker:
        assert reminders.scan(cart_expiry_hours=EXPIRY_HOURS) == 1
        run_jobs(broker, worker)
    assert [m.recipient for m in fake_graph.messages()] == [phone(13)]


def test_a_refused_connection_keeps_the_reminder_due(app, app_factory, sqlite_url, broker, fake_graph, enabled):
    row = cart(14, idle_hours=30)
    # Nothing listens on port 9: the reminder was certainly not sent.
    with stub_worker_for(app_factory(sqlite_url, WHATSAPP_API_URL="http://127.0.0.1:9/v24.0"), broker) as worker:
        reminders.scan(cart_expiry_hours=EXPIRY_HOURS)
        run_jobs(broker, worker)
        wait_for(lambda: reminder_job().status == "failed", timeout=10)
    assert "unreachable" in reminder_job().last_error
    db.session.refresh(row)
    assert (row.status, row.reminder_sent_at) == ("active", None)

    with stub_worker_for(app, broker) as worker:
        assert reminders.scan(cart_expiry_hours=EXPIRY_HOURS) == 1
        run_jobs(broker, worker)
    assert [m.recipient for m in fake_graph.messages()] == [phone(14)]


def test_a_cart_whose_stored_phone_is_not_normalised_still_respects_the_opt_out(app, broker, stub_worker,
                                                                                 fake_graph, enabled):
    row = cart(15, idle_hours=30, opted_out=True)
    row.customer_phone = "0049 151 00000015"  # as the store sent it; the contact's phone is normalised
    row.updated_at = utcnow() - timedelta(hours=30)  # this edit is not cart activity
    db.session.commit()
    reminders.scan(cart_expiry_hours=EXPIRY_HOURS)
    run_jobs(broker, stub_worker)
    assert fake_graph.messages() == []
    db.session.refresh(row)
    assert (row.status, row.reminder_sent_at) == ("active", None)


def test_disabled_reminders_dispatch_nothing(app, broker, stub_worker, fake_graph):
    cart(9, idle_hours=100)
    assert reminders.scan(cart_expiry_hours=EXPIRY_HOURS) == 0


def test_an_order_marks_the_reminded_cart_recovered(app, broker, stub_worker, fake_graph, enabled):
    row = cart(10, idle_hours=30)
    assert mark_recovered(phone(10), "1001", "54.90", window_hours=168) == 0  # not reminded yet
    reminders.scan(cart_expiry_hours=EXPIRY_HOURS)
    run_jobs(broker, stub_worker)
    assert mark_recovered("+49 151 00000010", 1002, Decimal("54.9"), window_hours=168) == 1
    assert mark_recovered(phone(10), 1003, "10", window_hours=168) == 0  # recovered once
    db.session.refresh(row)
    assert (row.status, row.recovered_order_id, row.recovered_revenue) == ("completed", "1002", Decimal("54.90"))
    assert recovery_stats() == {"reminded": 1, "recovered": 1, "recovered_revenue": "54.90"}


def test_an_order_after_the_cart_expired_still_recovers_it_within_the_window(app, broker, stub_worker, fake_graph,
                                                                              enabled):
    row = cart(16, idle_hours=30)
    reminders.scan(cart_expiry_hours=EXPIRY_HOURS)
    run_jobs(broker, stub_worker)
    db.session.refresh(row)
    row.reminder_sent_at -= timedelta(hours=80)  # reminded 80 h ago: the cart itself expired since
    row.updated_at -= timedelta(hours=80)
    db.session.commit()
    result = app.test_cli_runner().invoke(args=["carts", "cleanup", "--json"])
    assert '"deleted": 0' in result.output  # kept: its recovery window (168 h) is not over
    assert mark_recovered(phone(16), 1004, "54.90", window_hours=168) == 1
    assert recovery_stats()["recovered"] == 1


def test_a_reminder_delay_the_cleanup_would_beat_is_refused(app, enabled):
    with pytest.raises(reminder_settings.ReminderSettingsError) as caught:
        reminder_settings.save_settings({"delay_hours": 72}, cart_expiry_hours=72)
    assert "shorter than the cart expiry" in caught.value.errors["delay_hours"]
    db.session.rollback()
    assert reminder_settings.get_settings().delay_hours == 24
    # An expiry lowered below a saved delay: the scan refuses to run, saying why.
    with pytest.raises(reminder_settings.ReminderSettingsError, match="WCH_CART_EXPIRY_HOURS, 12 h"):
        reminders.scan(cart_expiry_hours=12)


@pytest.mark.parametrize("text", ["Hi {name:>999999999}", "Hi {name!r}", "Hi {name[0]}", "Hi {name.upper}",
                                  "Hi {}", "Hi {0}", "Hi {name:{items}}"])
def test_placeholders_with_a_format_spec_conversion_index_or_nesting_are_refused(app, enabled, text):
    with pytest.raises(reminder_settings.ReminderSettingsError) as caught:
        reminder_settings.save_settings({"message": text}, cart_expiry_hours=EXPIRY_HOURS)
    problem = caught.value.errors["message"]
    assert "{" in problem and ("plainly" in problem or "unknown placeholder" in problem), problem


def test_a_bad_text_saved_before_the_check_still_sends(app, broker, stub_worker, fake_graph, enabled):
    enabled.message = "Hi {name:>999999999}, {items!r} {0}"  # as an older version could have stored it
    db.session.commit()
    cart(17, idle_hours=30, inbound_hours=2)
    reminders.scan(cart_expiry_hours=EXPIRY_HOURS)
    run_jobs(broker, stub_worker)
    [message] = fake_graph.messages()
    assert message.json["text"]["body"] == "Hi Ann, 2 × Red shirt, 1 × Mug "


@pytest.mark.parametrize("change, field, message", [
    ({"delay_hours": 0}, "delay_hours", "between 1 and 720"),
    ({"delay_hours": 721}, "delay_hours", "between 1 and 720"),
    ({"delay_hours": "soon"}, "delay_hours", "whole number"),
    ({"message": "Hi {first_name}"}, "message", "unknown placeholder"),
    ({"message": "Hi {name"}, "message", "braces"),
    ({"template_name": ""}, "template_name", "approved template"),
    ({"cart_url": "shop/cart"}, "cart_url", "https://"),
    ({"cart_url": "https://x.example/{cart}"}, "cart_url", "unknown placeholder"),
])
def test_bad_settings_are_refused_and_nothing_changes(app, enabled, change, field, message):
    with pytest.raises(reminder_settings.ReminderSettingsError) as caught:
        reminder_settings.save_settings(change, cart_expiry_hours=EXPIRY_HOURS)
    assert message in caught.value.errors[field]
    db.session.rollback()
    assert reminder_settings.get_settings().to_dict() == enabled.to_dict()


def test_contact_is_normalised_once_on_the_way_in(app):
    contacts.get_or_create("0049 (151) 0000-0011", name="Bo")
    contacts.get_or_create("+4915100000011")
    db.session.commit()
    assert [c.phone for c in db.session.scalars(select(Contact))] == [phone(11)]
    with pytest.raises(contacts.InvalidPhone):
        contacts.get_or_create("12345")


def test_carts_remind_command_runs_the_scan_now(app, enabled):
    cart(12, idle_hours=30)
    result = app.test_cli_runner().invoke(args=["carts", "remind"])
    assert result.exit_code == 0 and "dispatched 1 reminder job(s)" in result.output
    assert db.session.scalars(select(Job).where(Job.type == "send_cart_reminder")).one().args["cart_id"]
