"""Bring an existing store in: its products and orders, read page by page from the WooCommerce REST API (v3).

Each page is read with no transaction open, then written in one transaction
with the import's cursor: the same snapshots the webhooks write
(:func:`~wch.store.catalog.record_product`, :func:`~wch.store.orders.record_order`),
one catalog push for the page's products (``sync_products``, not one job per
product), and the next page to read. An import stopped anywhere (a killed
process, the store timing out) resumes at the page after the last one
written: no page is written twice, none is skipped.

Importing orders records them without messaging anyone: past orders are not
news to their customers, and they recover no abandoned cart.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import requests
from sqlalchemy import select

from wch.config import Settings
from wch.db import db, read_only, transaction, utcnow
from wch.jobs import JobType, dispatch
from wch.models import Job, Order, StoreImport
from wch.store import catalog, orders
from wch.store.woocommerce import BadPayload, OrderSnapshot, ProductSnapshot, parse_order, parse_product

logger = logging.getLogger(__name__)

IMPORT_STORE = JobType("import_store", queue="sync")
KINDS = ("products", "orders")
PAGE_SIZE = 100  # the most the REST API returns per page
TIMEOUT = (5, 60)


class StoreApiError(Exception):
    """The store's REST API could not be read; the message says what to check."""


class StoreRefused(StoreApiError):
    """Trying again will not help: a wrong address or key, a missing setting, an answer that is not the API's."""


class StoreUnavailable(StoreApiError):
    """The store did not answer, or answered with a server error: the import can resume later."""


class ImportBusy(Exception):
    """Another process is running the same import."""


@dataclass(frozen=True)
class Page:
    """One page of a listing: its items and the totals the API reports in its headers."""

    items: list[dict[str, Any]]
    total_pages: int
    total_items: int | None


class StoreApi:
    """The store's REST API, read with its consumer key and secret.

    Parameters:
      url: the store's address (``https://shop.example``); the API is under ``/wp-json/wc/v3/``.
      key, secret: a REST API key with read access (WooCommerce → Settings → Advanced → REST API).
      timeout: ``(connect, read)`` seconds per request.
    """

    def __init__(self, *, url: str, key: str, secret: str, timeout: tuple[float, float] = TIMEOUT) -> None:
        self.base = url.rstrip("/") + "/wp-json/wc/v3"
        self.timeout = timeout
        self.session = requests.Session()
        self.session.auth = (key, secret)
        self.session.headers["Accept"] = "application/json"

    @classmethod
    def from_settings(cls, settings: Settings) -> StoreApi:
        missing = [name for name, value in (("WOOCOMMERCE_URL", settings.woocommerce_url),
                                            ("WOOCOMMERCE_CONSUMER_KEY", settings.woocommerce_consumer_key),
                                            ("WOOCOMMERCE_CONSUMER_SECRET", settings.woocommerce_consumer_secret))
                   if not value]
        if missing:
            raise StoreRefused(f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set: "
                                "the import reads the store's REST API with a consumer key and secret")
        return cls(url=settings.woocommerce_url, key=settings.woocommerce_consumer_key,
                   secret=settings.woocommerce_consumer_secret)

    def page(self, kind: str, number: int, *, since: datetime | None = None) -> Page:
        """Page ``number`` (from 1) of ``kind``, oldest id first, so items added meanwhile land on later pages."""
        params: dict[str, Any] = {"per_page": PAGE_SIZE, "page": number, "orderby": "id", "order": "asc"}
        if since is not None:
            params["modified_after"] = since.strftime("%Y-%m-%dT%H:%M:%S")
            params["dates_are_gmt"] = "true"
        if kind == "orders":
            params["status"] = "any"
        where = f"{urlsplit(self.base).netloc} ({kind}, page {number})"
        try:
            response = self.session.get(f"{self.base}/{kind}", params=params, timeout=self.timeout)
        except requests.RequestException as error:
            raise StoreUnavailable(f"cannot reach the store at {self.base}: {type(error).__name__} "
                                "(check WOOCOMMERCE_URL)") from None
        if response.status_code in (401, 403):
            raise StoreRefused(f"the store refused the consumer key (HTTP {response.status_code} "
                                f"{_code(response)}): check WOOCOMMERCE_CONSUMER_KEY and WOOCOMMERCE_CONSUMER_SECRET "
                                "and that the key may read")
        if response.status_code == 404:
            raise StoreRefused(f"no WooCommerce REST API at {self.base} (HTTP 404 {_code(response)}): "
                                "check WOOCOMMERCE_URL")
        if response.status_code >= 500:
            raise StoreUnavailable(f"the store answered HTTP {response.status_code} {_code(response)} for {where}")
        if response.status_code >= 400:
            raise StoreRefused(f"the store answered HTTP {response.status_code} {_code(response)} for {where}")
        try:
            items = response.json()
        except ValueError:
            items = None
        if not isinstance(items, list):
            raise StoreRefused(f"the store's answer for {where} is not a JSON list: is WOOCOMMERCE_URL a "
                                "WooCommerce store?")
        return Page(items=[item for item in items if isinstance(item, dict)],
                    total_pages=_header_int(response, "X-WP-TotalPages") or number,
                    total_items=_header_int(response, "X-WP-Total"))

    def close(self) -> None:
        self.session.close()


def import_later(kind: str, since: datetime | None = None) -> Job:
    """Dispatch the import job (one pending per kind): the panel's button, and the job's own continuation."""
    _check_kind(kind)
    return dispatch(IMPORT_STORE, {"kind": kind, "since": since.isoformat() if since else None}, unique=kind)


def is_busy(job: Job | None) -> bool:
    return job is not None and job.status in ("queued", "retrying", "running")


def unfinished(kind: str, since: datetime | None) -> StoreImport | None:
    """The import of ``kind`` modified after ``since`` that stopped before its last page, if any."""
    query = (select(StoreImport).where(StoreImport.kind == kind, StoreImport.status != "finished")
             .order_by(StoreImport.id.desc()))
    query = query.where(StoreImport.since.is_(None) if since is None else StoreImport.since == since)
    return db.session.scalars(query.limit(1)).first()


def last_job(kind: str) -> Job | None:
    """The newest import job of ``kind``, whatever became of it."""
    recent = db.session.scalars(select(Job).where(Job.type == IMPORT_STORE.name)
                                .order_by(Job.enqueued_at.desc()).limit(20))
    return next((job for job in recent if job.args.get("kind") == kind), None)


def latest(kind: str) -> StoreImport | None:
    return db.session.scalars(select(StoreImport).where(StoreImport.kind == kind)
                              .order_by(StoreImport.id.desc()).limit(1)).first()


def run_import(api: StoreApi, kind: str, *, since: datetime | None = None, settings: Settings,
               on_page: Callable[[StoreImport], None] | None = None, until: float | None = None) -> StoreImport:
    """Import every ``kind`` (``products`` or ``orders``) modified after ``since``, resuming an unfinished import.

    ``on_page`` is called with the import (detached) after each page is written.
    With ``until`` (a :func:`time.monotonic` deadline) it stops after the page
    that ends past it, the import still ``running``, to be resumed.
    Nothing is written until the first page has been read, so a wrong address
    or key changes nothing. Raises :class:`StoreApiError` (the import, if
    started, is marked failed and resumes from there next time). Runs its own transactions.
    """
    _check_kind(kind)
    if kind == "products" and not settings.store_currency:
        raise StoreRefused("WCH_STORE_CURRENCY is not set: WooCommerce's product listings do not name the currency")
    with read_only():
        found = unfinished(kind, since)
        import_id, number = (found.id, found.next_page) if found else (None, 1)
    while True:
        try:
            page = api.page(kind, number, since=since)
        except StoreApiError as error:
            if import_id is not None:
                _fail(import_id, str(error))
            raise
        with transaction():
            row = _cursor(import_id, kind, since, number)
            _write_page(row, page, kind, settings)
            db.session.flush()
            import_id = row.id
            done = row.status == "finished"
            shown = StoreImport(**{column: getattr(row, column) for column in _COLUMNS})
        if on_page is not None:
            on_page(shown)
        if done or (until is not None and time.monotonic() >= until):
            return shown
        number += 1


_COLUMNS = ("id", "kind", "since", "status", "next_page", "total_pages", "total_items", "imported", "skipped",
            "sync_jobs", "error", "started_at", "updated_at", "finished_at")


def _cursor(import_id: int | None, kind: str, since: datetime | None, number: int) -> StoreImport:
    """The import's row, locked, checked to be at page ``number``; a new one for a first page."""
    if import_id is None:
        row = StoreImport(kind=kind, since=since, status="running", next_page=1, imported=0, skipped=0, sync_jobs=0,
                          started_at=utcnow(), updated_at=utcnow())
        db.session.add(row)
        return row
    row = db.session.get(StoreImport, import_id, with_for_update=True)
    if row is None or row.status == "finished" or row.next_page != number:
        raise ImportBusy(f"the {kind} import #{import_id} moved on without this process: another one is running it")
    return row


def _write_page(row: StoreImport, page: Page, kind: str, settings: Settings) -> None:
    if kind == "products":
        snapshots, skipped = _readable(page.items, kind, partial(parse_product, currency=settings.store_currency))
        if _write_products(snapshots):
            row.sync_jobs += 1
    else:
        snapshots, skipped = _readable(page.items, kind, partial(parse_order, default_currency=settings.store_currency))
        _write_orders(snapshots)
    now = utcnow()
    row.imported += len(snapshots)
    row.skipped += skipped
    row.total_pages, row.total_items = page.total_pages, page.total_items
    row.next_page += 1
    row.updated_at, row.error = now, None
    row.status = "running"
    if row.next_page > page.total_pages or not page.items:
        row.status, row.finished_at = "finished", now


def _readable(items: list[dict[str, Any]], kind: str, parse: Callable[[Any], Any]) -> tuple[list[Any], int]:
    """The snapshots of the items ``parse`` can read, and how many it could not (each logged)."""
    snapshots, skipped = [], 0
    for payload in items:
        try:
            snapshots.append(parse(payload))
        except BadPayload as error:
            skipped += 1
            logger.warning("Import: skipping %s %s: %s", kind.removesuffix("s"), payload.get("id"), error)
    return snapshots, skipped


def _write_products(snapshots: list[ProductSnapshot]) -> bool:
    """Record the products; dispatch one catalog push for the page if any changed. Returns whether it did."""
    changes = [catalog.record_product(snapshot)[1] for snapshot in snapshots]
    if not any(change in ("catalog", "inventory") for change in changes):
        return False
    db.session.flush()
    store_ids = [snapshot.store_id for snapshot in snapshots]
    catalog.sync_products(after=min(store_ids) - 1, through=max(store_ids))
    return True


def _write_orders(snapshots: list[OrderSnapshot]) -> None:
    ids = [snapshot.store_id for snapshot in snapshots]
    known = set(db.session.scalars(select(Order.store_id).where(Order.store_id.in_(ids))))
    for snapshot in snapshots:
        order, _ = orders.record_order(snapshot, recovery_window_hours=None)
        if snapshot.store_id not in known:
            order.notified_status = order.status  # history: its customer is not told about it now


def _fail(import_id: int, error: str) -> None:
    with transaction():
        row = db.session.get(StoreImport, import_id, with_for_update=True)
        if row is not None and row.status != "finished":
            row.status, row.error, row.updated_at = "failed", error[:2000], utcnow()


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown import {kind!r} (expected one of {', '.join(KINDS)})")


def _header_int(response: requests.Response, name: str) -> int | None:
    value = response.headers.get(name, "")
    return int(value) if value.isdigit() else None


def _code(response: requests.Response) -> str:
    try:
        answer = response.json()
    except ValueError:
        return ""
    return str(answer.get("code") or "") if isinstance(answer, dict) else ""
