"""``wch store import products|orders``: bring an existing store in over its REST API, with a progress bar."""

from __future__ import annotations

from datetime import UTC, datetime

import click
from flask.cli import with_appcontext

from wch import runtime
from wch.db import read_only
from wch.models import StoreImport
from wch.store import importer


@click.group()
def store() -> None:
    """The store's data: import its catalog and orders (WOOCOMMERCE_URL, _CONSUMER_KEY, _CONSUMER_SECRET)."""


@store.command("import")
@click.argument("kind", type=click.Choice(importer.KINDS))
@click.option("--since", type=click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"]),
              help="Only what changed after this date (UTC), e.g. 2026-11-01.")
@with_appcontext
def import_(kind: str, since: datetime | None) -> None:
    """Import every product (or order) of the store, page by page; an interrupted import resumes where it stopped.

    Products are pushed to the WhatsApp catalog by one sync job per page.
    Orders are recorded without messaging anyone.
    """
    settings = runtime.settings()
    since = since.replace(tzinfo=UTC) if since else None
    with read_only():
        found = importer.unfinished(kind, since)
        if found is not None:
            click.echo(f"resuming {kind} import #{found.id} at page {found.next_page}"
                       f"{f' of {found.total_pages}' if found.total_pages else ''}")
    progress = _Progress(kind)
    try:
        api = importer.StoreApi.from_settings(settings)
        done = importer.run_import(api, kind, since=since, settings=settings, on_page=progress.update)
    except (importer.StoreApiError, importer.ImportBusy) as error:
        raise click.ClickException(str(error)) from None
    finally:
        progress.close()
    synced = f", {done.sync_jobs} catalog sync job(s) dispatched" if kind == "products" else ""
    skipped = f", {done.skipped} skipped (see the log)" if done.skipped else ""
    click.echo(f"imported {done.imported} {kind} in {done.total_pages} page(s){synced}{skipped}")


class _Progress:
    """A progress bar over the import's pages, drawn once the first page says how many there are."""

    def __init__(self, kind: str) -> None:
        self.label = f"importing {kind}"
        self.bar = None

    def update(self, row: StoreImport) -> None:
        done = row.next_page - 1
        if self.bar is None:
            self.bar = click.progressbar(length=row.total_pages or done, label=self.label, show_pos=True)
            self.bar.__enter__()
        self.bar.length = max(self.bar.length, row.total_pages or done)
        self.bar.update(done - self.bar.pos)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
