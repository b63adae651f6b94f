"""A job dispatched while RabbitMQ is unreachable is kept in the outbox and runs once it is back.

The app and its workers reach RabbitMQ through a :class:`~tests.support.proxy.FaultProxy`
that the test cuts and restores, as a network fault would; the shared RabbitMQ
itself is never stopped.
"""

from __future__ import annotations

import time

import pytest

from tests.jobs.test_rabbitmq import dispatch, fresh, wait_status
from tests.support.proxy import FaultProxy
from tests.support.services import wait_for
from wch.jobs import outbox

pytestmark = pytest.mark.rabbitmq


@pytest.fixture
def rabbitmq_proxy(rabbitmq_vhost):
    with FaultProxy.for_url(rabbitmq_vhost, default_port=5672) as proxy:
        yield proxy


@pytest.fixture
def rabbitmq_url(rabbitmq_proxy, rabbitmq_vhost):
    """The app and the workers reach the session's vhost through the proxy."""
    return rabbitmq_proxy.url(rabbitmq_vhost)


def test_job_dispatched_while_rabbitmq_is_down_is_relayed_and_runs_after_it_is_back(
    rabbit_app, rabbitmq_proxy, spawn_worker, tmp_path
):
    spawn_worker()
    marker = tmp_path / "runs"

    rabbitmq_proxy.cut()
    try:
        started = time.monotonic()
        job_id = dispatch("echo", {"value": "sent while down", "marker": str(marker)})
        dispatch_seconds = time.monotonic() - started
        # The publisher could not publish it: it puts the job back in the outbox.
        job = wait_for(lambda: (job := fresh(job_id)).published_at is None and job, what="the job back in the outbox")
        relayed_while_down = outbox.relay()
    finally:
        rabbitmq_proxy.restore()

    # The dispatch succeeded at once: the job is in the ledger, waiting in the outbox.
    assert job.status == "queued"
    assert dispatch_seconds < 1
    assert relayed_while_down == 0
    assert fresh(job_id).published_at is None, "a relay that RabbitMQ refused leaves the job in the outbox"

    wait_for(lambda: outbox.relay() == 1, what="the relay to publish the job once RabbitMQ is back")
    assert outbox.relay() == 0, "a relayed job is not published twice"
    job = wait_status(job_id, "succeeded", timeout=90)
    assert job.published_at is not None and job.result == "sent while down"
    assert marker.read_text().splitlines() == ["ran"]


def test_retry_of_a_job_that_failed_while_rabbitmq_was_down_is_relayed_and_runs(
    rabbit_app, rabbitmq_proxy, spawn_worker, tmp_path
):
    spawn_worker()
    started, release, marker = tmp_path / "started", tmp_path / "release", tmp_path / "runs"
    job_id = dispatch("fail_when_released", {"started": str(started), "release": str(release), "marker": str(marker)})
    wait_for(started.exists, what="the job to start")

    rabbitmq_proxy.cut()
    try:
        release.touch()  # the job fails now, and its retry cannot be published
        job = wait_for(lambda: (job := fresh(job_id)).status == "retrying" and job, what="the retry to be recorded")
    finally:
        rabbitmq_proxy.restore()

    assert job.published_at is None, "the retry waits in the outbox"
    assert job.last_error == "RuntimeError: failed while RabbitMQ was away"
    wait_for(lambda: outbox.relay() == 1, what="the relay to publish the retry once RabbitMQ is back")
    job = wait_status(job_id, "succeeded", timeout=90)
    # The first attempt's message, redelivered once the worker reconnected, was not run again.
    assert job.attempts == 2 and job.result == 2
    assert marker.read_text().splitlines() == ["ran", "ran"]
    assert [a.outcome for a in job.attempt_log] == ["retrying", "succeeded"]
