"""Real faults against real ``dramatiq`` workers and RabbitMQ, on SQLite and PostgreSQL: no job lost, none run twice.

- The worker's database is unreachable for longer than the whole retry
  schedule. PostgreSQL: a :class:`~tests.support.proxy.FaultProxy` between the
  worker and the database is cut (the test's own app, like a web process on
  another path, still reaches it). SQLite: another connection holds an
  exclusive lock, and the worker's busy timeout is 1 s, so its writes fail
  with "database is locked" instead of waiting (a file is never "unreachable"
  for connections already open; a lock is SQLite's outage).
- A worker is SIGKILLed with jobs in hand.
- A job's message is deleted from RabbitMQ.
- A job is dispatched with the dedupe key of a running job (and once that job has released its key).

Workers retry on ``WCH_RETRY_DELAYS=1,2,3`` with ``WCH_MAX_BROKER_DELAY=2``:
production's 60/300/900 s against a 600 s cap, scaled down.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.jobs.test_rabbitmq import dispatch, fresh, wait_status
from tests.support.apps import overrides, with_env
from tests.support.proxy import FaultProxy
from tests.support.services import purge_queues, wait_for
from wch import runtime
from wch.db import db
from wch.jobs import lifeline, release_key
from wch.models import WorkerProcess as WorkerRow
from wch.monitoring.queue_depths import broker_depths

pytestmark = pytest.mark.rabbitmq

RETRY_SCHEDULE = 1 + 2 + 3
OUTAGE = RETRY_SCHEDULE + 3


@pytest.fixture
def env(request):
    return {"WCH_RETRY_DELAYS": "1,2,3", "WCH_MAX_BROKER_DELAY": "2", "WCH_WORKER_HEARTBEAT": "1"} | overrides(request)


class DatabaseOutage:
    """Cuts a worker off its database and restores it; ``worker_env`` is what the worker must be started with.

    Parameters:
      database_url: the test's database.
    """

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self.proxy: FaultProxy | None = None
        self.lock: sqlite3.Connection | None = None
        if database_url.startswith("sqlite:"):
            self.worker_env = {"WCH_SQLITE_BUSY_TIMEOUT": "1"}
        else:
            self.proxy = FaultProxy.for_url(database_url, default_port=5432).__enter__()
            self.worker_env = {"WCH_DATABASE_URL": self.proxy.url(database_url)}

    def cut(self) -> None:
        if self.proxy is not None:
            self.proxy.cut()
            return
        self.lock = sqlite3.connect(self.database_url.removeprefix("sqlite:///"), isolation_level=None, timeout=30)
        self.lock.execute("BEGIN EXCLUSIVE")

    def restore(self) -> None:
        if self.proxy is not None:
            self.proxy.restore()
        elif self.lock is not None:
            self.lock.execute("ROLLBACK")
            self.lock.close()
            self.lock = None

    def close(self) -> None:
        self.restore()
        if self.proxy is not None:
            self.proxy.close()


@pytest.fixture
def outage(rabbit_app):
    fault = DatabaseOutage(runtime.settings().database_url)
    yield fault
    fault.close()


def ready_in_sync_queue(rabbitmq_url: str) -> int | None:
    return {q.name: q.ready for q in broker_depths(rabbitmq_url).queues}["sync"]


def ran(marker: Path) -> list[str]:
    return marker.read_text().splitlines() if marker.exists() else []


def test_database_outage_longer_than_the_retry_schedule_loses_no_job_and_runs_each_once(
    rabbit_app, outage, spawn_worker, tmp_path
):
    worker = spawn_worker(**outage.worker_env)
    started, release, running_marker = tmp_path / "started", tmp_path / "release", tmp_path / "running"
    running = dispatch("hold", {"started": str(started), "release": str(release), "marker": str(running_marker)})
    wait_for(started.exists, what="a job to be running when the database goes")
    # Unique jobs (one product each) reaching the worker while the database is away.
    markers = {key: tmp_path / f"product-{key}" for key in range(6)}
    jobs = {key: dispatch("echo", {"marker": str(markers[key])}, unique=str(key), delay=0.5 * (key + 1))
            for key in range(4)}

    outage.cut()
    cut_at = time.monotonic()
    try:
        release.touch()  # the running job ends during the outage: its outcome must wait for the database
        if outage.proxy is not None:
            # The web app still reaches PostgreSQL; only the worker is cut off.
            jobs |= {key: dispatch("echo", {"marker": str(markers[key])}, unique=str(key)) for key in (4, 5)}
        wait_for(lambda: time.monotonic() - cut_at > OUTAGE
                 and all(f"Could not claim job {job_id}" in worker.output() for job_id in jobs.values()),
                 timeout=OUTAGE + 30, interval=0.5, what="every job to fail its claim through an outage "
                                                          "longer than the retry schedule")
    finally:
        outage.restore()

    for key, job_id in jobs.items():
        job = wait_status(job_id, "succeeded", timeout=60)
        assert ran(markers[key]) == ["ran"], f"product {key}'s job ran once"
        assert job.attempts == 1 and [a.outcome for a in job.attempt_log] == ["succeeded"], "no retry was spent"
    job = wait_status(running, "succeeded", timeout=30)
    assert ran(running_marker) == ["done"] and [a.outcome for a in job.attempt_log] == ["succeeded"]

    # Nothing is left holding a key: the next change to product 0 gets a job of its own, which runs.
    after = dispatch("echo", {"marker": str(markers[0])}, unique="0")
    assert after != jobs[0]
    wait_status(after, "succeeded")
    assert ran(markers[0]) == ["ran", "ran"]


def test_worker_killed_with_jobs_in_hand_loses_none_and_the_lifeline_ends_those_it_was_running(
    rabbit_app, spawn_worker, tmp_path
):
    # Workers give a silent worker's redelivered jobs the benefit of the doubt for a minute;
    # the lifeline, run here with a 2 s limit, is what ends them.
    first = spawn_worker(WCH_WORKER_LOST_AFTER="60")
    release = tmp_path / "release"

    def held(actor: str, n: int) -> tuple[str, Path, Path]:
        started, marker = tmp_path / f"{actor}-{n}.started", tmp_path / f"{actor}-{n}.ran"
        job_id = dispatch(actor, {"started": str(started), "release": str(release), "marker": str(marker)})
        return job_id, started, marker

    in_hand = [held("safe_hold", 1), held("safe_hold", 2), held("hold", 1), held("hold", 2)]
    # Prefetched behind them, not started: the worker holds these unacknowledged.
    waiting = {dispatch("echo", {"marker": str(tmp_path / f"echo-{n}")}): tmp_path / f"echo-{n}" for n in range(4)}
    wait_for(lambda: all(started.exists() for _, started, _ in in_hand), what="four jobs running")
    assert {fresh(job_id).status for job_id, _, _ in in_hand} == {"running"}

    first.kill()
    spawn_worker(WCH_WORKER_LOST_AFTER="60")
    for job_id, marker in waiting.items():
        wait_status(job_id, "succeeded")
        assert ran(marker) == ["ran"]
    assert {fresh(job_id).status for job_id, _, _ in in_hand} == {"running"}, "left to the lifeline"

    ended = {"retried": 0, "failed": 0}

    def lifeline_ended_all() -> bool:
        rescued = lifeline.rescue(rescue_after=600, worker_lost_after=2, max_broker_delay=2)
        ended["retried"] += rescued.retried
        ended["failed"] += rescued.failed
        db.session.rollback()
        return sum(ended.values()) >= 4

    wait_for(lifeline_ended_all, timeout=30, interval=0.5, what="the lifeline to end the dead worker's jobs")
    assert ended == {"retried": 2, "failed": 2}
    release.touch()

    dead_worker = None
    for job_id, _, marker in in_hand[:2]:
        job = wait_status(job_id, "succeeded")
        assert [a.outcome for a in job.attempt_log] == ["interrupted", "succeeded"] and job.attempts == 2
        assert ran(marker) == ["done"], "the killed attempt never finished; the second did, once"
        dead_worker = job.attempt_log[0].worker
    for job_id, _, marker in in_hand[2:]:
        job = fresh(job_id)
        assert job.status == "failed" and job.attempts == 1
        assert job.last_error == (f"interrupted; not retried because it may have run "
                                  f"(its worker {dead_worker} stopped heart-beating)")
        assert [a.outcome for a in job.attempt_log] == ["interrupted"] and not marker.exists()


@with_env(WCH_RESCUE_AFTER="1")
def test_message_deleted_from_rabbitmq_is_published_again_by_the_lifeline_and_runs_once(
    rabbit_app, rabbitmq_url, spawn_worker, tmp_path
):
    markers = [tmp_path / f"runs-{n}" for n in range(3)]
    jobs = [dispatch("echo", {"marker": str(marker)}, unique=str(n)) for n, marker in enumerate(markers)]
    wait_for(lambda: ready_in_sync_queue(rabbitmq_url) == 3, what="RabbitMQ to hold the three jobs")
    purge_queues(rabbitmq_url)  # RabbitMQ loses them (a deleted queue, a lost node)
    spawn_worker()
    assert {fresh(job_id).status for job_id in jobs} == {"queued"}

    republished = []

    def rescue_command() -> bool:
        result = rabbit_app.test_cli_runner().invoke(args=["jobs", "rescue", "--json"])
        assert result.exit_code == 0, result.output
        republished.append(json.loads(result.output)["republished"])
        db.session.rollback()
        return sum(republished) >= 3

    wait_for(rescue_command, timeout=30, interval=0.5, what="wch jobs rescue to publish the lost jobs again")
    assert sum(republished) == 3
    for job_id, marker in zip(jobs, markers, strict=True):
        wait_status(job_id, "succeeded")
        assert ran(marker) == ["ran"]


def test_job_dispatched_with_the_key_of_a_running_job_runs_after_it_never_beside_it(
    rabbit_app, spawn_worker, tmp_path
):
    spawn_worker()  # four threads: room to run both at once if the key did not forbid it
    marker = tmp_path / "spans"
    first = dispatch("span", {"seconds": 1.5, "marker": str(marker), "label": "first"}, unique="product:7")
    wait_for(lambda: fresh(first).status == "running", what="the first sync to start")
    second = dispatch("span", {"seconds": 0.5, "marker": str(marker), "label": "second"}, unique="product:7")
    third = dispatch("span", {"seconds": 0.5, "marker": str(marker), "label": "third"}, unique="product:7")
    assert second != first and third == second, "a dispatch while one runs becomes the next job; later ones join it"

    wait_status(first, "succeeded")
    wait_status(second, "succeeded")
    spans = {label: (float(start), float(end)) for label, start, end in map(str.split, ran(marker))}
    assert list(spans) == ["first", "second"]
    assert spans["first"][1] <= spans["second"][0], f"the two syncs overlapped: {spans}"


def test_a_running_job_that_releases_its_key_lets_the_next_one_run_beside_it(rabbit_app, spawn_worker, tmp_path):
    spawn_worker()
    marker = tmp_path / "spans"
    first = dispatch("span", {"seconds": 1.5, "marker": str(marker), "label": "first"}, unique="campaign:7")
    wait_for(lambda: fresh(first).status == "running", what="the first batch to start")
    # As a campaign batch hands over to the next one: in the transaction that dispatches it.
    release_key(first)
    second = dispatch("span", {"seconds": 0.5, "marker": str(marker), "label": "second"}, unique="campaign:7")

    wait_status(first, "succeeded")
    wait_status(second, "succeeded")
    spans = {label: (float(start), float(end)) for label, start, end in map(str.split, ran(marker))}
    assert spans["second"][0] < spans["first"][1], f"the second waited for the first: {spans}"
    assert (fresh(first).dedupe_key, fresh(second).dedupe_key) == (None, "span:campaign:7")


def test_a_worker_started_while_its_database_is_away_announces_itself_once_it_is_back(rabbit_app, outage,
                                                                                     spawn_worker, tmp_path):
    outage.cut()
    try:
        worker = spawn_worker(wait=False, **outage.worker_env)
        wait_for(lambda: "ready for action" in worker.output(), what="the worker to boot without its database")
    finally:
        outage.restore()
    # Else the lifeline would take its jobs for those of a dead worker.
    wait_for(lambda: fresh_workers(), what="the worker to announce itself")
    marker = tmp_path / "ran"
    wait_status(dispatch("echo", {"marker": str(marker)}), "succeeded")
    assert ran(marker) == ["ran"]
    assert "Traceback" not in worker.output()


def fresh_workers() -> list[WorkerRow]:
    db.session.rollback()
    rows = db.session.scalars(select(WorkerRow)).all()
    db.session.rollback()
    return rows
