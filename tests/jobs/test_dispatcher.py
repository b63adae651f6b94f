"""The dispatcher and the ledger middleware on the StubBroker: fast, in one process."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from tests.support.apps import run_jobs
from tests.support.jobs import copy_of
from wch.db import db
from wch.jobs import dispatcher, queries
from wch.models import Job, JobAttempt


def job_count() -> int:
    return db.session.scalar(select(func.count()).select_from(Job))


def test_dispatched_job_runs_and_keeps_its_result(app, broker, stub_worker):
    job = dispatcher.dispatch("echo", {"value": {"answer": 42}})
    db.session.commit()
    run_jobs(broker, stub_worker)

    db.session.expire_all()
    assert queries.status(job.id) == "succeeded"
    assert queries.result(job.id) == {"answer": 42}
    job = db.session.get(Job, job.id)
    assert job.attempts == 1 and job.started_at <= job.finished_at
    assert [a.outcome for a in job.attempt_log] == ["succeeded"]


def test_failing_job_is_retried_on_the_schedule_then_fails_with_its_traceback(app, broker, stub_worker, tmp_path):
    marker = tmp_path / "runs"
    job = dispatcher.dispatch("always_fails", {"message": "card declined", "marker": str(marker)})
    db.session.commit()
    run_jobs(broker, stub_worker)

    db.session.expire_all()
    job = db.session.get(Job, job.id)
    assert job.status == "failed"
    assert job.attempts == 4 == len(marker.read_text().splitlines())
    assert job.last_error == "RuntimeError: card declined"
    assert "Traceback" in job.traceback and "card declined" in job.traceback
    assert [a.outcome for a in job.attempt_log] == ["retrying", "retrying", "retrying", "failed"]
    assert [j.id for j in queries.failed(10)] == [job.id]


def test_error_that_retrying_cannot_fix_fails_at_once(app, broker, stub_worker, tmp_path):
    marker = tmp_path / "runs"
    job = dispatcher.dispatch("fails_for_good", {"marker": str(marker)})
    db.session.commit()
    run_jobs(broker, stub_worker)

    db.session.expire_all()
    assert queries.status(job.id) == "failed"
    assert len(marker.read_text().splitlines()) == 1


def test_retry_runs_a_failed_job_again(app, broker, stub_worker, tmp_path):
    marker = tmp_path / "runs"
    job = dispatcher.dispatch("fail_then_succeed", {"marker": str(marker), "failures": 4})
    db.session.commit()
    run_jobs(broker, stub_worker)
    db.session.expire_all()
    assert queries.status(job.id) == "failed"

    dispatcher.retry(job.id)
    db.session.commit()
    run_jobs(broker, stub_worker)

    db.session.expire_all()
    assert queries.status(job.id) == "succeeded"
    assert queries.result(job.id) == 5
    assert db.session.get(Job, job.id).attempts == 5


def test_canceled_job_never_runs(app, broker, stub_worker, tmp_path):
    marker = tmp_path / "runs"
    job = dispatcher.dispatch("echo", {"marker": str(marker)}, delay=0.3)
    db.session.commit()
    dispatcher.cancel(job.id)
    db.session.commit()
    run_jobs(broker, stub_worker)

    db.session.expire_all()
    assert queries.status(job.id) == "canceled"
    assert db.session.get(Job, job.id).attempts == 0
    assert not marker.exists()


def test_unique_dispatch_returns_the_pending_job(app):
    first = dispatcher.dispatch("echo", {"value": 1}, unique=True)
    second = dispatcher.dispatch("echo", {"value": 1}, unique=True)
    other = dispatcher.dispatch("echo", {"value": 2}, unique=True)
    keyed = dispatcher.dispatch("echo", {"value": 3}, unique="product:7")
    same_key = dispatcher.dispatch("echo", {"value": 4}, unique="product:7")
    db.session.commit()

    assert first.id == second.id != other.id
    assert keyed.id == same_key.id
    assert job_count() == 3
    assert queries.is_scheduled("echo", {"value": 1})
    assert not queries.is_scheduled("echo", {"value": 99})


def test_unique_dispatch_adds_a_new_job_once_the_first_has_run(app, broker, stub_worker):
    first = dispatcher.dispatch("echo", {"value": 1}, unique=True)
    db.session.commit()
    run_jobs(broker, stub_worker)
    second = dispatcher.dispatch("echo", {"value": 1}, unique=True)
    db.session.commit()
    assert first.id != second.id


def test_pending_counts_by_type(app):
    dispatcher.dispatch("echo", {"value": 1})
    dispatcher.dispatch("echo", {"value": 2})
    dispatcher.dispatch("echo", {"value": 3}, delay=120)
    dispatcher.dispatch("cleanup_carts")
    db.session.commit()

    counts = queries.pending_counts()
    assert counts["echo"] == {"queued": 2, "scheduled": 1, "retrying": 0, "running": 0}
    assert counts["cleanup_carts"]["queued"] == 1


def test_dispatch_many_creates_and_publishes_every_job_and_they_run(app, broker, stub_worker):
    ids = dispatcher.dispatch_many("echo", [{"value": i} for i in range(2500)])
    db.session.commit()
    assert len(set(ids)) == 2500
    run_jobs(broker, stub_worker)

    results = dict(db.session.execute(select(Job.id, Job.result).where(Job.status == "succeeded")).all())
    assert sorted(results[i] for i in ids) == list(range(2500))


def test_dispatch_many_with_unique_keys_keeps_the_jobs_already_pending(app):
    pending = dispatcher.dispatch("echo", {"value": 1}, unique="cart:1")
    ids = dispatcher.dispatch_many("echo", [{"value": 1}, {"value": 2}, {"value": 2}, {"value": 3}],
                                   unique=lambda args: f"cart:{args['value']}", delay=60)
    db.session.commit()

    assert len(ids) == 2 and pending.id not in ids, "cart 1's job was pending; cart 2's is dispatched once"
    assert job_count() == 3
    keys = db.session.scalars(select(Job.dedupe_key).where(Job.id.in_(ids))).all()
    assert sorted(keys) == ["echo:cart:2", "echo:cart:3"]
    assert queries.pending_counts()["echo"] == {"queued": 1, "scheduled": 2, "retrying": 0, "running": 0}


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: dispatcher.dispatch("no_such_job", {}), "unknown job type 'no_such_job'"),
        (lambda: dispatcher.dispatch("echo", {"value": object()}), "must be JSON"),
        (lambda: dispatcher.dispatch("echo", {"value": float("nan")}), "must be JSON"),
        (lambda: dispatcher.dispatch("echo", [1, 2]), "JSON object"),
        (lambda: dispatcher.dispatch_many("echo", [{"value": 1}, {"value": float("inf")}]), "must be JSON"),
        (lambda: dispatcher.dispatch_many("echo", [{}], delay=-1), "delay must be"),
        (lambda: queries.is_scheduled("no_such_job", {}), "unknown job type"),
    ],
)
def test_bad_dispatch_is_refused_and_writes_nothing(app, call, message):
    with pytest.raises(dispatcher.DispatchError, match=message):
        call()
    db.session.commit()
    assert job_count() == 0


def test_retry_of_a_job_that_has_not_failed_is_refused(app):
    job = dispatcher.dispatch("echo", {"value": 1})
    db.session.commit()
    with pytest.raises(dispatcher.DispatchError, match="only failed or canceled jobs can be retried"):
        dispatcher.retry(job.id)
    assert queries.status(job.id) == "queued"
    with pytest.raises(dispatcher.JobNotFound):
        dispatcher.retry("no-such-id")


def test_result_of_an_unfinished_job_is_refused(app):
    job = dispatcher.dispatch("echo", {"value": 1})
    db.session.commit()
    with pytest.raises(dispatcher.DispatchError, match="only succeeded jobs have a result"):
        queries.result(job.id)


def test_rolled_back_dispatch_is_never_published(app, broker):
    dispatcher.dispatch("echo", {"value": 1})
    db.session.rollback()
    assert job_count() == 0
    assert broker.queues["sync"].qsize() == 0


def test_message_sent_without_the_dispatcher_gets_a_ledger_row(app, broker, stub_worker):
    import tests.support.jobs

    message = tests.support.jobs.echo.send(value="direct")
    run_jobs(broker, stub_worker)

    db.session.expire_all()
    job = db.session.get(Job, message.message_id)
    assert job is not None and job.type == "echo" and job.status == "succeeded"
    assert job.args == {"value": "direct"} and job.result == "direct"


def test_a_second_copy_of_a_finished_job_is_not_run(app, broker, stub_worker, tmp_path):
    marker = tmp_path / "runs"
    job = dispatcher.dispatch("echo", {"marker": str(marker)})
    db.session.commit()
    run_jobs(broker, stub_worker)

    db.session.expire_all()
    broker.enqueue(copy_of(db.session.get(Job, job.id), attempt=0).message())
    run_jobs(broker, stub_worker)
    assert len(marker.read_text().splitlines()) == 1
    assert db.session.scalar(select(func.count()).select_from(JobAttempt)) == 1


def test_job_args_round_trip_as_json(app):
    args = {"ids": [1, 2], "note": "çà", "nested": {"ok": True}}
    job = dispatcher.dispatch("echo", {"value": args})
    db.session.commit()
    db.session.expire_all()
    assert json.dumps(db.session.get(Job, job.id).args, sort_keys=True) == json.dumps({"value": args}, sort_keys=True)
