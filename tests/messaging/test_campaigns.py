"""Campaigns in one process: the service functions, the batch job on the StubBroker, the fake Graph API."""

from __future__ import annotations

import io
import json
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from tests.support.apps import run_jobs, with_env
from tests.support.services import wait_for
from tests.support.whatsapp import SENDER, add_contacts, max_in_any_second, phone
from tests.support.whatsapp import start_campaign as start
from wch.db import db, transaction, utcnow
from wch.messaging import campaigns, contacts, standing
from wch.messaging.campaigns import SEND_CAMPAIGN_BATCH, sending, sweep
from wch.models import Campaign, Job, Recipient

STALE = timedelta(minutes=10)


def counters(campaign_id: int) -> dict:
    db.session.expire_all()
    return campaigns.progress(campaign_id)


def statuses(campaign_id: int) -> dict[str, int]:
    return dict(db.session.execute(
        select(Recipient.status, func.count()).where(Recipient.campaign_id == campaign_id).group_by(Recipient.status)
    ).all())


def csv_of(*rows: str) -> io.StringIO:
    return io.StringIO("\n".join(rows) + "\n")


# -- creating ----------------------------------------------------------------


def test_csv_audience_normalises_phones_and_reports_bad_rows(app):
    result = campaigns.create_campaign(
        name="Spring sale", template_name="spring_sale", template_parameters=["{name}"],
        csv_file=csv_of("phone,name", "+49 151 0000 0001,Ann", "0049151-00000002,Bob", "not a phone,Cy",
                        "+4915100000001,Ann again", "12,Dee"),
    )
    assert result.campaign.total == 2
    assert sorted(r.phone for r in db.session.scalars(select(Recipient))) == [phone(1), phone(2)]
    assert [(b.line, b.reason.split(" ")[0]) for b in result.bad_rows] == [(4, "'not"), (5, "+4915100000001"),
                                                                            (6, "'12'")]
    assert "appears earlier" in result.bad_rows[1].reason
    assert result.bad_count == 3


def test_all_contacts_audience_leaves_out_opted_out_contacts(app):
    add_contacts(5, opted_out=[1, 3])
    campaign = campaigns.create_campaign(name="News", text="Hello {name}", all_contacts=True).campaign
    assert campaign.total == 3 and campaign.status == "draft"


@pytest.mark.parametrize("kwargs, message", [
    ({"name": "", "template_name": "t"}, "needs a name"),
    ({"name": "x"}, "either a template name or a text"),
    ({"name": "x", "template_name": "t", "text": "hi"}, "either a template name or a text"),
    ({"name": "x", "text": "hi {surname}"}, "unknown placeholder"),
    ({"name": "x", "template_name": "t", "template_parameters": ["{oops"]}, "braces"),
    ({"name": "x", "text": "hi {name:>999999999}"}, r"\{name:>999999999\}: write placeholders plainly"),
    ({"name": "x", "text": "hi {name!r}"}, r"\{name!r\}: write placeholders plainly"),
    ({"name": "x", "template_name": "t", "template_parameters": ["{name[0]}"]}, r"unknown placeholder \{name\[0\]\}"),
    ({"name": "x", "text": "hi {phone.real}"}, r"unknown placeholder \{phone.real\}"),
    ({"name": "x", "text": "hi {}"}, r"unknown placeholder \{\}"),
    ({"name": "x", "text": "hi {name:{phone}}"}, "plainly"),
])
def test_bad_campaigns_are_refused_and_nothing_is_created(app, kwargs, message):
    add_contacts(2)
    with pytest.raises(campaigns.CampaignError, match=message):
        campaigns.create_campaign(all_contacts=True, **kwargs)
    assert db.session.scalar(select(func.count()).select_from(Campaign)) == 0


def test_an_audience_without_valid_phones_is_refused(app):
    with pytest.raises(campaigns.CampaignError, match="no valid phone numbers"):
        campaigns.create_campaign(name="x", template_name="t", csv_file=csv_of("phone", "nope"))
    assert db.session.scalar(select(func.count()).select_from(Recipient)) == 0


# -- sending -----------------------------------------------------------------


def test_campaign_sends_each_recipient_once_and_counters_add_up(app, broker, stub_worker, fake_graph):
    add_contacts(25, opted_out=[7])
    campaign = campaigns.create_campaign(name="n", template_name="promo", template_parameters=["{name}"],
                                         all_contacts=True).campaign
    start(campaign.id)
    run_jobs(broker, stub_worker)

    info = counters(campaign.id)
    sent_to = [r.recipient for r in fake_graph.messages()]
    assert sorted(sent_to) == sorted(p for i, p in enumerate(map(phone, range(25))) if i != 7)
    assert info["status"] == "completed"
    assert (info["total"], info["sent"], info["failed"], info["skipped"], info["pending"]) == (24, 24, 0, 0, 0)
    body = fake_graph.messages()[0].json
    assert body["template"]["name"] == "promo"
    assert body["template"]["components"][0]["parameters"][0]["text"].startswith("Customer ")
    assert body["biz_opaque_callback_data"].startswith("wch:recipient:")


def test_opted_out_after_creation_is_skipped(app, broker, stub_worker, fake_graph):
    add_contacts(6)
    campaign = campaigns.create_campaign(name="n", text="Hi {name}", all_contacts=True).campaign
    contacts.opt_out(phone(2))
    db.session.commit()
    start(campaign.id)
    run_jobs(broker, stub_worker)

    info = counters(campaign.id)
    assert phone(2) not in [r.recipient for r in fake_graph.messages()]
    assert len(fake_graph.messages()) == 5
    assert (info["sent"], info["skipped"], info["status"]) == (5, 1, "completed")


def test_rate_limits_and_server_errors_are_retried_and_the_campaign_completes(app, broker, stub_worker, fake_graph):
    add_contacts(8)
    fake_graph.rate_limit(times=2, recipient=phone(1))
    fake_graph.fail(status=503, times=1, recipient=phone(4))
    fake_graph.fail(status=500, times=1, recipient=phone(5))
    campaign = campaigns.create_campaign(name="n", template_name="t", all_contacts=True).campaign
    start(campaign.id)
    run_jobs(broker, stub_worker)

    info = counters(campaign.id)
    assert (info["status"], info["sent"], info["failed"]) == ("completed", 8, 0)
    ok = [r.recipient for r in fake_graph.messages() if r.status == 200]
    assert sorted(ok) == sorted(map(phone, range(8)))  # each one accepted exactly once
    assert len(fake_graph.messages(recipient=phone(1))) == 3


def test_undeliverable_number_fails_only_that_recipient(app, broker, stub_worker, fake_graph):
    add_contacts(6)
    fake_graph.fail(code=131026, times=None, recipient=phone(3), message="(#131026) Message undeliverable")
    campaign = campaigns.create_campaign(name="n", template_name="t", all_contacts=True).campaign
    start(campaign.id)
    run_jobs(broker, stub_worker)

    info = counters(campaign.id)
    assert (info["status"], info["sent"], info["failed"]) == ("completed", 5, 1)
    failed = db.session.scalars(select(Recipient).where(Recipient.status == "failed")).one()
    assert failed.phone == phone(3) and failed.error_code == 131026 and "131026" in failed.error
    assert len(fake_graph.messages(recipient=phone(3))) == 1  # not retried


@with_env(WHATSAPP_API_URL="http://wch-test.invalid/v24.0")
def test_a_server_name_that_does_not_resolve_is_retried_not_flagged_as_maybe_sent(app, broker, stub_worker):
    add_contacts(3)
    campaign = campaigns.create_campaign(name="n", template_name="t", all_contacts=True).campaign
    start(campaign.id)
    run_jobs(broker, stub_worker)

    wait_for(lambda: counters(campaign.id)["status"] == "completed", timeout=20)
    info = counters(campaign.id)
    assert (info["failed"], info["needs_attention"]) == (3, 0)  # never connected: certainly not sent
    attempts = db.session.scalars(select(Recipient.attempts)).all()
    assert attempts == [4, 4, 4]  # the first try and the three of WCH_BROADCAST_RETRY_DELAYS


def test_spam_limit_pauses_the_campaign_with_the_reason_and_resume_finishes_it(app, broker, stub_worker, fake_graph):
    add_contacts(30)
    fake_graph.fail(code=131048, times=1, recipient=phone(12), message="(#131048) Spam rate limit hit")
    campaign = campaigns.create_campaign(name="n", template_name="t", all_contacts=True).campaign
    start(campaign.id)
    run_jobs(broker, stub_worker)

    info = counters(campaign.id)
    assert info["status"] == "paused" and "131048" in info["status_reason"]
    assert info["sent"] < 30 and info["pending"] == 30 - info["sent"]
    sent_before = len(fake_graph.messages())

    with transaction():
        campaigns.resume_campaign(campaign.id)
    run_jobs(broker, stub_worker)
    info = counters(campaign.id)
    assert (info["status"], info["sent"]) == ("completed", 30)
    accepted = [r.recipient for r in fake_graph.messages() if r.status == 200]
    assert sorted(accepted) == sorted(map(phone, range(30)))
    assert len(fake_graph.messages()) == 31 and sent_before <= 30


def test_pause_cancel_and_retry_failed(app, broker, stub_worker, fake_graph):
    add_contacts(4)
    fake_graph.fail(code=131026, times=1, recipient=phone(0))
    campaign = campaigns.create_campaign(name="n", template_name="t", all_contacts=True).campaign
    start(campaign.id)
    run_jobs(broker, stub_worker)
    assert (counters(campaign.id)["failed"], counters(campaign.id)["sent"]) == (1, 3)

    with transaction():
        assert campaigns.retry_failed(campaign.id) == 1
    run_jobs(broker, stub_worker)
    info = counters(campaign.id)
    assert (info["status"], info["sent"], info["failed"]) == ("completed", 4, 0)

    with pytest.raises(campaigns.CampaignError, match="only a sending or scheduled one can pause"):
        campaigns.pause_campaign(campaign.id)

    other = campaigns.create_campaign(name="m", template_name="t", all_contacts=True).campaign
    with transaction():
        campaigns.cancel_campaign(other.id)
    info = counters(other.id)
    assert (info["status"], info["skipped"], info["pending"]) == ("cancelled", 4, 0)
    with pytest.raises(campaigns.CampaignError, match="only a draft or scheduled one can start"):
        start(other.id)


@with_env(WCH_SEND_RATE_LIMIT="20", WCH_BROADCAST_BATCH_SIZE="20")
def test_sends_are_paced_by_the_shared_rate_limit(app, broker, stub_worker, fake_graph):
    add_contacts(60)
    campaign = campaigns.create_campaign(name="n", template_name="t", all_contacts=True).campaign
    start(campaign.id)
    run_jobs(broker, stub_worker)

    times = [r.time for r in fake_graph.messages()]
    assert len(times) == 60
    assert max_in_any_second(times) <= 20
    assert max(times) - min(times) >= 2.5  # 60 sends at 20/s cannot take less



def test_scheduled_campaign_is_started_by_the_sweep_when_due(app, broker, stub_worker, fake_graph):
    add_contacts(3)
    campaign = campaigns.create_campaign(name="n", template_name="t", all_contacts=True).campaign
    start(campaign.id, at=utcnow() + timedelta(hours=2))
    assert counters(campaign.id)["status"] == "scheduled"
    run_jobs(broker, stub_worker)
    assert fake_graph.messages() == []

    campaigns.get_campaign(campaign.id).start_at = utcnow() - timedelta(seconds=1)
    db.session.commit()
    swept = sweep.sweep(stale_after=STALE, sender=SENDER)
    assert (swept["started"], swept["restarted"]) == (1, 0)  # its first batch is queued: nothing to restart
    run_jobs(broker, stub_worker)
    assert counters(campaign.id)["status"] == "completed" and len(fake_graph.messages()) == 3


def test_a_scheduled_campaign_due_while_meta_has_the_number_flagged_waits_paused_for_staff(app, broker, stub_worker,
                                                                                          fake_graph):
    add_contacts(3)
    soon, later = (campaigns.create_campaign(name=name, template_name="t", all_contacts=True).campaign.id
                   for name in ("soon", "later"))
    start(soon, at=utcnow() + timedelta(seconds=0.5))  # begun by its own delayed batch
    start(later, at=utcnow() + timedelta(hours=2))  # begun by the sweep
    with transaction():
        standing.apply_quality_update(SENDER, {"event": "FLAGGED", "current_limit": "TIER_1K"})
    run_jobs(broker, stub_worker)
    campaigns.get_campaign(later).start_at = utcnow() - timedelta(seconds=1)
    db.session.commit()
    assert sweep.sweep(stale_after=STALE, sender=SENDER)["started"] == 1
    run_jobs(broker, stub_worker)

    assert fake_graph.messages() == []
    for campaign_id in (soon, later):
        info = counters(campaign_id)
        assert (info["status"], info["pending"]) == ("paused", 3)
        assert info["status_reason"].startswith("paused at its scheduled start: Meta reported flagged on the number")
    with transaction():
        campaigns.resume_campaign(soon)  # staff have looked into it
    run_jobs(broker, stub_worker)
    assert counters(soon)["status"] == "completed" and len(fake_graph.messages()) == 3


def test_a_start_within_the_broker_delay_begins_on_time_without_the_sweep(app, broker, stub_worker, fake_graph):
    add_contacts(3)
    campaign = campaigns.create_campaign(name="n", template_name="t", all_contacts=True).campaign
    at = utcnow() + timedelta(seconds=0.5)
    start(campaign.id, at=at)
    assert counters(campaign.id)["status"] == "scheduled"
    run_jobs(broker, stub_worker)

    info = counters(campaign.id)
    assert info["status"] == "completed" and info["started_at"] is not None
    times = [r.time for r in fake_graph.messages()]
    assert len(times) == 3 and min(times) >= at.timestamp()


def test_the_sweep_restarts_a_campaign_whose_batch_job_failed_for_good(app, broker, stub_worker, fake_graph,
                                                                       monkeypatch):
    add_contacts(5)
    campaign = campaigns.create_campaign(name="n", template_name="t", all_contacts=True).campaign

    def broken(campaign_id, *, claim, client, settings):
        raise RuntimeError("database gone")

    with monkeypatch.context() as patch:
        patch.setattr(sending, "run_batch", broken)
        start(campaign.id)
        run_jobs(broker, stub_worker)
    batch_jobs = select(Job.status).where(Job.type == SEND_CAMPAIGN_BATCH.name).order_by(Job.enqueued_at)
    assert db.session.scalars(batch_jobs).all() == ["failed"]
    assert counters(campaign.id)["status"] == "sending" and fake_graph.messages() == []

    assert sweep.sweep(stale_after=STALE, sender=SENDER)["restarted"] == 1
    assert sweep.sweep(stale_after=STALE, sender=SENDER)["restarted"] == 0  # its new batch is queued
    assert len(db.session.scalars(batch_jobs).all()) == 2  # one restart, however often the sweep runs
    run_jobs(broker, stub_worker)
    info = counters(campaign.id)
    assert (info["status"], info["sent"]) == ("completed", 5)
    assert sorted(r.recipient for r in fake_graph.messages()) == sorted(map(phone, range(5)))
    assert sweep.sweep(stale_after=STALE, sender=SENDER)["restarted"] == 0


def test_sweep_releases_untried_claims_and_flags_stale_in_flight_ones(app):
    add_contacts(3)
    campaign = campaigns.create_campaign(name="n", template_name="t", all_contacts=True).campaign
    untried, in_flight, fresh = db.session.scalars(select(Recipient).order_by(Recipient.id)).all()
    long_ago = utcnow() - timedelta(hours=1)
    untried.claim, untried.claimed_at = "dead-job", long_ago
    in_flight.claim, in_flight.claimed_at, in_flight.status = "dead-job", long_ago, "sending"
    fresh.claim, fresh.claimed_at = "live-job", utcnow()
    db.session.commit()

    assert sweep.sweep(stale_after=STALE, sender=SENDER) == {"released": 1, "flagged": 1, "started": 0, "restarted": 0}
    db.session.expire_all()
    assert untried.claim is None and untried.status == "pending"
    assert in_flight.status == "sending" and in_flight.attention_at is not None
    assert fresh.claim == "live-job"
    assert counters(campaign.id)["needs_attention"] == 1


def test_cli_creates_from_csv_and_shows_progress(app, tmp_path):
    csv_path = tmp_path / "audience.csv"
    csv_path.write_text(f"phone,name\n{phone(1)},Ann\nbad,Bob\n{phone(2)},Cy\n")
    runner = app.test_cli_runner()
    result = runner.invoke(args=["campaigns", "create", "--name", "Launch", "--template", "launch",
                                 "--param", "{name}", "--csv", str(csv_path)])
    assert result.exit_code == 0, result.output
    campaign_id = int(result.stdout.strip().splitlines()[-1])
    assert "line 3: 'bad' left out" in result.stderr

    shown = runner.invoke(args=["campaigns", "show", str(campaign_id), "--json"])
    info = json.loads(shown.stdout)
    assert (info["name"], info["status"], info["total"], info["pending"]) == ("Launch", "draft", 2, 2)
    assert not db.session().in_transaction()  # its read ended at once: no write lock held while it runs on

    refused = runner.invoke(args=["campaigns", "pause", str(campaign_id)])
    assert refused.exit_code != 0 and "only a sending or scheduled one can pause" in refused.output
    missing = runner.invoke(args=["campaigns", "create", "--name", "x", "--template", "t"])
    assert missing.exit_code != 0 and "choose the audience" in missing.output


@with_env(WCH_SEND_RATE_LIMIT="20")
def test_cancel_while_sending_stops_and_the_rest_are_skipped(app, broker, stub_worker, fake_graph):
    add_contacts(60)
    campaign = campaigns.create_campaign(name="n", template_name="t", all_contacts=True).campaign
    start(campaign.id)
    fake_graph.wait_for_requests(5, "messages")
    with transaction():
        campaigns.cancel_campaign(campaign.id)
    run_jobs(broker, stub_worker)

    info = counters(campaign.id)
    sent = len(fake_graph.messages())
    assert info["status"] == "cancelled" and sent < 60
    assert (info["sent"], info["skipped"], info["pending"], info["in_flight"]) == (sent, 60 - sent, 0, 0)
