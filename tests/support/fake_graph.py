"""A fake of Meta's Graph API for the WhatsApp Cloud API: a real HTTP server on a free local port.

It speaks the shapes wch uses:

- ``POST /{version}/{phone_number_id}/messages`` answers
  ``{"messaging_product": "whatsapp", "contacts": [...], "messages": [{"id": "wamid.<unique>"}]}``;
- ``POST /{version}/{catalog_id}/items_batch`` answers ``{"handles": ["<handle>"]}``;
- ``GET /{version}/{catalog_id}/check_batch_request_status?handle=H`` answers
  ``{"data": [{"handle": H, "status": "finished", "errors": [], ...}]}`` (set
  ``batch_status_value`` and ``batch_errors`` to report otherwise);
- ``GET /{version}/{phone_number_id}?fields=...`` answers the number's
  ``quality_rating`` and ``whatsapp_business_manager_messaging_limit`` (set
  ``quality_rating`` and ``messaging_limit``).

Every request is recorded (its arrival time as the kernel stamped it, method, path, query, headers, parsed JSON),
thread-safely. Tell it how to misbehave with :meth:`FakeGraph.fail`,
:meth:`FakeGraph.rate_limit`, :meth:`FakeGraph.timeout` and
:meth:`FakeGraph.slow`, for the next N requests or for one recipient; and how
to lose an answer after acting on the request, as a broken network does to
Meta's, with :meth:`FakeGraph.drop_connection` (read the request, close
without answering), :meth:`FakeGraph.cut_answer` (headers and half the body,
then close) and :meth:`FakeGraph.garble` (a 2xx that is not JSON, or JSON
without the message id). The tests
use it through the ``fake_graph`` fixture; ``fake_graph.url`` is a ``WHATSAPP_API_URL``.
"""

from __future__ import annotations

import itertools
import json
import socket
import struct
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.support.local_server import LocalServer, QuietHandler
from tests.support.services import wait_for

VERSION = "v24.0"
# Linux's socket option for nanosecond arrival stamps (Python's socket module does not name it).
SO_TIMESTAMPNS = 35
# Default HTTP status Meta uses with an error code.
_STATUS_OF_CODE = {130429: 429, 1: 500, 2: 503, 190: 401, 10: 403, 200: 403}


@dataclass
class Recorded:
    """One request the fake received."""

    time: float
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    json: Any
    kind: str  # "messages", "items_batch", "batch_status", "phone_number" or "unknown"
    recipient: str | None = None
    status: int | None = None  # what the fake answers (None until it has decided)
    answer: Any = None  # what Meta did: for a lost answer, what it would have said
    lost: str | None = None  # how the answer was lost on the way back (a Rule's ``lose``), if it was

    @property
    def wamid(self) -> str | None:
        """The message id Meta gave this send, whether or not the answer reached the client."""
        try:
            return self.answer["messages"][0]["id"]
        except (KeyError, IndexError, TypeError):
            return None


@dataclass
class Rule:
    """How to answer matching requests instead of succeeding.

    ``times`` is how many requests it applies to (None: all of them);
    ``recipient`` and ``kind`` narrow which requests match.
    """

    status: int | None = None
    code: int | None = None
    message: str | None = None
    delay: float = 0.0
    times: int | None = 1
    recipient: str | None = None
    kind: str | None = None
    retry_after: str | None = None
    subcode: int | None = None
    lose: str | None = None  # "drop", "cut", "not_json" or "no_id": act on the request, lose the answer
    used: int = field(default=0)

    def matches(self, record: Recorded) -> bool:
        if self.times is not None and self.used >= self.times:
            return False
        if self.recipient is not None and record.recipient != self.recipient:
            return False
        return self.kind is None or record.kind == self.kind


class FakeGraph(LocalServer):
    """The fake Graph API server. Start with :meth:`start`, stop with :meth:`stop`.

    Parameters:
      version: the Graph version in the path (``url`` ends with it).
      batch_status: the ``status`` batch checks report (``finished`` by default).
    """

    def __init__(self, *, version: str = VERSION, batch_status: str = "finished") -> None:
        super().__init__()
        self.version = version
        self.batch_status_value = batch_status
        self.batch_errors: list[dict[str, Any]] = []  # what batch checks report as rejected items
        self.quality_rating = "GREEN"
        self.messaging_limit = "TIER_2K"
        self.requests: list[Recorded] = []
        self._rules: list[Rule] = []
        self._lock = threading.Lock()
        self._ids = itertools.count(1)

    # -- lifecycle --------------------------------------------------------

    def start(self) -> FakeGraph:
        self.serve(type("Handler", (_Handler,), {"graph": self}), name="fake-graph")
        return self

    @property
    def url(self) -> str:
        """The base URL with the Graph version: what ``WHATSAPP_API_URL`` should be."""
        return f"http://127.0.0.1:{self.port}/{self.version}"

    # -- telling it how to answer ----------------------------------------

    def fail(
        self,
        *,
        times: int | None = 1,
        status: int | None = None,
        code: int | None = None,
        recipient: str | None = None,
        kind: str | None = None,
        message: str | None = None,
        retry_after: str | float | None = None,
        subcode: int | None = None,
        delay: float = 0.0,
    ) -> Rule:
        """Answer the next ``times`` matching requests with an error.

        ``code`` alone gives Meta's usual status for it (400 for most); ``status``
        alone (e.g. 503) gives a Graph error body with code 1 for 5xx.
        """
        if status is None:
            status = _STATUS_OF_CODE.get(code, 400) if code is not None else 500
        rule = Rule(status=status, code=code, message=message, times=times, recipient=recipient, kind=kind,
                    retry_after=None if retry_after is None else str(retry_after), subcode=subcode, delay=delay)
        return self._add(rule)

    def rate_limit(self, *, times: int | None = 1, recipient: str | None = None, retry_after=None) -> Rule:
        """Answer HTTP 429 with code 130429 (throughput limit)."""
        return self.fail(times=times, status=429, code=130429, recipient=recipient, retry_after=retry_after,
                         message="(#130429) Rate limit hit")

    def timeout(self, *, seconds: float = 5.0, times: int | None = 1, recipient: str | None = None,
                kind: str | None = None) -> Rule:
        """Hold matching requests ``seconds`` (past the client's read timeout), then answer normally.

        As with Meta, a request whose answer the client gave up on may still have taken effect.
        """
        return self._add(Rule(delay=seconds, times=times, recipient=recipient, kind=kind))

    def slow(self, seconds: float, *, times: int | None = None, recipient: str | None = None,
             kind: str | None = None) -> Rule:
        """Answer matching requests normally after ``seconds`` (all of them unless ``times``)."""
        return self._add(Rule(delay=seconds, times=times, recipient=recipient, kind=kind))

    def drop_connection(self, *, times: int | None = 1, recipient: str | None = None,
                        kind: str | None = None) -> Rule:
        """Act on matching requests, then close the connection without a word of answer."""
        return self._add(Rule(lose="drop", times=times, recipient=recipient, kind=kind))

    def cut_answer(self, *, times: int | None = 1, recipient: str | None = None, kind: str | None = None) -> Rule:
        """Act on matching requests, send the status line, the headers and half the body, then close."""
        return self._add(Rule(lose="cut", times=times, recipient=recipient, kind=kind))

    def garble(self, *, how: str = "not_json", times: int | None = 1, recipient: str | None = None,
               kind: str | None = None) -> Rule:
        """Act on matching requests and answer 200 with a body that is not JSON (``not_json``) or, for a
        send, JSON without the message id (``no_id``)."""
        if how not in ("not_json", "no_id"):
            raise ValueError(f"unknown garbling {how!r}")
        return self._add(Rule(lose=how, times=times, recipient=recipient, kind=kind))

    def clear_rules(self) -> None:
        with self._lock:
            self._rules.clear()

    def reset(self) -> None:
        """Forget recorded requests and rules."""
        with self._lock:
            self._rules.clear()
            self.requests.clear()

    def _add(self, rule: Rule) -> Rule:
        with self._lock:
            self._rules.append(rule)
        return rule

    # -- what it received -------------------------------------------------

    def received(self, kind: str | None = None, *, recipient: str | None = None) -> list[Recorded]:
        """A snapshot of the recorded requests, optionally of one kind or to one recipient."""
        with self._lock:
            found = list(self.requests)
        return [r for r in found
                if (kind is None or r.kind == kind) and (recipient is None or r.recipient == recipient)]

    def messages(self, *, recipient: str | None = None) -> list[Recorded]:
        return self.received("messages", recipient=recipient)

    def batches(self) -> list[Recorded]:
        return self.received("items_batch")

    def batch_items(self) -> list[dict[str, Any]]:
        """Every item request of every ``items_batch`` call, in order."""
        return [item for batch in self.batches() for item in (batch.json or {}).get("requests", [])]

    def wait_for_requests(self, count: int, kind: str | None = None, *, timeout: float = 30.0) -> list[Recorded]:
        """Wait until at least ``count`` requests (of ``kind``) have been answered."""
        def answered():
            found = [r for r in self.received(kind) if r.status is not None]
            return found if len(found) >= count else None

        return wait_for(answered, timeout=timeout, what=f"{count} {kind or ''} request(s) to the fake Graph API")

    # -- answering (called by the handler threads) ----------------------

    def _record(self, record: Recorded) -> Rule | None:
        with self._lock:
            self.requests.append(record)
            for rule in self._rules:
                if rule.matches(record):
                    rule.used += 1
                    return rule
        return None

    def _success(self, record: Recorded, catalog_or_phone: str) -> tuple[int, Any]:
        if record.kind == "messages":
            body = record.json if isinstance(record.json, dict) else {}
            if body.get("messaging_product") != "whatsapp" or not body.get("to") or not body.get("type"):
                return 400, _error(100, "(#100) Invalid parameter", "OAuthException")
            to = str(body["to"])
            wamid = f"wamid.{uuid.uuid4().hex}{next(self._ids):06d}"
            return 200, {"messaging_product": "whatsapp",
                         "contacts": [{"input": to, "wa_id": "".join(c for c in to if c.isdigit())}],
                         "messages": [{"id": wamid}]}
        if record.kind == "items_batch":
            body = record.json if isinstance(record.json, dict) else {}
            items = body.get("requests")
            if not isinstance(items, list) or not items or len(items) > 5000:
                return 400, _error(100, "(#100) Param requests must be a non-empty array of at most 5000 items")
            return 200, {"handles": [f"handle-{uuid.uuid4().hex[:16]}"]}
        if record.kind == "batch_status":
            handle = record.query.get("handle")
            if not handle:
                return 400, _error(100, "(#100) The parameter handle is required")
            return 200, {"data": [{"handle": handle, "status": self.batch_status_value, "errors": self.batch_errors,
                                   "errors_total_count": len(self.batch_errors), "warnings": [],
                                   "warnings_total_count": 0}]}
        if record.kind == "phone_number":
            return 200, {"id": catalog_or_phone, "display_phone_number": "+1 555-010-0001",
                         "quality_rating": self.quality_rating,
                         "whatsapp_business_manager_messaging_limit": self.messaging_limit}
        return 404, _error(803, "(#803) Some of the aliases you requested do not exist", "OAuthException")


class _Handler(QuietHandler):
    graph: FakeGraph
    arrived: float = 0.0

    def setup(self) -> None:
        super().setup()
        # The kernel stamps each packet as it arrives: a request's time is when it reached "Meta",
        # not when this busy test process got round to reading it.
        self.connection.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)

    def handle_one_request(self) -> None:
        self.arrived = _arrival(self.connection)
        super().handle_one_request()

    def do_GET(self) -> None:  # noqa: N802
        self._handle()

    def do_POST(self) -> None:  # noqa: N802
        self._handle()

    def _handle(self) -> None:
        graph = self.graph
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if len(raw) < length:
            # The client went away in the middle of its request (a worker killed while sending): an
            # incomplete request is no request to Meta, so nothing is recorded and nothing is sent.
            self.close_connection = True
            return
        try:
            payload = json.loads(raw) if raw else None
        except ValueError:
            payload = None
        segments = [s for s in parts.path.split("/") if s]
        kind, owner = "unknown", ""
        if len(segments) == 2 and segments[0] == graph.version and self.command == "GET":
            owner, kind = segments[1], "phone_number"
        if len(segments) == 3 and segments[0] == graph.version:
            owner = segments[1]
            kind = {("POST", "messages"): "messages", ("POST", "items_batch"): "items_batch",
                    ("GET", "check_batch_request_status"): "batch_status"}.get((self.command, segments[2]), "unknown")
        record = Recorded(
            time=self.arrived,
            method=self.command,
            path=parts.path,
            query={k: v[-1] for k, v in parse_qs(parts.query).items()},
            headers=dict(self.headers.items()),
            json=payload,
            kind=kind,
            recipient=str(payload.get("to")) if kind == "messages" and isinstance(payload, dict) else None,
        )
        rule = graph._record(record)
        if rule is not None and rule.delay:
            graph._closing.wait(rule.delay)
        if not (self.headers.get("Authorization") or "").startswith("Bearer "):
            status, answer = 401, _error(190, "Invalid OAuth access token - Cannot parse access token",
                                         "OAuthException")
        elif rule is not None and rule.status is not None:
            code = rule.code if rule.code is not None else (1 if rule.status >= 500 else 100)
            status, answer = rule.status, _error(code, rule.message or f"(#{code}) fake error", subcode=rule.subcode)
        else:
            status, answer = graph._success(record, owner)
        record.answer, record.status = answer, status
        body = json.dumps(answer).encode()
        lose = rule.lose if rule is not None and status == 200 else None
        record.lost = lose
        if lose == "not_json":
            body = b"<html><body>Service temporarily unavailable</body></html>"
        elif lose == "no_id":
            body = json.dumps({"messaging_product": "whatsapp", "contacts": answer.get("contacts", [])}).encode()
        try:
            if lose == "drop":
                self._close_abruptly()
                return
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            if rule is not None and rule.retry_after is not None:
                self.send_header("Retry-After", rule.retry_after)
            self.end_headers()
            if lose == "cut":
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self._close_abruptly()
                return
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout); the request still counts as received

    def _close_abruptly(self) -> None:
        """End the connection here, as a network failure on Meta's side would."""
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _arrival(connection: socket.socket) -> float:
    """When the next request's first bytes reached ``connection`` (waits for them); now, if the kernel cannot say."""
    try:
        _, ancillary, _, _ = connection.recvmsg(1, socket.CMSG_SPACE(16), socket.MSG_PEEK)
    except OSError:
        return time.time()
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
            seconds, nanoseconds = struct.unpack("qq", data)
            return seconds + nanoseconds / 1e9
    return time.time()


def _error(code: int, message: str, type_: str = "OAuthException", *, subcode: int | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"message": message, "type": type_, "code": code,
                             "fbtrace_id": f"A{uuid.uuid4().hex[:20]}"}
    if subcode is not None:
        error["error_subcode"] = subcode
    return {"error": error}

