"""``wch carts``: cart statistics and cleanup."""

from __future__ import annotations

import io

import click
from flask import current_app
from flask.cli import with_appcontext

from wch.carts import cart_stats, cleanup_expired_carts, count_expired
from wch.commands.output import echo_json, json_option


@click.group()
def carts() -> None:
    """Carts and their cleanup."""


@carts.command()
@click.option("--trigger", default="cli", hidden=True)
@json_option
@with_appcontext
def cleanup(trigger: str, as_json: bool) -> None:
    """Delete expired carts now, in batches."""
    settings = current_app.extensions["wch"].settings
    expected = count_expired(settings.cart_expiry_hours)
    bar_output = io.StringIO() if as_json else None  # keep the JSON clean
    with click.progressbar(length=expected, label="Deleting expired carts", file=bar_output) as bar:
        run = cleanup_expired_carts(
            expiry_hours=settings.cart_expiry_hours,
            batch_size=settings.cleanup_batch_size,
            trigger=trigger,
            progress=bar.update,
        )
    if as_json:
        echo_json(run.to_dict())
    else:
        click.echo(f"deleted {run.deleted} cart(s) idle since before {run.cutoff:%Y-%m-%d %H:%M} UTC "
                   f"in {run.duration_seconds:.2f}s")


@carts.command()
@json_option
@with_appcontext
def stats(as_json: bool) -> None:
    """Carts by status, expired carts awaiting cleanup, and the last cleanup run."""
    stats = cart_stats(current_app.extensions["wch"].settings.cart_expiry_hours)
    if as_json:
        echo_json(stats)
        return
    for key in ("active", "abandoned", "completed", "expired_awaiting_cleanup"):
        click.echo(f"{key.replace('_', ' ') + ':':<26}{stats[key]}")
    last = stats["last_cleanup"]
    if last is None:
        click.echo(f"{'last cleanup:':<26}never")
    else:
        click.echo(f"{'last cleanup:':<26}{last['started_at']} ({last['trigger']}), deleted {last['deleted']}")
