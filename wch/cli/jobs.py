"""``wch jobs``: inspect, retry, cancel, end and dispatch jobs; relay the outbox; run the lifeline."""

from __future__ import annotations

import json

import click
from flask.cli import with_appcontext
from sqlalchemy import select

from wch import runtime
from wch.cli.audit import audited
from wch.cli.output import echo_json, echo_table, json_option, refusals
from wch.db import db, read_only, transaction
from wch.jobs import dispatcher, lifeline, outbox
from wch.jobs.queries import pending_counts
from wch.models import Job
from wch.redact import redact_value


@click.group()
def jobs() -> None:
    """Inspect and manage background jobs."""


@jobs.command()
@json_option
@with_appcontext
def counts(as_json: bool) -> None:
    """Pending and running jobs by type."""
    with read_only():
        counts = pending_counts()
    if as_json:
        echo_json(counts)
        return
    rows = [[t, c["queued"], c["scheduled"], c["retrying"], c["running"]] for t, c in sorted(counts.items())]
    echo_table(["type", "queued", "scheduled", "retrying", "running"], rows)


@jobs.command("list")
@click.option("--status", help="Only jobs in this status (queued, running, retrying, succeeded, failed, canceled).")
@click.option("--type", "type_", help="Only jobs of this type.")
@click.option("--limit", default=20, show_default=True)
@json_option
@with_appcontext
def list_jobs(status: str | None, type_: str | None, limit: int, as_json: bool) -> None:
    """Jobs, newest first."""
    query = select(Job).order_by(Job.enqueued_at.desc()).limit(limit)
    if status:
        query = query.where(Job.status == status)
    if type_:
        query = query.where(Job.type == type_)
    with read_only():
        found = list(db.session.scalars(query))
        if as_json:
            echo_json([_public(job.to_dict()) for job in found])
            return
        rows = [[j.id, j.type, j.status, j.attempts, _when(j.enqueued_at), (j.last_error or "")[:60]] for j in found]
    echo_table(["id", "type", "status", "attempts", "enqueued", "last error"], rows)


@jobs.command()
@click.argument("job_id")
@json_option
@with_appcontext
def show(job_id: str, as_json: bool) -> None:
    """One job with every attempt."""
    with read_only():
        job = _get(job_id)
        details = _public(job.to_dict()) | {"attempt_log": [a.to_dict() for a in job.attempt_log]}
    if as_json:
        echo_json(details)
        return
    for key in ("id", "type", "queue", "status", "attempts", "enqueued_at", "eta", "started_at", "finished_at"):
        click.echo(f"{key + ':':<13}{details[key] or '-'}")
    click.echo(f"{'args:':<13}{json.dumps(details['args'])}")
    if details["result"] is not None:
        click.echo(f"{'result:':<13}{json.dumps(details['result'])}")
    for attempt in details["attempt_log"]:
        click.echo(f"\nattempt {attempt['number']} on {attempt['worker']}: {attempt['outcome'] or 'running'}")
        if attempt["error"]:
            click.echo(attempt["traceback"] or attempt["error"])


@jobs.command()
@click.argument("job_ids", nargs=-1)
@click.option("--all-failed", is_flag=True, help="Retry every failed job (up to --limit).")
@click.option("--type", "type_", help="With --all-failed: only this type.")
@click.option("--limit", default=1000, show_default=True)
@with_appcontext
def retry(job_ids: tuple[str, ...], all_failed: bool, type_: str | None, limit: int) -> None:
    """Run failed jobs again."""
    if all_failed == bool(job_ids):
        raise click.UsageError("give job ids or --all-failed")
    with refusals(dispatcher.DispatchError), transaction():
        retried = (dispatcher.retry_failed(type_, limit=limit) if all_failed
                   else [dispatcher.retry(i).id for i in job_ids])
        for job_id in retried:
            audited("job.retry", f"job:{job_id}", via="all failed" if all_failed else "by id")
    click.echo(f"retrying {len(retried)} job(s)")


@jobs.command()
@click.argument("job_ids", nargs=-1, required=True)
@with_appcontext
def cancel(job_ids: tuple[str, ...]) -> None:
    """Cancel queued or retrying jobs."""
    _each(dispatcher.cancel, job_ids, audit_as="job.cancel")
    click.echo(f"canceled {len(job_ids)} job(s)")


@jobs.command("fail")
@click.argument("job_ids", nargs=-1, required=True)
@with_appcontext
def fail_stuck(job_ids: tuple[str, ...]) -> None:
    """Fail running jobs whose worker is gone (silent past WCH_WORKER_LOST_AFTER), so they can be retried."""
    _each(dispatcher.end_stuck, job_ids, audit_as="job.fail")
    click.echo(f"failed {len(job_ids)} job(s)")


@jobs.command("dispatch")
@click.argument("type_", metavar="TYPE")
@click.argument("args", default="{}")
@click.option("--delay", type=float, help="Seconds to wait before running it.")
@click.option("--unique", is_flag=True, help="Return the pending job with the same arguments instead of adding one.")
@with_appcontext
def dispatch_job(type_: str, args: str, delay: float | None, unique: bool) -> None:
    """Dispatch a job of TYPE with ARGS, a JSON object of keyword arguments."""
    try:
        values = json.loads(args)
    except json.JSONDecodeError as error:
        raise click.ClickException(f"ARGS is not JSON: {error}") from None
    with refusals(dispatcher.DispatchError), transaction():
        job_id = dispatcher.dispatch(type_, values, delay=delay, unique=unique).id
    click.echo(job_id)


@jobs.command()
@with_appcontext
def relay() -> None:
    """Publish jobs that could not reach RabbitMQ when they were dispatched."""
    click.echo(f"published {outbox.relay()} job(s)")


@jobs.command()
@json_option
@with_appcontext
def rescue(as_json: bool) -> None:
    """Run the lifeline now: publish again jobs whose message was lost, end running jobs whose worker is gone."""
    settings = runtime.settings()
    rescued = lifeline.rescue(rescue_after=settings.rescue_after, worker_lost_after=settings.worker_lost_after,
                              max_broker_delay=settings.max_broker_delay).to_dict()
    if as_json:
        echo_json(rescued)
        return
    click.echo(f"published again {rescued['republished']} job(s) never claimed; of the running jobs whose "
               f"worker is gone, retried {rescued['retried']} and failed {rescued['failed']}")


def _each(action, job_ids: tuple[str, ...], *, audit_as: str) -> None:
    """Apply ``action`` to every job, each with its audit entry, in one transaction: one refusal changes nothing."""
    with refusals(dispatcher.DispatchError), transaction():
        for job_id in job_ids:
            action(job_id)
            audited(audit_as, f"job:{job_id}", via="by id")


def _get(job_id: str) -> Job:
    job = db.session.get(Job, job_id)
    if job is None:
        raise click.ClickException(f"no job with id {job_id}")
    return job


def _public(details: dict) -> dict:
    """Job details with secret-looking values masked."""
    return details | {
        "args": redact_value(details["args"]),
        "result": redact_value(details.get("result")),
    }


def _when(value) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"
