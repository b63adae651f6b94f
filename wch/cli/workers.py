"""``wch workers``: the worker processes that have announced themselves."""

from __future__ import annotations

import click
from flask.cli import with_appcontext
from sqlalchemy import select

from wch import runtime
from wch.cli.output import echo_json, echo_table, json_option
from wch.db import db, read_only, utcnow
from wch.models import WorkerProcess


@click.command()
@json_option
@with_appcontext
def workers(as_json: bool) -> None:
    """Worker processes and their last heartbeat."""
    with read_only():
        rows = list(db.session.scalars(select(WorkerProcess).order_by(WorkerProcess.host, WorkerProcess.pid)))
    now = utcnow()
    lost_after = runtime.settings().worker_lost_after
    if as_json:
        echo_json([w.to_dict() | {"alive": w.is_alive(now, lost_after=lost_after)} for w in rows])
        return
    if not rows:
        click.echo("no worker has announced itself; start one with: dramatiq wch.actors")
        return
    table = [
        [w.host, w.pid, ",".join(w.queues), w.threads, f"{(now - w.heartbeat_at).total_seconds():.0f}s ago",
         "alive" if w.is_alive(now, lost_after=lost_after) else "silent"]
        for w in rows
    ]
    echo_table(["host", "pid", "queues", "threads", "heartbeat", "state"], table)
