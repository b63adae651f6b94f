"""``wch carts``: cart statistics, cleanup, and abandoned-cart reminders."""

from __future__ import annotations

import io

import click
from flask.cli import with_appcontext

from wch import runtime
from wch.carts import reminders
from wch.carts.cleanup import cleanup_expired_carts, count_expired
from wch.carts.reminder_settings import ReminderSettingsError
from wch.carts.stats import cart_stats
from wch.cli.audit import audited
from wch.cli.output import echo_json, json_option, refusals
from wch.db import read_only, transaction


@click.group()
def carts() -> None:
    """Carts and their cleanup."""


@carts.command()
@click.option("--trigger", default="cli", hidden=True)
@json_option
@with_appcontext
def cleanup(trigger: str, as_json: bool) -> None:
    """Delete expired carts now, in batches."""
    settings = runtime.settings()
    with read_only():
        expected = count_expired(settings.cart_expiry_hours, settings.recovery_window_hours)
    bar_output = io.StringIO() if as_json else None  # keep the JSON clean
    with transaction():
        audited("carts.cleanup", "carts", trigger=trigger)
    with click.progressbar(length=expected, label="Deleting expired carts", file=bar_output) as bar:
        run = cleanup_expired_carts(
            expiry_hours=settings.cart_expiry_hours,
            recovery_window_hours=settings.recovery_window_hours,
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
    with read_only():
        settings = runtime.settings()
        stats = cart_stats(settings.cart_expiry_hours, settings.recovery_window_hours)
    if as_json:
        echo_json(stats)
        return
    for key in ("active", "abandoned", "completed", "expired_awaiting_cleanup", "reminded", "recovered",
                "recovered_revenue"):
        click.echo(f"{key.replace('_', ' ') + ':':<26}{stats[key]}")
    last = stats["last_cleanup"]
    if last is None:
        click.echo(f"{'last cleanup:':<26}never")
    else:
        click.echo(f"{'last cleanup:':<26}{last['started_at']} ({last['trigger']}), deleted {last['deleted']}")


@carts.command()
@json_option
@with_appcontext
def remind(as_json: bool) -> None:
    """Dispatch abandoned-cart reminders now for every cart idle past the delay."""
    with refusals(ReminderSettingsError):
        count = reminders.scan(cart_expiry_hours=runtime.settings().cart_expiry_hours)
    if as_json:
        echo_json({"dispatched": count})
    else:
        click.echo(f"dispatched {count} reminder job(s)")
