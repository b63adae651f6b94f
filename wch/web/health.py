"""Health for load balancers and supervisors: ``/livez``, ``/readyz`` and its old name ``/healthz``.

Readiness follows the outbox design: a web process can take webhooks as long
as it can write to the database, since a job whose publish fails waits in the
outbox for the relay. So the broker is reported, never a reason to answer
503: a load balancer must not take every web node out during a RabbitMQ
outage, and WooCommerce disables webhooks whose deliveries keep failing.
"""

from __future__ import annotations

from flask import Blueprint, jsonify
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from wch import runtime
from wch.db import db, read_only
from wch.monitoring.queue_depths import broker_reachable

bp = Blueprint("health", __name__)


@bp.route("/livez")
def livez():
    """The process answers; nothing else is checked (a supervisor restarts it when this fails)."""
    return jsonify(status="ok")


@bp.route("/readyz")
@bp.route("/healthz")
def readyz():
    """200 while the database answers (jobs can be taken); the broker's state is reported alongside."""
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
        checks["broker"] = "ok" if problem is None else f"unreachable: {problem} (jobs wait in the outbox)"
    ready = checks["database"] == "ok"
    status = ("ok" if checks["broker"].startswith("ok") else "degraded") if ready else "unavailable"
    return jsonify(status=status, checks=checks), 200 if ready else 503
