"""``wch workers``: the worker processes that have announced themselves."""

from __future__ import annotations

from datetime import timedelta

import click
from flask.cli import with_appcontext
from sqlalchemy import select

from wch.commands.output import echo_json, echo_table, json_option
from wch.db import db, utcnow
from wch.models import WorkerProcess

ALIVE_WITHIN = timedelta(minutes=1)


@click.command()
@json_option
@with_appcontext
def workers(as_json: bool) -> None:
    """Worker processes and their last heartbeat."""
    rows = list(db.session.scalars(select(WorkerProcess).order_by(WorkerProcess.host, WorkerProcess.pid)))
    now = utcnow()
    if as_json:
        echo_json([w.to_dict() | {"alive": now - w.heartbeat_at < ALIVE_WITHIN} for w in rows])
        return
    if not rows:
        click.echo("no worker has announced itself; start one with: dramatiq wch.actors")
        return
    table = [
        [w.host, w.pid, ",".join(w.queues), w.threads, f"{(now - w.heartbeat_at).total_seconds():.0f}s ago",
         "alive" if now - w.heartbeat_at < ALIVE_WITHIN else "silent"]
        for w in rows
    ]
    echo_table(["host", "pid", "queues", "threads", "heartbeat", "state"], table)
