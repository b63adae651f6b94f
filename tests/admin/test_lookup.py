"""Answers by subject: jobs found by order, product, SKU or phone; the orders, products, contacts and deliveries
screens; CSV exports; times in the store's zone."""

from __future__ import annotations

import csv
import io
import re
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from tests.support import woo
from tests.support.apps import on_both_databases, overrides, run_jobs, with_env
from tests.support.panel import add_job, csrf_token
from wch.db import db
from wch.models import Campaign, Contact, Job, Recipient


@pytest.fixture
def env(request, fake_graph):
    """The store's webhooks signed, order messages and catalog pushes sent to the fake Graph API."""
    return woo.sync_env(fake_graph.url) | overrides(request)


def job_rows(html: str) -> list[str]:
    return re.findall(r'<tr data-job-id="([^"]+)"', html)


def deliver(client, topic: str, payload: dict) -> None:
    response = woo.post(client, topic, payload)
    assert response.status_code == 200, response.get_data(as_text=True)


@on_both_databases
def test_jobs_are_found_by_order_number_sku_and_phone(app, admin, client):
    deliver(client, "order.created", woo.order(1234, number="1234"))
    deliver(client, "order.created", woo.order(77, number="A-77", billing={"phone": "+4915112345678",
                                                                         "country": "DE"}))
    deliver(client, "product.updated", woo.product(42, sku="SKU-9"))
    deliver(client, "product.updated", woo.product(43))
    db.session.rollback()
    by_subject = {job.subject: job.id for job in db.session.scalars(select(Job))}
    assert set(by_subject) == {"order:1234", "order:77", "product:42", "product:43"}

    for search, subject in (("order 1234", "order:1234"), ("#1234", "order:1234"), ("order:A-77", "order:77"),
                            ("sku SKU-9", "product:42"), ("product 43", "product:43"),
                            ("+49 151 12345678", "order:77")):
        html = admin.get("/admin/jobs/", query_string={"q": search}).get_data(as_text=True)
        assert job_rows(html) == [by_subject[subject]], search
    nothing = admin.get("/admin/jobs/", query_string={"q": "order 999"}).get_data(as_text=True)
    assert job_rows(nothing) == [] and "Jobs about order 999" in nothing
    # Free text still searches the errors of failed jobs.
    failed = add_job(status="failed", error="KeyError: 'retailer_id'")
    assert job_rows(admin.get("/admin/jobs/?q=retailer_id").get_data(as_text=True)) == [failed.id]


def test_order_screen_shows_its_message_state_and_its_jobs(app, admin, client):
    deliver(client, "order.created", woo.order(1234))
    listing = admin.get("/admin/orders/?q=1234").get_data(as_text=True)
    assert 'data-order="1234"' in listing and 'data-notification="none"' in listing
    page = admin.get("/admin/orders/1234").get_data(as_text=True)
    assert "notify_order" in page and "No message about this order" in page
    assert admin.get("/admin/orders/?q=%2B351912345678").get_data(as_text=True).count("data-order=") == 1
    assert admin.get("/admin/orders/999").status_code == 404


def test_a_sent_order_message_shows_as_sent(app, admin, client, broker, stub_worker):
    deliver(client, "order.created", woo.order(1234))
    run_jobs(broker, stub_worker)
    page = admin.get("/admin/orders/1234").get_data(as_text=True)
    assert re.search(r'data-message-status="processing">.*?wch-message-state">sent<', page, re.S)
    assert 'data-notification="sent"' in admin.get("/admin/orders/").get_data(as_text=True)


def test_product_screen_shows_the_sync_state_and_deliveries_their_job(app, admin, client):
    deliver(client, "product.updated", woo.product(42, sku="SKU-9"))
    listing = admin.get("/admin/products/?q=SKU-9").get_data(as_text=True)
    assert 'data-sku="SKU-9"' in listing and 'data-sync="pending"' in listing
    assert "never synced" in admin.get("/admin/products/42").get_data(as_text=True)
    assert admin.get("/admin/products/?sync=pending").get_data(as_text=True).count("data-sku=") == 1
    deliveries = admin.get("/admin/deliveries/").get_data(as_text=True)
    assert "product.updated" in deliveries and "sync_product" in deliveries and "/admin/products/42" in deliveries


def test_contact_is_opted_out_and_in_by_an_admin_and_shows_what_was_sent(app, admin):
    contact = Contact(phone="+4915112345678", name="Ana")
    campaign = Campaign(name="Spring", text="Hi", audience="csv", status="completed", total=1, sent=1,
                        delivered=0, read=0, failed=0, skipped=0)
    db.session.add_all([contact, campaign])
    db.session.flush()
    db.session.add(Recipient(campaign_id=campaign.id, phone=contact.phone, status="sent", attempts=1))
    db.session.commit()
    contact_id = contact.id
    assert "+4915112345678" in admin.get("/admin/contacts/?q=%2B49%20151%2012345678").get_data(as_text=True)
    page = admin.get(f"/admin/contacts/{contact_id}").get_data(as_text=True)
    assert "Spring" in page and 'id="opt-out"' in page
    token = csrf_token(admin, f"/admin/contacts/{contact_id}")
    assert admin.post(f"/admin/contacts/{contact_id}/opt-out", data={"csrf_token": token}).status_code == 302
    db.session.rollback()
    assert db.session.get(Contact, contact_id).opted_out
    assert admin.get("/admin/contacts/?opted_out=yes").get_data(as_text=True).count("data-phone=") == 1
    admin.post(f"/admin/contacts/{contact_id}/opt-in", data={"csrf_token": token})
    db.session.rollback()
    assert not db.session.get(Contact, contact_id).opted_out


def test_filtered_jobs_and_campaign_recipients_export_as_csv(app, admin):
    failed = add_job(status="failed", args={"store_id": 1}, error="RuntimeError: =HYPERLINK(1)")
    add_job(status="succeeded")
    response = admin.get("/admin/jobs/export.csv?status=failed")
    assert response.mimetype == "text/csv" and "attachment" in response.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert [(row["id"], row["status"]) for row in rows] == [(failed.id, "failed")]
    assert rows[0]["last_error"] == "RuntimeError: =HYPERLINK(1)"

    campaign = Campaign(name="Spring", text="Hi", audience="csv", status="draft", total=2, sent=0, delivered=0,
                        read=0, failed=0, skipped=0)
    db.session.add(campaign)
    db.session.flush()
    db.session.add_all([Recipient(campaign_id=campaign.id, phone="+4915112345678", name="=cmd()", status="pending",
                                  attempts=0),
                        Recipient(campaign_id=campaign.id, phone="+14155550123", status="failed", attempts=1,
                                  error="undeliverable", error_code=131026)])
    db.session.commit()
    exported = admin.get(f"/admin/campaigns/{campaign.id}/recipients.csv").get_data(as_text=True)
    rows = list(csv.DictReader(io.StringIO(exported)))
    assert [(r["phone"], r["status"], r["error_code"]) for r in rows] == [
        ("+4915112345678", "pending", ""), ("+14155550123", "failed", "131026")]
    assert rows[0]["name"] == "'=cmd()"  # a spreadsheet shows it as text, not a formula
    assert admin.get("/admin/campaigns/999/recipients.csv").status_code == 404


@with_env(WCH_TIMEZONE="Europe/Berlin")
def test_times_are_shown_and_entered_in_the_store_zone(app, admin):
    job = add_job(status="failed")
    page = admin.get(f"/admin/jobs/{job.id}").get_data(as_text=True)
    local = job.enqueued_at.astimezone(ZoneInfo("Europe/Berlin"))
    assert local.strftime("%Y-%m-%d %H:%M:%S ") + local.tzname() in page

    db.session.add(Contact(phone="+4915112345678", name="Ana"))
    db.session.commit()
    admin.post("/admin/campaigns/new", data={"csrf_token": csrf_token(admin, "/admin/"), "name": "Later",
                                             "kind": "text", "text": "Hi", "audience": "all", "start": "at",
                                             "start_at": "2031-05-01T12:00"})
    campaign = db.session.scalar(select(Campaign))
    assert campaign.status == "scheduled"
    assert campaign.start_at.strftime("%Y-%m-%d %H:%M %z") == "2031-05-01 10:00 +0000"  # CEST is UTC+2
    assert "2031-05-01 12:00:00 CEST" in admin.get(f"/admin/campaigns/{campaign.id}").get_data(as_text=True)
