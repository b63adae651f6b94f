"""``wch campaigns``: create, control and watch broadcast campaigns."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import click
from flask.cli import with_appcontext

from wch import runtime
from wch.cli.audit import audited
from wch.cli.output import echo_json, echo_table, json_option, refusals
from wch.db import read_only, transaction
from wch.messaging import campaigns, limits
from wch.models import CampaignStatus
from wch.whatsapp import DEFAULT_SENDER

FINISHED = (CampaignStatus.COMPLETED.value, CampaignStatus.CANCELLED.value, CampaignStatus.FAILED.value)


@click.group("campaigns")
def campaigns_cli() -> None:
    """Broadcast campaigns."""


@campaigns_cli.command()
@click.option("--name", required=True, help="What staff call the campaign.")
@click.option("--template", "template_name", help="Approved template name.")
@click.option("--language", default="en_US", show_default=True, help="The template's language code.")
@click.option("--param", "parameters", multiple=True, help="A template body parameter, in order; may use {name}.")
@click.option("--text", help="A free-form text instead of a template (reaches only customers in the 24 h window).")
@click.option("--csv", "csv_file", type=click.File("r", encoding="utf-8-sig"), help="CSV of phone[,name] rows.")
@click.option("--all-contacts", is_flag=True, help="Every contact who has not opted out.")
@json_option
@with_appcontext
def create(name, template_name, language, parameters, text, csv_file, all_contacts, as_json) -> None:
    """Create a draft campaign and print its id; bad CSV rows are listed on stderr."""
    with refusals(campaigns.CampaignError), transaction():
        result = campaigns.create_campaign(
            name=name, template_name=template_name, template_language=language, template_parameters=parameters,
            text=text, all_contacts=all_contacts, csv_file=csv_file,
        )
        campaign_id, total = result.campaign.id, result.campaign.total
        audited("campaign.create", f"campaign:{campaign_id}", name=result.campaign.name, recipients=total,
                audience="all contacts" if all_contacts else "csv")
    bad = [{"line": b.line, "value": b.value, "reason": b.reason} for b in result.bad_rows]
    if as_json:
        echo_json({"id": campaign_id, "total": total, "bad_count": result.bad_count, "bad_rows": bad})
        return
    for row in bad:
        click.echo(f"line {row['line']}: {row['value']!r} left out: {row['reason']}", err=True)
    if result.bad_count > len(bad):
        click.echo(f"... and {result.bad_count - len(bad)} more bad row(s)", err=True)
    if result.bad_count:
        click.echo(f"{total} recipient(s), {result.bad_count} row(s) left out", err=True)
    click.echo(_plan(campaign_id)["text"], err=True)
    click.echo(campaign_id)


@campaigns_cli.command()
@click.argument("campaign_id", type=int)
@click.option("--at", "start_at", type=click.DateTime(), help="Start later, at this UTC time.")
@with_appcontext
def start(campaign_id: int, start_at: datetime | None) -> None:
    """Start sending a draft campaign (now, or --at a UTC time)."""
    at = start_at.replace(tzinfo=UTC) if start_at else None
    max_delay = runtime.settings().max_broker_delay
    status = _change(lambda: campaigns.start_campaign(campaign_id, at=at, max_broker_delay=max_delay).status,
                     action="campaign.start", campaign_id=campaign_id, at=at.isoformat() if at else "now")
    click.echo(f"campaign {campaign_id} is {status}")


@campaigns_cli.command()
@click.argument("campaign_id", type=int)
@with_appcontext
def pause(campaign_id: int) -> None:
    """Pause a sending or scheduled campaign before its next recipient (sends under way still finish)."""
    _change(campaigns.pause_campaign, campaign_id, action="campaign.pause", campaign_id=campaign_id)
    click.echo(f"campaign {campaign_id} is paused")


@campaigns_cli.command()
@click.argument("campaign_id", type=int)
@with_appcontext
def resume(campaign_id: int) -> None:
    """Carry on sending a paused campaign."""
    _change(campaigns.resume_campaign, campaign_id, action="campaign.resume", campaign_id=campaign_id)
    click.echo(f"campaign {campaign_id} is sending")


@campaigns_cli.command()
@click.argument("campaign_id", type=int)
@with_appcontext
def cancel(campaign_id: int) -> None:
    """Cancel a campaign; recipients not yet sent are skipped."""
    _change(campaigns.cancel_campaign, campaign_id, action="campaign.cancel", campaign_id=campaign_id)
    click.echo(f"campaign {campaign_id} is cancelled")


@campaigns_cli.command("retry-failed")
@click.argument("campaign_id", type=int)
@with_appcontext
def retry_failed(campaign_id: int) -> None:
    """Send again to the recipients whose message failed."""
    retried = _change(campaigns.retry_failed, campaign_id, action="campaign.retry_failed", campaign_id=campaign_id)
    click.echo(f"{retried} recipient(s) will be retried")


@campaigns_cli.command()
@click.argument("campaign_id", type=int)
@json_option
@with_appcontext
def plan(campaign_id: int, as_json: bool) -> None:
    """How the recipients still to send spread over the days WhatsApp's messaging limit allows."""
    _progress(campaign_id)  # refuses an unknown campaign
    info = _plan(campaign_id)
    if as_json:
        echo_json(info)
        return
    click.echo(info["text"])
    click.echo(f"(messaging limit {info['limit']} customers / 24 h; {info['used_24h']:,} messaged in the last 24 h)")


@campaigns_cli.command()
@click.argument("campaign_id", type=int)
@click.option("--watch/--no-watch", default=True, help="Follow a sending campaign with a live progress bar.")
@json_option
@with_appcontext
def show(campaign_id: int, watch: bool, as_json: bool) -> None:
    """A campaign's counters; while it sends, a live progress bar (--json: one snapshot)."""
    info = _progress(campaign_id)
    if as_json:
        echo_json(info)
        return
    _print_summary(info)
    if info["status"] not in FINISHED:
        click.echo(f"  plan: {_plan(campaign_id)['text']}")
    if not watch or info["status"] in FINISHED or info["status"] == CampaignStatus.DRAFT.value:
        return
    with click.progressbar(length=info["total"], label="settled", show_pos=True) as bar:
        bar.update(info["settled"])
        while info["status"] not in FINISHED and info["status"] != CampaignStatus.PAUSED.value:
            time.sleep(1.0)
            info = _progress(campaign_id)
            bar.update(info["settled"] - bar.pos)
    _print_summary(info)


@campaigns_cli.command("list")
@json_option
@with_appcontext
def list_(as_json: bool) -> None:
    """Campaigns, newest first."""
    with read_only():
        rows = [c.to_dict() for c in campaigns.list_campaigns()]
    if as_json:
        echo_json(rows)
        return
    keys = ("id", "name", "status", "total", "sent", "delivered", "read", "failed", "skipped")
    echo_table(keys, [[row[k] for k in keys] for row in rows])


def _print_summary(info: dict) -> None:
    reason = f" ({info['status_reason']})" if info.get("status_reason") else ""
    click.echo(f"campaign {info['id']} {info['name']!r}: {info['status']}{reason}")
    click.echo(f"  total {info['total']}  sent {info['sent']}  delivered {info['delivered']}  read {info['read']}"
               f"  failed {info['failed']}  skipped {info['skipped']}  pending {info['pending']}"
               f"  needs attention {info['needs_attention']}")


def _progress(campaign_id: int) -> dict:
    # Each look in a read of its own: the watch sleeps between them, holding nothing.
    with refusals(campaigns.CampaignError), read_only():
        return campaigns.progress(campaign_id)


def _plan(campaign_id: int) -> dict:
    settings = runtime.settings()
    with read_only():
        return limits.plan_campaign(campaign_id, sender=settings.whatsapp_phone_number_id or DEFAULT_SENDER,
                                    configured=settings.messaging_limit)


def _change(function, *args, action: str, campaign_id: int, **details):
    """Run one lifecycle change and its audit entry in their own transaction; a refusal is one clear line."""
    with refusals(campaigns.CampaignError), transaction():
        outcome = function(*args)
        audited(action, f"campaign:{campaign_id}", **details)
        return outcome
