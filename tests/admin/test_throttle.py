"""Log-in throttling: failed log-ins per account, attempts per client address, shared through Redis between web
processes, and a bounded number of password checks at once."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import redis
import requests

from tests.support.apps import settings_of, with_env
from tests.support.panel import PASSWORD, TOKEN, client_for, csrf_token, make_user
from tests.support.services import free_port, wait_for
from wch.admin.auth import THROTTLE
from wch.db import db

REDIS_URL = "redis://127.0.0.1:6379/0"


def attempt(client, email: str, password: str = "wrong password", **headers: str):
    return client.post("/login", headers=headers,
                       data={"email": email, "password": password, "csrf_token": csrf_token(client)})


def wait_in(response) -> int:
    """The "try again in N s" of a refused log-in, checked against its Retry-After header."""
    seconds = int(re.search(r"Try again in (\d+) s\.", response.get_data(as_text=True)).group(1))
    assert response.headers["Retry-After"] == str(seconds)
    return seconds


@with_env(WCH_LOGIN_LIMIT_PER_ACCOUNT="3 per 15 minutes")
def test_an_account_is_throttled_after_its_failed_log_ins_and_says_when_to_try_again(app):
    make_user("ana@example.com", "viewer")
    make_user("boss@example.com", "admin")
    client = client_for(app)
    for _ in range(3):
        assert attempt(client, "ANA@example.com").status_code == 401
    refused = attempt(client, "ana@example.com", PASSWORD)  # even the right password waits
    assert refused.status_code == 429 and 1 <= wait_in(refused) <= 15 * 60
    assert "/admin/" not in (refused.location or "")
    assert attempt(client_for(app), "boss@example.com", PASSWORD).status_code == 302  # others are not locked out
    # An unknown e-mail is throttled the same way: the answer does not tell which e-mails exist.
    for _ in range(3):
        assert attempt(client, "nobody@example.com").status_code == 401
    assert attempt(client, "nobody@example.com").status_code == 429


@with_env(WCH_LOGIN_LIMIT_PER_ADDRESS="4 per minute", WCH_TRUSTED_PROXIES="1")
def test_a_client_address_is_throttled_whatever_the_e_mail(app):
    make_user("ana@example.com", "viewer")
    client = client_for(app)
    for number in range(4):
        assert attempt(client, f"guess{number}@example.com", X_Forwarded_For="203.0.113.9").status_code == 401
    refused = attempt(client, "ana@example.com", PASSWORD, X_Forwarded_For="203.0.113.9")
    assert refused.status_code == 429 and wait_in(refused) <= 60
    # Another client (as the trusted proxy reports it) is not affected.
    assert attempt(client_for(app), "ana@example.com", PASSWORD, X_Forwarded_For="198.51.100.7").status_code == 302


@with_env(WCH_LOGIN_LIMIT_PER_ACCOUNT="2 per hour", WCH_LOGIN_LIMIT_PER_ADDRESS="1000 per minute",
          WCH_RATELIMIT_STORAGE_URL=REDIS_URL)
def test_with_redis_every_web_process_counts_the_same_failures(app, app_factory, tmp_path):
    email = f"{uuid.uuid4().hex[:12]}@example.com"  # the Redis database is shared with other runs
    make_user(email, "viewer")
    other_process = app_factory(f"sqlite:///{tmp_path / 'other.sqlite3'}")  # the same settings, a new limiter
    try:
        assert attempt(client_for(app), email).status_code == 401
        with other_process.app_context():
            assert attempt(client_for(other_process), email).status_code == 401
            assert attempt(client_for(other_process), email).status_code == 429
        assert attempt(client_for(app), email, PASSWORD).status_code == 429
    finally:
        client = redis.Redis.from_url(REDIS_URL)
        for key in client.scan_iter(f"*{email}*"):
            client.delete(key)


@with_env(WCH_LOGIN_CONCURRENCY="1")
def test_password_checks_are_bounded_and_a_busy_log_in_says_when_to_try_again(app):
    make_user("ana@example.com", "viewer")
    client = client_for(app)
    checks = app.extensions[THROTTLE].checks
    checks.acquire()  # another log-in is being checked
    try:
        busy = attempt(client, "ana@example.com", PASSWORD)
    finally:
        checks.release()
    assert busy.status_code == 503 and wait_in(busy) == 1
    assert attempt(client, "ana@example.com", PASSWORD).status_code == 302


def _login(base: str, email: str, password: str = "wrong password") -> int:
    with requests.Session() as browser:
        token = TOKEN.search(browser.get(f"{base}/login", timeout=10).text).group(1)
        return browser.post(f"{base}/login", data={"email": email, "password": password, "csrf_token": token},
                            allow_redirects=False, timeout=30).status_code


@with_env(WCH_LOGIN_LIMIT_PER_ACCOUNT="5 per hour", WCH_LOGIN_LIMIT_PER_ADDRESS="1000 per minute",
          WCH_RATELIMIT_STORAGE_URL=REDIS_URL)
def test_a_burst_into_gunicorn_workers_is_throttled_as_one(app, tmp_path):
    email = f"{uuid.uuid4().hex[:12]}@example.com"
    make_user(email, "viewer")
    db.session.rollback()  # SQLite: leave the database to the served app
    settings = settings_of(app)
    env = {"WCH_DATABASE_URL": settings.database_url, "WCH_BROKER_URL": "stub://", "WCH_SECRET_KEY": "test-secret-key",
           "WCH_LOGIN_LIMIT_PER_ACCOUNT": "5 per hour", "WCH_LOGIN_LIMIT_PER_ADDRESS": "1000 per minute",
           "WCH_RATELIMIT_STORAGE_URL": REDIS_URL}
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    web = subprocess.Popen([str(Path(sys.executable).parent / "gunicorn"), "-k", "gthread", "-w", "3", "--threads",
                            "4", "-b", f"127.0.0.1:{port}", "--log-level", "warning", "wch:create_app()"],
                           env=os.environ | env, stdout=(tmp_path / "gunicorn.log").open("wb"),
                           stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: _answers(f"{base}/login"), timeout=60, what="gunicorn to answer")
        with ThreadPoolExecutor(max_workers=12) as pool:
            answers = list(pool.map(lambda _: _login(base, email), range(24)))
        # The check and the count of a failure are not one step: log-ins checking their password at the
        # same moment may all pass it, at most one per password-check slot (2 per worker, 3 workers).
        assert 5 <= answers.count(401) <= 5 + 6 and answers.count(401) + answers.count(429) == 24, answers
        assert _login(base, email, PASSWORD) == 429  # the right password waits too
    finally:
        web.terminate()
        web.wait(timeout=30)
        client = redis.Redis.from_url(REDIS_URL)
        for key in client.scan_iter(f"*{email}*"):
            client.delete(key)


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False
