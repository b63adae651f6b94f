"""The sandbox for Meta (``WHATSAPP_MODE=sandbox``): Graph answered inside wch, statuses reported a moment later."""

from __future__ import annotations

import pytest

from tests.support.apps import run_jobs, with_env
from tests.support.panel import client_for, log_in, make_user
from tests.support.whatsapp import add_contacts, phone
from wch import runtime
from wch.config import Settings
from wch.db import transaction
from wch.messaging import campaigns
from wch.whatsapp import WhatsAppError
from wch.whatsapp.sandbox import FAIL_PERCENT, _roll, sandbox_client

SANDBOX = {"WHATSAPP_MODE": "sandbox", "WCH_BROADCAST_BATCH_INTERVAL": "0.05", "WCH_SEND_RATE_LIMIT": "500"}


@pytest.fixture
def reported():
    return []


@pytest.fixture
def client(reported):
    # Meta's real address: the sandbox must answer before anything reaches the network.
    settings = Settings.from_env({"WHATSAPP_MODE": "sandbox", "WCH_BROKER_URL": "stub://"})
    with sandbox_client(settings, report=lambda payload, delay: reported.append((payload, delay))) as client:
        yield client


def statuses(reported) -> list[tuple[str, str, float]]:
    return [(status["id"], status["status"], delay) for payload, delay in reported
            for change in payload["entry"][0]["changes"] for status in change["value"]["statuses"]]


def test_messages_get_ids_and_their_statuses_follow_as_webhooks(client, reported):
    delivered = next(phone(n) for n in range(100) if _roll(phone(n)) >= FAIL_PERCENT)
    wamid = client.send_template(delivered, "promo", "en_US", ["Ann"], callback_data="wch:recipient:7")
    assert wamid.startswith("wamid.")
    steps = statuses(reported)
    assert [name for _, name, _ in steps][:2] == ["sent", "delivered"]
    assert all(status_id == wamid for status_id, _, _ in steps)
    assert [delay for _, _, delay in steps] == sorted(delay for _, _, delay in steps) and steps[0][2] > 0
    first = reported[0][0]["entry"][0]["changes"][0]["value"]["statuses"][0]
    assert first["biz_opaque_callback_data"] == "wch:recipient:7" and first["recipient_id"] == delivered.lstrip("+")


def test_some_numbers_fail_as_meta_reports_undeliverable_ones(client, reported):
    failing = next(phone(n) for n in range(1000) if _roll(phone(n)) < FAIL_PERCENT)
    client.send_text(failing, "hello")
    (payload, _), = reported
    status = payload["entry"][0]["changes"][0]["value"]["statuses"][0]
    assert status["status"] == "failed" and status["errors"][0]["code"] == 131026


def test_catalog_calls_are_answered_and_unknown_calls_get_meta_s_error(client):
    handle = client.items_batch([{"method": "UPDATE", "data": {"id": "SKU-1"}}])["handles"][0]
    assert client.batch_status(handle)["data"][0]["status"] == "finished"
    with pytest.raises(WhatsAppError, match="Unsupported request"):
        client._call("POST", "12345/subscribed_apps")


@with_env(**SANDBOX)
def test_a_campaign_in_the_sandbox_is_sent_delivered_and_read(app, broker, stub_worker):
    numbers = add_contacts(30)
    campaign = campaigns.create_campaign(name="Demo", template_name="promo", all_contacts=True).campaign
    with transaction():
        campaigns.start_campaign(campaign.id, max_broker_delay=runtime.settings().max_broker_delay)
    run_jobs(broker, stub_worker)  # the sends, then the statuses they reported, delayed a few seconds

    info = campaigns.progress(campaign.id)
    failing = sum(1 for number in numbers if _roll(number) < FAIL_PERCENT)
    assert info["status"] == "completed"
    assert info["failed"] == failing and info["sent"] == 30 - failing
    assert info["delivered"] == 30 - failing and 0 < info["read"] < info["delivered"]


@pytest.mark.parametrize("env", [SANDBOX, {}], indirect=True, ids=["sandbox", "live"])
def test_the_panel_says_loudly_on_every_page_when_the_sandbox_is_on(app, env):
    make_user("admin@example.com", "admin")
    admin = client_for(app)
    log_in(admin)
    for url in ("/admin/", "/admin/jobs/", "/admin/campaigns/", "/admin/store-import/"):
        page = admin.get(url).get_data(as_text=True)
        assert ('class="alert alert-danger wch-sandbox"' in page) == bool(env), url
