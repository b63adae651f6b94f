"""Staff life cycle: ``wch users`` and the Users screen disable, enable, delete, change roles and reset passwords;
sessions end at once when they should, and after the idle time."""

from __future__ import annotations

import json

import itsdangerous.timed
import pytest
from sqlalchemy import func, select

from tests.support.apps import on_both_databases, with_env
from tests.support.panel import PASSWORD, client_for, csrf_token, log_in, make_user
from wch.db import db
from wch.models import AuditEntry, User

NEW_PASSWORD = "a brand new password"


def signed_in(app, email: str):
    client = client_for(app)
    log_in(client, email)
    assert client.get("/admin/").status_code == 200
    return client


def refused(client) -> bool:
    response = client.get("/admin/")
    return response.status_code == 302 and response.location.startswith("/login")


def cli(app, *args: str, input: str | None = None):
    result = app.test_cli_runner().invoke(args=list(args), input=input)
    db.session.rollback()
    return result


@on_both_databases
def test_cli_life_cycle_ends_sessions_at_their_next_request(app):
    make_user("boss@example.com", "admin")
    make_user("ana@example.com", "viewer")
    ana = signed_in(app, "ana@example.com")

    assert cli(app, "users", "disable", "ana@example.com").exit_code == 0
    assert refused(ana)
    again = client_for(app)
    response = again.post("/login", data={"email": "ana@example.com", "password": PASSWORD,
                                          "csrf_token": csrf_token(again)})
    assert response.status_code == 403 and "disabled" in response.get_data(as_text=True)

    assert cli(app, "users", "enable", "ana@example.com").exit_code == 0
    ana = signed_in(app, "ana@example.com")
    assert cli(app, "users", "set-role", "ana@example.com", "admin").exit_code == 0
    assert refused(ana)
    ana = signed_in(app, "ana@example.com")
    assert cli(app, "users", "reset-password", "ana@example.com", input=NEW_PASSWORD + "\n").exit_code == 0
    assert refused(ana)
    log_in(client_for(app), "ana@example.com", NEW_PASSWORD)

    listed = json.loads(cli(app, "users", "list", "--json").output)
    assert {(u["email"], u["role"], u["disabled_at"]) for u in listed} == {
        ("boss@example.com", "admin", None), ("ana@example.com", "admin", None)}
    assert "password" not in json.dumps(listed)
    assert cli(app, "users", "delete", "ana@example.com", "--yes").exit_code == 0
    assert db.session.scalar(select(func.count()).select_from(User)) == 1

    trail = json.loads(cli(app, "audit", "--json").output)
    assert [entry["action"] for entry in trail] == ["user.delete", "user.reset_password", "user.set_role",
                                                    "user.enable", "user.disable"]
    assert all(entry["actor"].startswith("cli:") and entry["address"] == "cli" for entry in trail)
    assert trail[2]["details"] == {"role": "admin"} and trail[0]["target"] == "user:ana@example.com"


def test_the_last_active_admin_cannot_be_disabled_deleted_or_demoted(app):
    make_user("boss@example.com", "admin")
    for args in (("disable", "boss@example.com"), ("delete", "boss@example.com", "--yes"),
                 ("set-role", "boss@example.com", "viewer")):
        result = cli(app, "users", *args)
        assert result.exit_code != 0 and "last active admin" in result.output, args
    unknown = cli(app, "users", "disable", "nobody@example.com")
    assert unknown.exit_code != 0 and "no user with e-mail nobody@example.com" in unknown.output
    assert db.session.scalar(select(func.count()).select_from(AuditEntry)) == 0  # refusals record nothing
    assert db.session.scalar(select(User.disabled_at)) is None


def test_users_screen_manages_accounts_and_a_viewer_cannot_open_it(app, admin):
    make_user("ana@example.com", "viewer")
    ana = signed_in(app, "ana@example.com")
    assert ana.get("/admin/users/").status_code == 403 and ana.get("/admin/audit/").status_code == 403
    assert "/admin/users/" not in ana.get("/admin/").get_data(as_text=True)  # not in the viewer's menu

    ana_id = db.session.scalar(select(User.id).where(User.email == "ana@example.com"))
    token = csrf_token(admin, "/admin/users/")
    admin.post(f"/admin/users/{ana_id}/disable", data={"csrf_token": token})
    assert refused(ana)
    page = admin.get("/admin/users/").get_data(as_text=True)
    assert "ana@example.com is disabled." in page and "disabled" in page
    admin.post(f"/admin/users/{ana_id}/enable", data={"csrf_token": token})
    admin.post(f"/admin/users/{ana_id}/reset-password", data={"csrf_token": token, "password": "short"})
    assert "at least 10 characters" in admin.get("/admin/users/").get_data(as_text=True)
    admin.post(f"/admin/users/{ana_id}/reset-password", data={"csrf_token": token, "password": NEW_PASSWORD})
    log_in(client_for(app), "ana@example.com", NEW_PASSWORD)
    admin.post("/admin/users/create", data={"csrf_token": token, "email": "carl@example.com", "role": "viewer",
                                            "password": NEW_PASSWORD})
    log_in(client_for(app), "carl@example.com", NEW_PASSWORD)
    admin.post(f"/admin/users/{ana_id}/delete", data={"csrf_token": token})
    db.session.rollback()
    assert set(db.session.scalars(select(User.email))) == {"admin@example.com", "carl@example.com"}
    actions = [entry.action for entry in db.session.scalars(select(AuditEntry).order_by(AuditEntry.id))]
    assert actions == ["user.disable", "user.enable", "user.reset_password", "user.create", "user.delete"]


def test_logging_out_ends_a_copied_session_too(app):
    make_user("ana@example.com", "viewer")
    ana = signed_in(app, "ana@example.com")
    thief = client_for(app)
    thief.set_cookie("session", ana.get_cookie("session").value)
    assert thief.get("/admin/").status_code == 200
    ana.post("/logout", data={"csrf_token": csrf_token(ana, "/admin/")})
    assert refused(thief)


@with_env(WCH_SESSION_IDLE_MINUTES="5")
def test_a_session_ends_after_the_idle_time(app, monkeypatch):
    make_user("ana@example.com", "viewer")
    ana = signed_in(app, "ana@example.com")
    cookie = ana.get_cookie("session")
    assert cookie.expires is not None  # a permanent session: the browser drops it too
    real_time = itsdangerous.timed.time.time
    monkeypatch.setattr(itsdangerous.timed.time, "time", lambda: real_time() + 4 * 60)
    assert ana.get("/admin/").status_code == 200  # active within the idle time: refreshed
    monkeypatch.setattr(itsdangerous.timed.time, "time", lambda: real_time() + 8 * 60)
    assert ana.get("/admin/").status_code == 200  # 4 minutes after the last request
    monkeypatch.setattr(itsdangerous.timed.time, "time", lambda: real_time() + 14 * 60)
    assert refused(ana)  # 6 minutes without a request


@pytest.mark.parametrize("session_id", ["1", "1.x", "²", "1.99", "9" * 40 + ".1", ""])
def test_a_forged_or_outdated_session_id_is_logged_out(app, session_id):
    make_user("ana@example.com", "viewer")
    client = client_for(app)
    with client.session_transaction() as session:
        session["_user_id"] = session_id
        session["_fresh"] = True
    assert refused(client)
