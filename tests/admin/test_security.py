"""The panel refuses anyone not logged in, every POST without a CSRF token, and viewers who act; it escapes and
redacts what jobs carry."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from flask import Blueprint
from sqlalchemy import func, select

from tests.support.panel import PASSWORD, add_job, client_for, csrf_token, log_in, make_user
from wch.db import db
from wch.models import Campaign, Job, ReminderSettings, User
from wch.web.csrf import is_csrf_exempt

PLACEHOLDERS = {"job_id": "00000000-0000-0000-0000-000000000000", "cart_id": 1, "campaign_id": 1,
                "recipient_id": 1, "filename": "x", "action": "pause", "store_id": 1, "contact_id": 1, "user_id": 1,
                "kind": "products"}


def admin_rules(app, method: str) -> list[str]:
    """Every URL under /admin/ that answers ``method``, from the app's URL map (Flask-Admin's static files aside)."""
    urls = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/admin") or rule.endpoint.endswith(".static") or method not in rule.methods:
            continue
        urls.append(rule.rule if not rule.arguments else
                    re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", lambda m: str(PLACEHOLDERS[m.group(1)]), rule.rule))
    assert urls, f"no {method} rule under /admin/"
    return urls


def state() -> tuple:
    """What an admin POST could change: jobs, users, campaigns and the reminder settings."""
    db.session.rollback()
    jobs = tuple(db.session.execute(select(Job.id, Job.status).order_by(Job.id)).all())
    users = tuple(db.session.execute(select(User.email, User.role)).all())
    campaigns = tuple(db.session.execute(select(Campaign.id, Campaign.status)).all())
    settings = tuple(db.session.execute(select(ReminderSettings.delay_hours, ReminderSettings.enabled)).all())
    db.session.rollback()
    return jobs, users, campaigns, settings


def test_every_admin_page_redirects_to_log_in_without_a_session(app):
    client = client_for(app)
    for url in admin_rules(app, "GET"):
        response = client.get(url)
        assert response.status_code == 302, url
        assert response.location.startswith("/login?next="), url


def test_every_admin_post_without_a_session_is_refused(app):
    add_job(status="failed")
    before = state()
    client = client_for(app)
    token = csrf_token(client)  # an anonymous session's valid token: only the log-in is missing
    for url in admin_rules(app, "POST"):
        response = client.post(url, data={"csrf_token": token, "action": "retry", "confirm": "yes"})
        assert response.status_code == 302 and response.location.startswith("/login"), url
    assert state() == before


def test_every_post_without_a_csrf_token_is_refused_and_changes_nothing(app):
    make_user()
    failed = add_job(status="failed")
    queued = add_job(status="queued")
    client = client_for(app)
    log_in(client)
    before = state()
    for url in admin_rules(app, "POST") + ["/logout"]:
        url = url.replace(PLACEHOLDERS["job_id"], failed.id)
        form = {"ids": [failed.id, queued.id], "action": "retry", "confirm": "yes"}
        assert client.post(url, data=form).status_code == 400, url
        assert client.post(url, data=form | {"csrf_token": "forged"}).status_code == 400, url
    assert state() == before
    assert client.get("/admin/").status_code == 200  # still logged in: /logout was refused too


def test_log_in_with_a_wrong_password_fails_and_log_out_ends_the_session(app):
    make_user()
    client = client_for(app)
    response = client.post("/login", data={"email": "admin@example.com", "password": "nope",
                                           "csrf_token": csrf_token(client)})
    assert response.status_code == 401 and "Wrong e-mail or password" in response.get_data(as_text=True)
    assert client.get("/admin/").status_code == 302

    log_in(client)
    assert client.get("/admin/").status_code == 200
    assert client.get("/logout").status_code == 405  # logging out changes state: POST only
    token = csrf_token(client, "/admin/")
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    assert client.get("/admin/").status_code == 302


def test_session_cookie_is_httponly_and_samesite(app):
    make_user()
    client = client_for(app)
    cookie = log_in(client).headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/", "/\\evil.example"])
def test_log_in_never_redirects_off_site(app, target):
    make_user()
    client = client_for(app)
    response = client.post("/login", data={"email": "admin@example.com", "password": PASSWORD, "next": target,
                                           "csrf_token": csrf_token(client)})
    assert response.location == "/admin/"


def test_viewer_sees_no_action_buttons_and_is_refused_when_posting(app):
    make_user("viewer@example.com", role="viewer")
    failed = add_job(status="failed")
    queued = add_job(status="queued")
    client = client_for(app)
    log_in(client, "viewer@example.com")
    pages = {url: client.get(url).get_data(as_text=True)
             for url in ("/admin/", "/admin/jobs/", f"/admin/jobs/{failed.id}", f"/admin/jobs/{queued.id}")}
    for url, html in pages.items():
        for button in ("Run cleanup now", ">Retry<", ">Cancel<", "Retry selected", "Retry all failed"):
            assert button not in html, (url, button)
    assert failed.id[:8] in pages["/admin/jobs/"]  # the viewer does see the jobs

    before = state()
    token = csrf_token(client, "/admin/")
    for url in admin_rules(app, "POST"):
        url = url.replace(PLACEHOLDERS["job_id"], failed.id)
        response = client.post(url, data={"csrf_token": token, "ids": [failed.id], "action": "retry", "confirm": "yes"})
        assert response.status_code == 403, url
    assert state() == before


def test_script_in_job_args_and_error_is_shown_escaped(app):
    make_user()
    evil = "<script>alert('pwned')</script>"
    job = add_job(status="failed", args={"note": evil}, error=f"RuntimeError: {evil}")
    client = client_for(app)
    log_in(client)
    for url in (f"/admin/jobs/{job.id}", "/admin/jobs/", "/admin/jobs/?status=failed&q=pwned"):
        html = client.get(url).get_data(as_text=True)
        assert "<script>alert(" not in html, url
        assert "&lt;script&gt;alert(" in html, url


def test_a_token_in_job_args_or_error_is_not_shown(app):
    make_user()
    secret = "EAAGm0PX4ZCpsBAKZAZD1234567890abcdefSECRET"
    job = add_job(status="failed", args={"access_token": secret, "product": {"api_key": "k-123456789"},
                                         "url": f"https://graph.example/v1?access_token={secret}"},
                  error=f"HTTPError: 401 for url https://graph.example/v1?access_token={secret}")
    client = client_for(app)
    log_in(client)
    for url in (f"/admin/jobs/{job.id}", "/admin/jobs/", "/admin/jobs/?status=failed"):
        html = client.get(url).get_data(as_text=True)
        assert secret not in html and "k-123456789" not in html, url
    assert "[redacted]" in client.get(f"/admin/jobs/{job.id}").get_data(as_text=True)


def test_webhooks_are_exempt_from_csrf_whenever_their_blueprint_is_registered(app):
    hooks = Blueprint("late_webhooks", __name__, url_prefix="/webhooks/late")
    hooks.add_url_rule("/", "receive", lambda: "ok", methods=["POST"])
    app.register_blueprint(hooks)  # after init_csrf
    assert client_for(app).post("/webhooks/late/", data="{}").status_code == 200
    assert is_csrf_exempt("/webhooks/woocommerce")
    assert not is_csrf_exempt("/webhooksx") and not is_csrf_exempt("/admin/")


def test_passwords_are_stored_hashed(app):
    make_user()
    stored = db.session.scalar(select(User.password_hash))
    assert PASSWORD not in stored and stored.startswith(("scrypt:", "pbkdf2:"))
    assert db.session.scalar(select(func.count()).select_from(User)) == 1


def test_every_answer_carries_the_security_headers(app, admin):
    for url in ("/admin/", "/login", "/healthz", "/admin/jobs/"):
        headers = client_for(app).get(url).headers if url == "/login" else admin.get(url).headers
        policy = headers["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy and "unsafe-eval" not in policy
        assert "'unsafe-inline'" not in policy.split("script-src")[1].split(";")[0], url
        assert headers["X-Frame-Options"] == "DENY" and headers["Referrer-Policy"] == "same-origin", url
        assert headers["X-Content-Type-Options"] == "nosniff"


def test_no_inline_script_is_left_in_the_templates():
    templates = Path(__file__).resolve().parents[2] / "templates"
    for page in templates.rglob("*.html"):
        html = page.read_text()
        for tag in re.findall(r"<script\b[^>]*>", html):
            assert "src=" in tag or 'type="application/json"' in tag, (page.name, tag)
        assert not re.search(r"\son[a-z]+=", html), page.name  # onclick=, onsubmit=…


def test_a_nul_byte_in_a_field_is_refused_and_changes_nothing(app, admin):
    assert admin.get("/admin/jobs/?q=a%00b").status_code == 400
    token = csrf_token(admin, "/admin/")
    before = state()
    response = admin.post("/admin/settings/", data={"csrf_token": token, "delay_hours": "5", "message": "Hi\x00"})
    assert response.status_code == 400
    assert state() == before


def test_a_large_body_is_refused_before_the_log_in_check_reads_it(app):
    client = client_for(app)
    token = csrf_token(client)
    response = client.post("/login", data={"csrf_token": token, "email": "a@example.com", "password": "x" * 70_000})
    assert response.status_code == 413
    assert client.post("/admin/settings/", data={"csrf_token": token, "blob": "x" * 70_000}).status_code == 413
