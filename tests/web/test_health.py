"""``/livez``, ``/readyz`` (and ``/healthz``), ``/metrics``: what load balancers and Prometheus see.

Outages are real: the app reaches RabbitMQ or PostgreSQL through a
:class:`~tests.support.proxy.FaultProxy` that the test cuts.
"""

from __future__ import annotations

from contextlib import ExitStack

import pytest

from tests.support import woo
from tests.support.apps import inside
from tests.support.panel import add_job, client_for
from tests.support.proxy import FaultProxy
from tests.support.services import postgres_database, wait_for
from wch.db import db
from wch.jobs import dispatch, outbox
from wch.models import Cart, Job


def test_livez_and_readyz_on_a_healthy_app(app):
    client = client_for(app)
    assert client.get("/livez").json == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json == {"status": "ok", "checks": {"database": "ok", "broker": "ok (in-process)"}}
    assert client.get("/healthz").json == ready.json, "/healthz is readiness under its old name"


@pytest.mark.rabbitmq
def test_with_the_broker_down_webhooks_are_taken_and_the_app_stays_ready(app_factory, sqlite_url, rabbitmq_url):
    with ExitStack() as stack, FaultProxy.for_url(rabbitmq_url, default_port=5672) as proxy:
        app = app_factory(sqlite_url, proxy.url(rabbitmq_url),
                          **woo.sync_env("http://127.0.0.1:1/v24.0"))
        stack.enter_context(inside(app))
        client = client_for(app)
        assert client.get("/readyz").json["checks"]["broker"] == "ok"

        proxy.cut()
        assert woo.post(client, "product.updated", woo.product(41)).status_code == 200
        ready = client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json["status"] == "degraded" and ready.json["checks"]["database"] == "ok"
        assert ready.json["checks"]["broker"].startswith("unreachable")
        assert client.get("/healthz").status_code == 200
        assert client.get("/livez").status_code == 200
        job = wait_for(lambda: db.session.query(Job).filter(Job.published_at.is_(None)).one_or_none(),
                       what="the publisher to put the job RabbitMQ did not take back in the outbox")
        assert (job.type, job.args) == ("sync_product", {"store_id": 41})
        db.session.rollback()

        proxy.restore()
        # The publisher waits a moment after a failed connection before it tries again, as a relay run would.
        assert wait_for(outbox.relay, what="the relay to publish the webhook's job once the broker is back") == 1
        assert client.get("/readyz").json["status"] == "ok"


def test_with_the_database_down_readiness_fails_and_liveness_holds(app_factory):
    with ExitStack() as stack, postgres_database() as url, FaultProxy.for_url(url, default_port=5432) as proxy:
        app = stack.enter_context(inside(app_factory(proxy.url(url))))
        client = client_for(app)
        assert client.get("/readyz").status_code == 200
        proxy.cut()
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json["status"] == "unavailable" and ready.json["checks"]["database"].startswith("unreachable")
        assert client.get("/livez").status_code == 200
        proxy.restore()
        assert client.get("/readyz").status_code == 200


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
