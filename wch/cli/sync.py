"""``wch sync``: push products to the WhatsApp catalog and order updates to customers, as jobs."""

from __future__ import annotations

import click
from flask.cli import with_appcontext
from sqlalchemy import select

from wch.cli.output import echo_json, json_option
from wch.db import db, transaction
from wch.models import Job, Order, Product
from wch.store import catalog, orders


@click.group()
def sync() -> None:
    """Catalog and order sync with WhatsApp (dispatches jobs; workers run them)."""


@sync.command("product")
@click.argument("store_id", type=click.IntRange(min=1))
@json_option
@with_appcontext
def sync_product(store_id: int, as_json: bool) -> None:
    """Push product STORE_ID (its WooCommerce id) to the catalog now, even if it looks up to date."""
    with transaction():
        if db.session.scalars(select(Product.id).where(Product.store_id == store_id)).first() is None:
            raise click.ClickException(f"no product {store_id}: wch learns of products from the store's webhooks")
        shown = _shown(catalog.sync_product_now(store_id))
    _report(shown, as_json)


@sync.command("products")
@click.option("--all", "all_", is_flag=True, help="Every product (required: a reminder that this is a bulk push).")
@json_option
@with_appcontext
def sync_products(all_: bool, as_json: bool) -> None:
    """Push every product to the catalog, in items_batch calls of at most WCH_CATALOG_BATCH_SIZE items."""
    if not all_:
        raise click.UsageError("say --all to push every product (one product: wch sync product ID)")
    with transaction():
        shown = _shown(catalog.sync_all_products(after=0))
    _report(shown, as_json)


@sync.command("order")
@click.argument("store_id", type=click.IntRange(min=1))
@json_option
@with_appcontext
def sync_order(store_id: int, as_json: bool) -> None:
    """Tell order STORE_ID's customer its current status, unless they were told already."""
    with transaction():
        if db.session.scalars(select(Order.id).where(Order.store_id == store_id)).first() is None:
            raise click.ClickException(f"no order {store_id}: wch learns of orders from the store's webhooks")
        shown = _shown(orders.notify_now(store_id))
    _report(shown, as_json)


def _shown(job: Job) -> dict:
    # Read inside the transaction: reading the expired job after the commit would begin
    # a new one (holding SQLite's write lock) until the command ends.
    return {"job": job.id, "type": job.type, "args": job.args, "status": job.status}


def _report(shown: dict, as_json: bool) -> None:
    if as_json:
        echo_json(shown)
    else:
        click.echo(f"dispatched {shown['type']} job {shown['job']} ({shown['status']})")
