"""Messages in doubt: flagged when their worker died, listed after ``WCH_UNCERTAIN_AFTER``, settled by a person
in the panel or with ``wch messages``; on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import timedelta

from sqlalchemy import select

from tests.support.apps import on_both_databases, run_jobs
from tests.support.panel import client_for, csrf_token, log_in, logged_in_admin, make_user
from tests.support.whatsapp import add_contacts, phone
from wch.actors.broadcast import sweep_broadcasts
from wch.db import db, utcnow
from wch.messaging import campaigns
from wch.models import Job, Message, Recipient

HOUR_AGO = timedelta(hours=1)


def in_doubt() -> tuple[Message, Recipient]:
    """An order message whose answer was lost an hour ago, and a campaign recipient in flight when its worker died."""
    message = Message(kind="order", subject="order:900:completed", phone="+351912345678", state="uncertain",
                      form="template", created_at=utcnow() - HOUR_AGO, error="no usable answer from Meta",
                      resend={"type": "notify_order", "args": {"store_id": 900}, "unique": "900"})
    fresh = Message(kind="order", subject="order:901:completed", phone="+351912345679", state="uncertain",
                    form="template", created_at=utcnow())  # Meta's status may still come: not listed yet
    db.session.add_all([message, fresh])
    add_contacts(2)
    campaign_id = campaigns.create_campaign(name="c", template_name="promo", all_contacts=True).campaign.id
    db.session.flush()
    recipient = db.session.scalars(select(Recipient).where(Recipient.phone == phone(1))).one()
    recipient.status, recipient.claimed_at, recipient.attention_at = "sending", utcnow() - HOUR_AGO, utcnow()
    recipient.campaign_id = campaign_id
    db.session.commit()
    return message, recipient


@on_both_databases
def test_the_command_line_lists_what_is_in_doubt_and_settles_it(app):
    message, recipient = in_doubt()
    runner = app.test_cli_runner()
    listed = json.loads(runner.invoke(args=["messages", "uncertain", "--json"]).output)
    assert [(row["ref"], row["kind"]) for row in listed] == [(f"message:{message.id}", "order"),
                                                             (f"recipient:{recipient.id}", "campaign")]
    assert "message:" in runner.invoke(args=["messages", "uncertain"]).output

    not_sent = runner.invoke(args=["messages", "settle", f"message:{message.id}", "--not-sent"])
    assert not_sent.exit_code == 0 and "sent again" in not_sent.output, not_sent.output
    sent = runner.invoke(args=["messages", "settle", f"recipient:{recipient.id}", "--sent"])
    assert sent.exit_code == 0, sent.output

    db.session.rollback()
    settled = db.session.get(Message, message.id)
    assert (settled.state, settled.settled_by.startswith("cli:")) == ("failed", True)
    resend = db.session.scalars(select(Job).where(Job.type == "notify_order")).one()
    assert (resend.args, resend.status) == ({"store_id": 900}, "queued")
    assert db.session.get(Recipient, recipient.id).status == "sent"
    assert campaigns.progress(recipient.campaign_id)["sent"] == 1
    assert json.loads(runner.invoke(args=["messages", "uncertain", "--json"]).output) == []

    again = runner.invoke(args=["messages", "settle", f"message:{message.id}", "--sent"])
    assert again.exit_code == 1 and "is not in doubt (it is failed)" in again.output
    assert runner.invoke(args=["messages", "settle", "order:900", "--sent"]).exit_code == 1
    assert runner.invoke(args=["messages", "settle", f"recipient:{recipient.id}"]).exit_code == 2


def test_the_panel_shows_what_is_in_doubt_and_only_admins_settle_it(app):
    message, recipient = in_doubt()
    make_user("viewer@example.com", role="viewer")
    viewer = client_for(app)
    log_in(viewer, "viewer@example.com")
    page = viewer.get("/admin/messages/").get_data(as_text=True)
    assert f'data-ref="message:{message.id}"' in page and f'data-ref="recipient:{recipient.id}"' in page
    assert "Not sent" not in page
    token = csrf_token(viewer, "/admin/messages/")
    refused = viewer.post("/admin/messages/settle", data={"csrf_token": token, "ref": f"message:{message.id}",
                                                          "outcome": "sent"})
    assert refused.status_code == 403

    admin = logged_in_admin(app)
    token = csrf_token(admin, "/admin/messages/")
    for ref, outcome in ((f"message:{message.id}", "sent"), (f"recipient:{recipient.id}", "not-sent")):
        done = admin.post("/admin/messages/settle", data={"csrf_token": token, "ref": ref, "outcome": outcome},
                          follow_redirects=True)
        assert done.status_code == 200 and "settled as" in done.get_data(as_text=True)
    db.session.rollback()
    assert db.session.get(Message, message.id).state == "sent"
    assert db.session.get(Recipient, recipient.id).status == "failed"
    assert "Nothing in doubt." in admin.get("/admin/messages/").get_data(as_text=True)


def test_the_sweep_flags_a_message_its_worker_left_sending(app, broker, stub_worker):
    db.session.add(Message(kind="reminder", subject="cart:5:2026-11-01T00:00:00+00:00", phone=phone(5),
                           state="sending", form="text", created_at=utcnow() - timedelta(minutes=20)))
    db.session.commit()
    sweep_broadcasts.send()
    run_jobs(broker, stub_worker)
    db.session.rollback()
    flagged = db.session.scalars(select(Message)).one()
    assert flagged.state == "uncertain" and "worker stopped" in flagged.error
