"""``wch messages``: messages whose fate is in doubt, and the sending number's limits."""

from __future__ import annotations

import getpass
from datetime import timedelta

import click
from flask.cli import with_appcontext

from wch import runtime
from wch.cli.output import echo_json, echo_table, json_option, refusals
from wch.db import read_only, transaction
from wch.messaging import standing, unsettled
from wch.whatsapp import DEFAULT_SENDER, WhatsAppError, shared_client


@click.group("messages")
def messages_cli() -> None:
    """Customer messages in doubt, and WhatsApp's limits on the sending number."""


@messages_cli.command()
@click.option("--older-than", type=click.FloatRange(min=0), help="Seconds in doubt (default: WCH_UNCERTAIN_AFTER).")
@json_option
@with_appcontext
def uncertain(older_than: float | None, as_json: bool) -> None:
    """Messages that may or may not have reached the customer, still unsettled by Meta's status webhook."""
    seconds = runtime.settings().uncertain_after if older_than is None else older_than
    with read_only():
        rows = [row.to_dict() for row in unsettled.list_unsettled(older_than=timedelta(seconds=seconds))]
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo(f"nothing in doubt for more than {seconds:g} s")
        return
    keys = ("ref", "kind", "about", "phone", "since", "error")
    echo_table(keys, [[row[k] for k in keys] for row in rows])
    click.echo("settle one with: wch messages settle REF --sent | --not-sent")


@messages_cli.command()
@click.argument("ref")
@click.option("--sent/--not-sent", default=None, help="The customer has it / does not (then it is sent again).")
@with_appcontext
def settle(ref: str, sent: bool | None) -> None:
    """Decide a message in doubt, by its REF from `wch messages uncertain` (message:ID or recipient:ID)."""
    if sent is None:
        raise click.UsageError("say --sent or --not-sent")
    with refusals(unsettled.SettleError), transaction():
        click.echo(unsettled.settle(ref, sent=sent, by=f"cli:{getpass.getuser()}"))


@messages_cli.command("limits")
@click.option("--refresh", is_flag=True, help="Ask Meta's Graph API for the quality rating and messaging limit.")
@click.option("--forget", is_flag=True, help="Drop the limit Meta last reported and use WCH_MESSAGING_LIMIT again.")
@json_option
@with_appcontext
def limits_(refresh: bool, forget: bool, as_json: bool) -> None:
    """The sending number's messaging limit, customers messaged in the last 24 h, quality and account standing."""
    settings = runtime.settings()
    sender = settings.whatsapp_phone_number_id or DEFAULT_SENDER
    if refresh:
        with refusals(WhatsAppError):
            answer = shared_client(settings).phone_number_standing()
        with transaction():
            standing.apply_api_standing(sender, answer)
    if forget:
        with transaction():
            standing.forget_learned_limit(sender)
    with read_only():
        info = standing.current(sender, configured=settings.messaging_limit).to_dict()
    if as_json:
        echo_json(info)
        return
    click.echo(f"messaging limit:   {info['limit']} customers / 24 h (from {info['limit_source']})")
    left = f", {info['left']:,} left" if info["left"] is not None else ""
    click.echo(f"messaged (24 h):   {info['used']:,}{left}")
    click.echo(f"quality rating:    {info['quality_rating'] or 'unknown (wch messages limits --refresh asks Meta)'}")
    click.echo(f"flagged by Meta:   {'yes: running campaigns were paused' if info['flagged'] else 'no'}")
    if info["last_event"]:
        click.echo(f"last event:        {info['last_event']} ({info['last_event_detail']})")
