"""Job metrics served by the workers themselves (``wch.jobs.middleware.metrics``), read as Prometheus reads them."""

from __future__ import annotations

import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.services import free_port, wait_for
from wch.db import db
from wch.jobs import dispatcher
from wch.models import Job

pytestmark = pytest.mark.rabbitmq


def scrape(port: int) -> dict[tuple, float]:
    """Every sample of the worker's exposition, as {(name, sorted labels): value}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def finished(count: int) -> bool:
    db.session.rollback()
    done = db.session.query(Job).filter(Job.status.in_(("succeeded", "failed"))).count()
    db.session.rollback()
    return done >= count


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_workers_count_jobs_by_type_and_outcome_and_time_them(spawn_worker, tmp_path):
    port = free_port()
    # Two worker processes: the exposition adds up what each counted.
    spawn_worker(processes=2, WCH_METRICS_PORT=str(port), WCH_METRICS_HOST="127.0.0.1", WCH_RETRY_DELAYS="0.2")
    for value in range(3):
        dispatcher.dispatch("echo", {"value": value})
    dispatcher.dispatch("slow", {"seconds": 0.5})  # holds one process while the other takes the next jobs
    dispatcher.dispatch("fails_for_good", {})
    dispatcher.dispatch("fail_then_succeed", {"marker": str(tmp_path / "runs"), "failures": 1})
    db.session.commit()
    wait_for(lambda: finished(6), timeout=60, what="the six jobs to finish")

    def counted():
        try:
            samples = scrape(port)
        except OSError:
            return None
        return samples if samples.get(("wch_jobs_total", (("outcome", "succeeded"), ("type", "echo"))), 0) >= 3 \
            else None

    samples = wait_for(counted, timeout=30, what="the worker's exposition to count the echo jobs")
    jobs = {labels: value for (name, labels), value in samples.items() if name == "wch_jobs_total"}
    assert jobs == {
        (("outcome", "succeeded"), ("type", "echo")): 3.0,
        (("outcome", "failed"), ("type", "fails_for_good")): 1.0,
        (("outcome", "retrying"), ("type", "fail_then_succeed")): 1.0,
        (("outcome", "succeeded"), ("type", "fail_then_succeed")): 1.0,
        (("outcome", "succeeded"), ("type", "slow")): 1.0,
    }
    assert samples[("wch_job_duration_seconds_count", (("type", "echo"),))] == 3.0
    assert samples[("wch_job_duration_seconds_count", (("type", "fail_then_succeed"),))] == 2.0
    assert 0 < samples[("wch_job_duration_seconds_sum", (("type", "echo"),))] < 5
    assert 0.5 <= samples[("wch_job_duration_seconds_sum", (("type", "slow"),))] < 5
