"""``/healthz`` and ``/metrics``: what load balancers and Prometheus see."""

from __future__ import annotations

from tests.support.panel import add_job, client_for
from wch.db import db
from wch.jobs import dispatch
from wch.models import Cart


def test_healthz_reports_database_and_broker(app, app_factory, sqlite_url):
    response = client_for(app).get("/healthz")
    assert response.status_code == 200 and response.json["checks"]["database"] == "ok"

    down = app_factory(sqlite_url, "amqp://guest:guest@127.0.0.1:1/%2F")
    response = down.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.json["checks"]["broker"].startswith("unreachable")


def test_metrics_show_the_dashboard_numbers(app):
    dispatch("echo", {"value": 1})
    db.session.commit()
    add_job(status="failed")
    db.session.add(Cart(customer_phone="+1", status="abandoned"))
    db.session.commit()
    text = client_for(app).get("/metrics").get_data(as_text=True)
    assert 'wch_jobs_pending{state="queued",type="echo"} 1.0' in text
    assert 'wch_jobs_finished_24h{outcome="failed"} 1.0' in text
    assert 'wch_carts{status="abandoned"} 1.0' in text
