"""Campaigns and reminder settings in the panel, through the messaging modules' own functions."""

from __future__ import annotations

import io
import re

import pytest
from sqlalchemy import func, select

from tests.support.apps import on_both_databases, with_env
from tests.support.panel import client_for, csrf_token, log_in, make_user
from wch.carts import reminder_settings
from wch.db import db
from wch.models import Campaign, Contact, Job, Recipient


def post(client, url: str, data: dict, **kwargs):
    return client.post(url, data={"csrf_token": csrf_token(client, "/admin/")} | data, **kwargs)


def test_csv_campaign_reports_its_bad_rows_and_can_be_started_paused_resumed_and_canceled(app, admin):
    csv = "phone,name\n+4915112345678,Ana\nnot a phone,Bob\n+4915112345678,Ana again\n+14155550123,Carl\n"
    response = post(admin, "/admin/campaigns/new", {
        "name": "Spring <sale>", "kind": "text", "text": "Hi {name}!", "audience": "csv", "start": "draft",
        "csv_file": (io.BytesIO(csv.encode()), "audience.csv"),
    }, content_type="multipart/form-data")
    html = response.get_data(as_text=True)
    assert response.status_code == 200, html
    assert "2 CSV row(s) were left out" in html
    bad = re.findall(r"<tr><td>(\d+)</td><td>(.*?)</td>", html.split('id="bad-rows"')[1])
    assert bad == [("3", "not a phone"), ("4", "+4915112345678")]
    campaign = db.session.scalar(select(Campaign))
    assert campaign.status == "draft" and campaign.total == 2

    page = admin.get(f"/admin/campaigns/{campaign.id}").get_data(as_text=True)
    assert "Spring &lt;sale&gt;" in page and 'id="start-campaign"' in page
    post(admin, f"/admin/campaigns/{campaign.id}/start", {"start": "now"})
    db.session.expire_all()
    assert campaign.status == "sending"
    assert db.session.scalar(select(func.count()).select_from(Job).where(Job.type == "send_campaign_batch")) == 1
    for action, status in (("pause", "paused"), ("resume", "sending"), ("cancel", "cancelled")):
        assert post(admin, f"/admin/campaigns/{campaign.id}/{action}", {}).status_code == 302
        db.session.expire_all()
        assert campaign.status == status, action
    refused = post(admin, f"/admin/campaigns/{campaign.id}/resume", {})
    assert "only a paused one can resume" in admin.get(refused.location).get_data(as_text=True)
    skipped = admin.get(f"/admin/campaigns/{campaign.id}?status=skipped").get_data(as_text=True)
    assert skipped.count('data-recipient-status="skipped"') == 2


def test_campaign_for_all_opted_in_contacts_and_refused_input(app, admin):
    db.session.add_all([Contact(phone="+4915112345678", name="Ana"), Contact(phone="+14155550123", name="Carl"),
                        Contact(phone="+14155550124", opted_out_at=db.func.now())])
    db.session.commit()
    refused = post(admin, "/admin/campaigns/new", {"name": "x", "kind": "text", "text": "Hi {nmae}",
                                                    "audience": "all", "start": "draft"})
    assert refused.status_code == 400 and "unknown placeholder" in refused.get_data(as_text=True)
    assert db.session.scalar(select(func.count()).select_from(Campaign)) == 0

    created = post(admin, "/admin/campaigns/new", {"name": "Winter", "kind": "template", "template_name": "winter",
                                                    "template_language": "en_US", "template_parameters": "{name}",
                                                    "audience": "all", "start": "draft"})
    assert created.status_code == 200
    assert db.session.scalar(select(func.count()).select_from(Recipient)) == 2
    listing = admin.get("/admin/campaigns/").get_data(as_text=True)
    assert "Winter" in listing and "0 / 2" in listing


def test_created_and_started_campaign_leaves_no_transaction_open(app, admin):
    db.session.add(Contact(phone="+4915112345678", name="Ana"))
    db.session.commit()
    response = post(admin, "/admin/campaigns/new", {"name": "Now", "kind": "text", "text": "Hi", "audience": "all",
                                                     "start": "now"})
    assert "Campaign created with 1 recipient(s)." in response.get_data(as_text=True)
    # The request shares the test's session: a transaction left open would hold SQLite's write lock.
    assert not db.session().in_transaction()
    assert db.session.scalar(select(Campaign.status)) == "sending"


@pytest.mark.parametrize("given, utc", [("2031-05-01T12:00", "2031-05-01 12:00"),
                                        ("2031-05-01T12:00+02:00", "2031-05-01 10:00"),
                                        ("2031-05-01T12:00-03:30", "2031-05-01 15:30")])
def test_a_scheduled_start_is_taken_as_utc_unless_it_has_an_offset(app, admin, given, utc):
    db.session.add(Contact(phone="+4915112345678", name="Ana"))
    db.session.commit()
    post(admin, "/admin/campaigns/new", {"name": "Later", "kind": "text", "text": "Hi", "audience": "all",
                                         "start": "at", "start_at": given})
    campaign = db.session.scalar(select(Campaign))
    assert campaign.status == "scheduled" and campaign.start_at.strftime("%Y-%m-%d %H:%M") == utc
    assert campaign.start_at.utcoffset().total_seconds() == 0


def test_reminder_settings_are_validated_and_saved(app, admin):
    page = admin.get("/admin/settings/").get_data(as_text=True)
    assert 'id="message-preview"' in page and 'id="save-settings"' in page
    before = reminder_settings.get_settings().to_dict()
    db.session.rollback()

    for field, value, why in (("delay_hours", "0", "between 1 and 720"), ("delay_hours", "721", "between 1 and 720"),
                              ("delay_hours", "72", "shorter than the cart expiry (WCH_CART_EXPIRY_HOURS, 72 h)"),
                              ("message", "Hi {first_name}", "unknown placeholder"),
                              ("message", "Hi {name:>99999999}", "write placeholders plainly")):
        form = {"delay_hours": "24", "message": "Hi {name}", "template_name": "cart_reminder"} | {field: value}
        response = post(admin, "/admin/settings/", form | {"enabled": "on"})
        assert response.status_code == 400 and why in response.get_data(as_text=True), (field, value)
        db.session.rollback()
        assert reminder_settings.get_settings().to_dict() == before

    saved = post(admin, "/admin/settings/", {"enabled": "on", "delay_hours": "6", "template_name": "cart_reminder",
                                             "message": "Hi {name}, your {items} ({total}) wait: {cart_link}"})
    assert saved.status_code == 302
    db.session.rollback()
    settings = reminder_settings.get_settings()
    assert settings.enabled and settings.delay_hours == 6 and settings.message.startswith("Hi {name}, your")


def test_viewer_can_read_campaigns_and_settings_but_change_nothing(app):
    make_user("viewer@example.com", "viewer")
    client = client_for(app)
    log_in(client, "viewer@example.com")
    assert 'id="new-campaign"' not in client.get("/admin/campaigns/").get_data(as_text=True)
    assert 'id="save-settings"' not in client.get("/admin/settings/").get_data(as_text=True)
    assert post(client, "/admin/settings/", {"delay_hours": "5"}).status_code == 403
    assert post(client, "/admin/campaigns/new", {"name": "x"}).status_code == 403


@on_both_databases
@pytest.mark.parametrize("content, why", [
    (b"phone,name\n+4915112345678,Ana\x00\n", "not CSV text"),
    (b"phone,name\n" + b"+4915112345678," + b"x" * 200_000 + b"\n", "not CSV text"),
])
def test_a_broken_csv_is_refused_and_creates_nothing(app, admin, content, why):
    response = post(admin, "/admin/campaigns/new", {
        "name": "Broken", "kind": "text", "text": "Hi", "audience": "csv", "start": "draft",
        "csv_file": (io.BytesIO(content), "audience.csv"),
    }, content_type="multipart/form-data")
    assert response.status_code == 400 and why in response.get_data(as_text=True)
    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(Campaign)) == 0
    assert db.session.scalar(select(func.count()).select_from(Recipient)) == 0


@on_both_databases
def test_over_long_names_are_refused_or_cut_to_fit(app, admin):
    refused = post(admin, "/admin/campaigns/new", {"name": "n" * 201, "kind": "text", "text": "Hi",
                                                   "audience": "all", "start": "draft"})
    assert refused.status_code == 400 and "the name is too long (201 characters; at most 200)" in \
        refused.get_data(as_text=True)
    csv = "phone,name\n+4915112345678," + "A" * 500 + "\n"
    created = post(admin, "/admin/campaigns/new", {
        "name": "Long names", "kind": "text", "text": "Hi {name}", "audience": "csv", "start": "draft",
        "csv_file": (io.BytesIO(csv.encode()), "audience.csv"),
    }, content_type="multipart/form-data")
    assert created.status_code == 200
    assert db.session.scalar(select(Recipient.name)) == "A" * 200


@with_env(WCH_MAX_UPLOAD_MB="1")
def test_an_upload_over_the_size_cap_is_refused_before_it_is_read(app, admin):
    big = b"phone\n" + b"+4915112345678\n" * 80_000  # 1.2 MB
    response = post(admin, "/admin/campaigns/new", {
        "name": "Big", "kind": "text", "text": "Hi", "audience": "csv", "start": "draft",
        "csv_file": (io.BytesIO(big), "audience.csv"),
    }, content_type="multipart/form-data")
    assert response.status_code == 413
    assert db.session.scalar(select(func.count()).select_from(Campaign)) == 0


def test_a_large_csv_is_imported_in_committed_chunks(app, admin, monkeypatch):
    from wch.messaging.campaigns import audience
    monkeypatch.setattr(audience, "INSERT_CHUNK", 10)
    commits = []
    monkeypatch.setattr(db.session, "commit", lambda original=db.session.commit: commits.append(1) or original())
    rows = "".join(f"+4915112345{n:03d}\n" for n in range(45))
    response = post(admin, "/admin/campaigns/new", {
        "name": "Chunks", "kind": "text", "text": "Hi", "audience": "csv", "start": "draft",
        "csv_file": (io.BytesIO(("phone\n" + rows).encode()), "audience.csv"),
    }, content_type="multipart/form-data")
    assert "Campaign created with 45 recipient(s)." in response.get_data(as_text=True)
    assert len(commits) >= 5  # four full chunks of 10 and the last one, each committed
    assert db.session.scalar(select(Campaign.status_reason)) is None
