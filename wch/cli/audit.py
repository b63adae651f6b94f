"""``wch audit``: the audit trail; and :func:`audited`, how commands record what they change."""

from __future__ import annotations

import getpass
from datetime import UTC, datetime, timedelta
from typing import Any

import click
from flask.cli import with_appcontext

from wch.cli.output import echo_json, echo_table, json_option
from wch.db import read_only
from wch.staff import audit as trail


def audited(action: str, target: str | None = None, **details: Any) -> None:
    """Record ``action`` by the operating-system user running the command. The caller commits."""
    trail.record(action, actor=f"cli:{_os_user()}", target=target, address="cli", details=details)


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


@click.command()
@click.option("--action", type=click.Choice(trail.ACTIONS), help="Only this kind of action.")
@click.option("--actor", help="Only what this staff member (e-mail, or cli:<user>) did.")
@click.option("--days", type=click.IntRange(1, 3650), help="Only the last N days.")
@click.option("--limit", type=click.IntRange(1, 100_000), default=100, show_default=True)
@json_option
@with_appcontext
def audit(action: str | None, actor: str | None, days: int | None, limit: int, as_json: bool) -> None:
    """Who changed what, when and from where: newest first."""
    since = datetime.now(UTC) - timedelta(days=days) if days else None
    with read_only():
        rows = [entry.to_dict() for entry in trail.entries(action=action, actor=actor, since=since, limit=limit)]
    if as_json:
        echo_json(rows)
        return
    echo_table(["when (UTC)", "who", "action", "on", "from"],
               [[row["at"][:19].replace("T", " "), row["actor"], row["action"], row["target"] or "",
                 row["address"] or ""] for row in rows])
