"""A fake of a WooCommerce store's REST API (v3): a real HTTP server on a free local port.

``GET /wp-json/wc/v3/products`` and ``/orders`` page through generated
products and orders (:func:`tests.support.woo.product` and ``order``) by id,
``per_page`` at a time, with ``X-WP-Total`` and ``X-WP-TotalPages`` headers,
``modified_after`` filtering, and HTTP Basic authentication with one consumer
key and secret. Every request is recorded; :meth:`FakeStore.fail_page` makes a
page answer an error, :attr:`FakeStore.delay` slows every page down.
"""

from __future__ import annotations

import base64
import json
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.support import woo
from tests.support.local_server import LocalServer, QuietHandler

KEY = "ck_fakestorekey0123456789abcdef0123456789"
SECRET = "cs_fakestoresecret0123456789abcdef01234567"
# Item n was last modified this many minutes after the base time: `--since` can select a tail.
BASE_TIME = datetime(2026, 1, 1)


@dataclass
class Request:
    path: str
    page: int
    status: int


class FakeStore(LocalServer):
    """The fake store. ``start()``, then point ``WOOCOMMERCE_URL`` at :attr:`url`.

    Parameters:
      products, orders: how many of each the store has (ids 1..n).
    """

    def __init__(self, *, products: int = 0, orders: int = 0) -> None:
        super().__init__()
        self.counts = {"products": products, "orders": orders}
        self.requests: list[Request] = []
        self.delay = 0.0
        self._failures: dict[tuple[str, int], tuple[int, int]] = {}  # (kind, page) -> (status, times left)
        self._lock = threading.Lock()

    def start(self) -> FakeStore:
        self.serve(type("Handler", (_Handler,), {"store": self}), name="fake-store")
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """The settings that point wch's import at this store."""
        return {"WOOCOMMERCE_URL": self.url, "WOOCOMMERCE_CONSUMER_KEY": KEY, "WOOCOMMERCE_CONSUMER_SECRET": SECRET,
                "WCH_STORE_CURRENCY": woo.CURRENCY}

    def fail_page(self, kind: str, page: int, *, status: int = 500, times: int = 1) -> None:
        with self._lock:
            self._failures[(kind, page)] = (status, times)

    def pages_served(self, kind: str) -> list[int]:
        """The pages answered with 200, in order."""
        with self._lock:
            return [r.page for r in self.requests if r.path.endswith(kind) and r.status == 200]

    def modified_at(self, item_id: int) -> datetime:
        return BASE_TIME + timedelta(minutes=item_id)

    def item(self, kind: str, item_id: int) -> dict[str, Any]:
        modified = self.modified_at(item_id).strftime("%Y-%m-%dT%H:%M:%S")
        if kind == "products":
            return woo.product(item_id, date_modified_gmt=modified)
        return woo.order(item_id, status="completed", date_modified_gmt=modified)

    def _answer(self, kind: str, query: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        per_page = min(int(query.get("per_page", 10)), 100)
        page = int(query.get("page", 1))
        ids = range(1, self.counts[kind] + 1)
        if "modified_after" in query:
            since = datetime.fromisoformat(query["modified_after"])
            ids = [i for i in ids if self.modified_at(i) > since]
        ids = list(ids)
        total_pages = max(1, -(-len(ids) // per_page))
        with self._lock:
            status, times = self._failures.get((kind, page), (200, 0))
            if times:
                self._failures[(kind, page)] = (status, times - 1)
            else:
                status = 200
        self.requests.append(Request(path=f"/{kind}", page=page, status=status))
        if status != 200:
            return status, {"code": "internal_server_error", "message": "fake failure", "data": {"status": status}}, {}
        chunk = ids[(page - 1) * per_page: page * per_page]
        headers = {"X-WP-Total": str(len(ids)), "X-WP-TotalPages": str(total_pages)}
        return 200, [self.item(kind, i) for i in chunk], headers


class _Handler(QuietHandler):
    store: FakeStore

    def do_GET(self) -> None:  # noqa: N802
        store = self.store
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        kind = parts.path.removeprefix("/wp-json/wc/v3/").strip("/")
        if store.delay:
            store._closing.wait(store.delay)
        if not parts.path.startswith("/wp-json/wc/v3/") or kind not in store.counts:
            status, body, headers = 404, {"code": "rest_no_route", "message": "No route was found",
                                          "data": {"status": 404}}, {}
        elif self.headers.get("Authorization") != "Basic " + base64.b64encode(f"{KEY}:{SECRET}".encode()).decode():
            status, body, headers = 401, {"code": "woocommerce_rest_cannot_view",
                                          "message": "Sorry, you cannot list resources.", "data": {"status": 401}}, {}
        else:
            status, body, headers = store._answer(kind, query)
        data = json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
