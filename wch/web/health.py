"""``/healthz`` for load balancers: the database and the broker, 503 when either is down."""

from __future__ import annotations

from flask import Blueprint, jsonify
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from wch import runtime
from wch.db import db, read_only
from wch.monitoring.queue_depths import broker_reachable

bp = Blueprint("health", __name__)


@bp.route("/healthz")
def healthz():
    settings = runtime.settings()
    checks = {}
    try:
        with read_only():
            db.session.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except SQLAlchemyError as error:
        checks["database"] = f"unreachable: {type(error).__name__}"
    if settings.broker_is_stub:
        checks["broker"] = "ok (in-process)"
    else:
        problem = broker_reachable(settings.broker_url)
        checks["broker"] = "ok" if problem is None else f"unreachable: {problem}"
    healthy = all(value.startswith("ok") for value in checks.values())
    return jsonify(status="ok" if healthy else "unavailable", checks=checks), 200 if healthy else 503
