"""The audit trail: every kind of staff action that changes something is recorded once, with who, when, what and
from where, in the same transaction as the action; the Audit log screen and ``wch audit --json`` show it."""

from __future__ import annotations

import json

from sqlalchemy import select

from tests.support.apps import on_both_databases
from tests.support.panel import add_job, csrf_token, make_user
from wch.db import db
from wch.models import AuditEntry, Campaign, Contact, User
from wch.staff.audit import ACTIONS


def trail() -> list[AuditEntry]:
    db.session.rollback()
    entries = list(db.session.scalars(select(AuditEntry).order_by(AuditEntry.id)))
    db.session.rollback()
    return entries


@on_both_databases
def test_every_kind_of_action_is_recorded_with_who_when_what_and_where(app, admin):
    failed, queued, stuck = add_job(status="failed"), add_job(status="queued"), add_job(status="running")
    contact = Contact(phone="+4915112345678", name="Ana")
    db.session.add(contact)
    db.session.commit()
    contact_id = contact.id
    make_user("ana@example.com", "viewer")
    ana_id = db.session.scalar(select(User.id).where(User.email == "ana@example.com"))
    token = csrf_token(admin, "/admin/")

    def post(url: str, **form: str) -> None:
        response = admin.post(url, data={"csrf_token": token, **form})
        assert response.status_code in (200, 302), (url, response.status_code)

    post(f"/admin/jobs/{failed.id}/retry")
    post(f"/admin/jobs/{queued.id}/cancel")
    post(f"/admin/jobs/{stuck.id}/fail")  # its worker never announced itself: gone
    post("/admin/cleanup")
    post("/admin/campaigns/new", name="Spring", kind="text", text="Hi {name}", audience="all", start="now")
    campaign_id = db.session.scalar(select(Campaign.id))
    post(f"/admin/campaigns/{campaign_id}/pause")
    post(f"/admin/campaigns/{campaign_id}/resume")
    db.session.execute(Campaign.__table__.update().values(failed=1))
    db.session.execute(db.text("UPDATE campaign_recipients SET status = 'failed'"))
    db.session.commit()
    post(f"/admin/campaigns/{campaign_id}/retry")
    post(f"/admin/campaigns/{campaign_id}/cancel")
    post("/admin/settings/", enabled="on", delay_hours="6", message="Hi {name}", template_name="cart_reminder")
    post("/admin/users/create", email="carl@example.com", role="viewer", password="a long password")
    for action, form in (("disable", {}), ("enable", {}), ("set-role", {"role": "admin"}),
                         ("reset-password", {"password": "another long one"}), ("delete", {})):
        post(f"/admin/users/{ana_id}/{action}", **form)
    post(f"/admin/contacts/{contact_id}/opt-out")
    post(f"/admin/contacts/{contact_id}/opt-in")

    entries = trail()
    assert sorted({entry.action for entry in entries}) == sorted(ACTIONS)
    assert len(entries) == len(ACTIONS)  # one entry per action taken
    for entry in entries:
        assert entry.actor == "admin@example.com" and entry.address == "127.0.0.1" and entry.at is not None
    by_action = {entry.action: entry for entry in entries}
    assert by_action["job.retry"].target == f"job:{failed.id}" and by_action["job.retry"].details == {
        "via": "job page"}
    assert by_action["user.set_role"].details == {"role": "admin"}
    assert by_action["contact.opt_out"].target == "contact:+4915112345678"
    assert by_action["settings.reminders"].details["delay_hours"] == "6"

    screen = admin.get("/admin/audit/?action=user.delete").get_data(as_text=True)
    assert screen.count('data-action="user.delete"') == 1 and "user:ana@example.com" in screen
    listed = json.loads(app.test_cli_runner().invoke(args=["audit", "--json", "--action", "job.cancel"]).output)
    assert [(e["action"], e["target"], e["actor"]) for e in listed] == [
        ("job.cancel", f"job:{queued.id}", "admin@example.com")]


def test_a_refused_action_leaves_no_entry(app, admin):
    queued = add_job(status="queued")
    token = csrf_token(admin, "/admin/")
    admin.post(f"/admin/jobs/{queued.id}/retry", data={"csrf_token": token})  # only failed jobs can be retried
    admin.post("/admin/settings/", data={"csrf_token": token, "delay_hours": "0", "message": "Hi"})
    admin.post("/admin/users/1/delete", data={"csrf_token": token})  # the last admin
    assert trail() == []


def test_commands_that_change_something_are_recorded_too(app):
    failed, queued = add_job(status="failed"), add_job(status="queued")
    db.session.add(Contact(phone="+4915112345678", name="Ana"))
    db.session.commit()
    runner = app.test_cli_runner()
    for args in (["jobs", "retry", failed.id], ["jobs", "cancel", queued.id], ["carts", "cleanup", "--json"],
                 ["campaigns", "create", "--name", "Spring", "--text", "Hi", "--all-contacts"],
                 ["campaigns", "start", "1"], ["campaigns", "pause", "1"], ["campaigns", "resume", "1"],
                 ["campaigns", "cancel", "1"]):
        result = runner.invoke(args=args)
        assert result.exit_code == 0, (args, result.output)
    refused = runner.invoke(args=["campaigns", "pause", "1"])  # cancelled: refused, not recorded
    assert refused.exit_code != 0
    entries = trail()
    assert [entry.action for entry in entries] == ["job.retry", "job.cancel", "carts.cleanup", "campaign.create",
                                                   "campaign.start", "campaign.pause", "campaign.resume",
                                                   "campaign.cancel"]
    assert all(entry.actor.startswith("cli:") and entry.address == "cli" for entry in entries)
