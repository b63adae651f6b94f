"""A job dispatched while RabbitMQ is stopped is kept in the outbox and runs once it is back.

This stops the shared RabbitMQ node's application for a few seconds
(``rabbitmqctl stop_app``), so it lives in its own module and keeps the
downtime short; ``start_app`` always runs.
"""

from __future__ import annotations

import time

import pika
import pytest

from tests.jobs.test_rabbitmq import dispatch, fresh, wait_status
from tests.support.services import rabbitmqctl, wait_for
from wch.jobs import outbox

pytestmark = pytest.mark.rabbitmq


@pytest.fixture
def env():
    """No wait before relaying: in these tests nothing else will publish the job."""
    return {"WCH_RELAY_GRACE": "0"}


def accepts_connections(url: str) -> bool:
    params = pika.URLParameters(url)
    params.connection_attempts, params.socket_timeout = 1, 2
    try:
        pika.BlockingConnection(params).close()
    except pika.exceptions.AMQPError:
        return False
    return True


def restart(url: str) -> None:
    rabbitmqctl("start_app")
    wait_for(lambda: accepts_connections(url), timeout=60, interval=0.5, what="RabbitMQ to accept connections")


def test_job_dispatched_while_rabbitmq_is_down_is_relayed_and_runs_after_it_is_back(
    rabbit_app, rabbitmq_url, spawn_worker, tmp_path
):
    spawn_worker()
    marker = tmp_path / "runs"

    rabbitmqctl("stop_app")
    try:
        started = time.monotonic()
        job_id = dispatch("echo", {"value": "sent while down", "marker": str(marker)})
        dispatch_seconds = time.monotonic() - started
        job = fresh(job_id)
        relayed_while_down = outbox.relay()
    finally:
        restart(rabbitmq_url)

    # The dispatch succeeded: the job is in the ledger, waiting in the outbox.
    assert job.status == "queued" and job.published_at is None
    assert dispatch_seconds < 10
    assert relayed_while_down == 0

    assert outbox.relay() == 1
    assert outbox.relay() == 0, "a relayed job is not published twice"
    job = wait_status(job_id, "succeeded", timeout=90)
    assert job.published_at is not None and job.result == "sent while down"
    assert marker.read_text().splitlines() == ["ran"]


def test_retry_of_a_job_that_failed_while_rabbitmq_was_down_is_relayed_and_runs(
    rabbit_app, rabbitmq_url, spawn_worker, tmp_path
):
    spawn_worker()
    started, release, marker = tmp_path / "started", tmp_path / "release", tmp_path / "runs"
    job_id = dispatch("fail_when_released", {"started": str(started), "release": str(release), "marker": str(marker)})
    wait_for(started.exists, what="the job to start")

    rabbitmqctl("stop_app")
    try:
        release.touch()  # the job fails now, and its retry cannot be published
        job = wait_for(lambda: (job := fresh(job_id)).status == "retrying" and job, what="the retry to be recorded")
    finally:
        restart(rabbitmq_url)

    assert job.published_at is None, "the retry waits in the outbox"
    assert job.last_error == "RuntimeError: failed while RabbitMQ was away"
    assert outbox.relay() == 1
    job = wait_status(job_id, "succeeded", timeout=90)
    # The first attempt's message, redelivered after the restart, was not run again.
    assert job.attempts == 2 and job.result == 2
    assert marker.read_text().splitlines() == ["ran", "ran"]
    assert [a.outcome for a in job.attempt_log] == ["retrying", "succeeded"]
