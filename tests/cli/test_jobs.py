"""``wch jobs`` and ``wch workers`` on the command line: reports, actions, and clear errors that change nothing."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from tests.support.apps import run_jobs
from wch.db import db
from wch.models import Job


@pytest.fixture
def wch(app):
    runner = app.test_cli_runner()

    def invoke(*args: str):
        db.session.rollback()  # SQLite: the command needs the write lock
        result = runner.invoke(args=list(args))
        db.session.rollback()
        return result

    return invoke


def rows() -> list[tuple[str, str, int]]:
    found = [(j.id, j.status, j.attempts) for j in db.session.scalars(select(Job).order_by(Job.id))]
    db.session.rollback()
    return found


def dispatch(wch, type: str, args: str = "{}", *options: str) -> str:
    result = wch("jobs", "dispatch", type, args, *options)
    assert result.exit_code == 0, result.output
    return result.output.strip()


def test_dispatch_then_counts_list_and_show(wch):
    first = dispatch(wch, "echo", '{"value": 1}')
    dispatch(wch, "echo", '{"value": 2}')
    dispatch(wch, "echo", '{"value": 3}', "--delay", "600")
    dispatch(wch, "cleanup_carts")

    counts = wch("jobs", "counts", "--json")
    assert counts.exit_code == 0
    assert json.loads(counts.output) == {
        "echo": {"queued": 2, "scheduled": 1, "retrying": 0, "running": 0},
        "cleanup_carts": {"queued": 1, "scheduled": 0, "retrying": 0, "running": 0},
    }
    table = wch("jobs", "counts").output.splitlines()
    assert table[0].split() == ["type", "queued", "scheduled", "retrying", "running"]
    assert table[2].split() == ["cleanup_carts", "1", "0", "0", "0"]
    assert table[3].split() == ["echo", "2", "1", "0", "0"]

    listed = json.loads(wch("jobs", "list", "--type", "echo", "--json").output)
    assert len(listed) == 3 and {job["type"] for job in listed} == {"echo"}
    assert json.loads(wch("jobs", "list", "--status", "failed", "--json").output) == []
    assert first in wch("jobs", "list").output

    shown = json.loads(wch("jobs", "show", first, "--json").output)
    assert (shown["id"], shown["status"], shown["args"], shown["attempt_log"]) == (first, "queued", {"value": 1}, [])
    text = wch("jobs", "show", first).output
    assert f"id:          {first}" in text and 'args:        {"value": 1}' in text


def test_cancel_and_retry(wch):
    job_id = dispatch(wch, "echo", '{"value": 1}', "--delay", "60")

    canceled = wch("jobs", "cancel", job_id)
    assert canceled.exit_code == 0 and "canceled 1 job(s)" in canceled.output
    assert rows() == [(job_id, "canceled", 0)]

    retried = wch("jobs", "retry", job_id)
    assert retried.exit_code == 0 and "retrying 1 job(s)" in retried.output
    assert rows() == [(job_id, "queued", 0)]


def test_retry_all_failed_runs_failed_jobs_again(wch, broker, stub_worker, tmp_path):
    marker = tmp_path / "runs"
    job_id = dispatch(wch, "always_fails", json.dumps({"marker": str(marker)}))
    run_jobs(broker, stub_worker)
    assert rows() == [(job_id, "failed", 4)]
    failed = json.loads(wch("jobs", "list", "--status", "failed", "--json").output)
    assert failed[0]["last_error"] == "RuntimeError: boom" and "Traceback" in failed[0]["traceback"]

    result = wch("jobs", "retry", "--all-failed")
    assert result.exit_code == 0 and "retrying 1 job(s)" in result.output
    run_jobs(broker, stub_worker)
    assert rows() == [(job_id, "failed", 8)]
    assert len(marker.read_text().splitlines()) == 8


def test_show_masks_secrets_in_job_arguments(wch):
    job_id = dispatch(wch, "echo", json.dumps({"value": {"access_token": "EAAG1234567890abcdefghijk", "sku": "A1"}}))
    shown = wch("jobs", "show", job_id, "--json").output
    assert "EAAG1234567890abcdefghijk" not in shown
    assert json.loads(shown)["args"] == {"value": {"access_token": "[redacted]", "sku": "A1"}}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["jobs", "dispatch", "no_such_job", "{}"], "unknown job type 'no_such_job'"),
        (["jobs", "dispatch", "echo", "{value: 1}"], "ARGS is not JSON"),
        (["jobs", "dispatch", "echo", "[1, 2]"], "must be a JSON object"),
        (["jobs", "dispatch", "echo", '{"value": NaN}'], "must be JSON"),
        (["jobs", "dispatch", "echo", "{}", "--delay", "-5"], "delay must be"),
        (["jobs", "show", "no-such-id"], "no job with id no-such-id"),
        (["jobs", "retry", "no-such-id"], "no job with id no-such-id"),
        (["jobs", "cancel", "no-such-id"], "no job with id no-such-id"),
        (["jobs", "retry"], "give job ids or --all-failed"),
    ],
)
def test_bad_requests_fail_clearly_and_write_nothing(wch, args, message):
    existing = dispatch(wch, "echo", '{"value": 1}')
    result = wch(*args)
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output
    assert rows() == [(existing, "queued", 0)]


def test_retry_of_a_job_that_has_not_failed_is_refused(wch):
    queued = dispatch(wch, "echo", '{"value": 1}', "--delay", "60")
    other = dispatch(wch, "echo", '{"value": 2}', "--delay", "60")
    assert wch("jobs", "cancel", other).exit_code == 0

    # The canceled one would be retried, but the queued one cannot: nothing is changed.
    result = wch("jobs", "retry", other, queued)
    assert result.exit_code != 0
    assert f"job {queued} is queued; only failed or canceled jobs can be retried" in result.output
    assert dict((i, s) for i, s, _ in rows()) == {queued: "queued", other: "canceled"}

    again = wch("jobs", "cancel", other)
    assert again.exit_code != 0 and "only queued or retrying jobs can be canceled" in again.output


def test_unique_dispatch_on_the_command_line_returns_the_pending_job(wch):
    first = dispatch(wch, "echo", '{"value": 1}', "--unique")
    second = dispatch(wch, "echo", '{"value": 1}', "--unique")
    assert first == second
    assert db.session.scalar(select(func.count()).select_from(Job)) == 1


def test_workers_when_none_has_announced_itself(wch):
    assert json.loads(wch("workers", "--json").output) == []
    assert "no worker has announced itself" in wch("workers").output


def test_retry_of_a_unique_job_whose_successor_is_pending_is_refused(wch):
    first = dispatch(wch, "echo", '{"value": 1}', "--unique", "--delay", "60")
    assert wch("jobs", "cancel", first).exit_code == 0
    second = dispatch(wch, "echo", '{"value": 1}', "--unique", "--delay", "60")
    assert second != first

    result = wch("jobs", "retry", first)
    assert result.exit_code != 0
    assert f"job {second} with the same dedupe key is pending" in result.output
    assert dict((i, s) for i, s, _ in rows()) == {first: "canceled", second: "queued"}


def test_rescue_reports_what_the_lifeline_did(wch):
    result = wch("jobs", "rescue", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"republished": 0, "retried": 0, "failed": 0}
    assert "published again 0 job(s)" in wch("jobs", "rescue").output


def test_fail_ends_a_running_job_whose_worker_is_gone_and_refuses_others(wch):
    from datetime import timedelta

    from sqlalchemy import update

    from wch.db import utcnow

    stuck = dispatch(wch, "echo", '{"value": 1}')
    queued = dispatch(wch, "echo", '{"value": 2}', "--delay", "60")
    db.session.execute(update(Job).where(Job.id == stuck).values(
        status="running", attempts=1, worker="gone-host:1", started_at=utcnow() - timedelta(minutes=5)))
    db.session.commit()

    refused = wch("jobs", "fail", stuck, queued)
    assert refused.exit_code != 0 and f"job {queued} is queued" in refused.output
    assert dict((i, s) for i, s, _ in rows()) == {stuck: "running", queued: "queued"}, "nothing was changed"

    result = wch("jobs", "fail", stuck)
    assert result.exit_code == 0, result.output
    shown = json.loads(wch("jobs", "show", stuck, "--json").output)
    assert shown["status"] == "failed" and "ended by staff" in shown["last_error"]
    assert [a["outcome"] for a in shown["attempt_log"]] == ["interrupted"]
