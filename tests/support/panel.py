"""Helpers for the admin panel's tests: staff accounts, log-in, CSRF tokens, ledger rows, a served app."""

from __future__ import annotations

import re
import threading
import uuid
from datetime import timedelta
from typing import Any

from flask.testing import FlaskClient
from werkzeug.serving import make_server

from wch.db import db, utcnow
from wch.jobs.messages import args_digest
from wch.models import Job, JobAttempt, User

PASSWORD = "correct horse battery"
TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


class PanelClient(FlaskClient):
    """A test client whose every request runs in its own app context, as on a real server.

    The ``app`` fixture keeps one app context open for the whole test; requests
    would share its ``g`` (where Flask-WTF caches the CSRF token) and its
    database session. Here each request gets fresh ones.
    """

    def open(self, *args, **kwargs):
        db.session.rollback()  # SQLite: the test's open transaction would hold the write lock
        with self.application.app_context():
            return super().open(*args, **kwargs)


def client_for(app) -> PanelClient:
    return PanelClient(app, app.response_class, use_cookies=True)


def make_user(email: str = "admin@example.com", role: str = "admin") -> User:
    user = User(email=email, role=role)
    user.set_password(PASSWORD)
    db.session.add(user)
    db.session.commit()
    return user


def csrf_token(client, url: str = "/login") -> str:
    """The CSRF token of ``client``'s session, read from a page's form as a browser would."""
    match = TOKEN.search(client.get(url).get_data(as_text=True))
    assert match, f"no CSRF token on {url}"
    return match.group(1)


def log_in(client, email: str = "admin@example.com", password: str = PASSWORD):
    response = client.post("/login", data={"email": email, "password": password, "csrf_token": csrf_token(client)})
    assert response.status_code == 302, response.get_data(as_text=True)
    return response


def logged_in_admin(app) -> PanelClient:
    """A client logged in as a new admin."""
    make_user()
    client = client_for(app)
    log_in(client)
    return client


def add_job(type_: str = "echo", *, status: str = "failed", args: dict[str, Any] | None = None,
            error: str | None = "RuntimeError: boom", ago: timedelta = timedelta(minutes=5),
            queue: str = "sync") -> Job:
    """A ledger row as the worker would have left it (with one attempt when it ran), committed.

    A ``running`` one runs on a worker that never announced itself, so it counts as gone.
    """
    args = {} if args is None else args
    now = utcnow()
    ran = status in {"succeeded", "failed"}
    started = ran or status == "running"  # a running job's attempt is written when it ends
    job = Job(id=str(uuid.uuid4()), type=type_, queue=queue, args=args, status=status, attempts=1 if started else 0,
              enqueued_at=now - ago, digest=args_digest(type_, args), published_at=now - ago,
              last_error=error if status == "failed" else None,
              traceback=f"Traceback (most recent call last):\n{error}" if status == "failed" and error else None,
              started_at=now - ago if started else None, worker="test-host:1" if started else None,
              finished_at=now - ago + timedelta(seconds=1) if ran else None)
    if ran:
        job.attempt_log.append(JobAttempt(number=1, worker="test", started_at=job.started_at,
                                          finished_at=job.finished_at, outcome=status,
                                          error=job.last_error, traceback=job.traceback))
    db.session.add(job)
    db.session.commit()
    return job


class ServedApp:
    """``app`` served over HTTP on 127.0.0.1 by a thread, as gunicorn would in production.

    Parameters:
      app: the Flask app to serve.
    """

    def __init__(self, app) -> None:
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, name="panel-server", daemon=True)

    def __enter__(self) -> ServedApp:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.thread.join(timeout=10)
