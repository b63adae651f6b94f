"""A sandbox for Meta (``WHATSAPP_MODE=sandbox``): the Graph API answered inside wch, no request leaves the process.

:class:`SandboxGraph` is a ``requests`` transport adapter mounted on the
client's session in place of the network. It answers as Meta does: a
``wamid`` for every message, a handle for every ``items_batch``,
``finished`` for batch checks, and Meta's error for a call it does not know.
A moment later each message's statuses follow as webhook payloads, handed to
``report(payload, delay)``, which the caller wires to wch's own webhook
processing: ``sent``, ``delivered``, then ``read`` for most customers;
``failed`` (131026, undeliverable) for a few, as Meta reports numbers that
are not on WhatsApp. Who fails is decided by the number, so a demo shows the
same picture every time.

For the demo (``make run``) and for rehearsing on staging without a Meta
account; never the default. The client stays free of Flask and the database.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import time
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
from requests.adapters import BaseAdapter

from wch.config import Settings
from wch.whatsapp.client import WhatsAppClient

Report = Callable[[dict[str, Any], float], None]

SANDBOX_TOKEN = "sandbox-token"
SANDBOX_PHONE_NUMBER_ID = "100000000000001"
SANDBOX_CATALOG_ID = "200000000000001"
# Seconds after the send at which each status arrives.
SENT_AFTER, DELIVERED_AFTER, READ_AFTER, FAILED_AFTER = 1.0, 2.0, 5.0, 2.0
FAIL_PERCENT = 6  # customers whose messages come back "failed"
READ_PERCENT = 65  # customers who read what they were sent
UNDELIVERABLE = {"code": 131026, "title": "Message undeliverable",
                 "message": "Message undeliverable", "error_data": {"details": "The number is not on WhatsApp."}}


class SandboxGraph(BaseAdapter):
    """Answers the Graph API calls wch makes, and reports message statuses a moment later.

    Parameters:
      report: called with ``(webhook payload, delay in seconds)`` for each status to deliver.
      phone_number_id: put in the payloads' metadata, as Meta does.
    """

    def __init__(self, *, report: Report, phone_number_id: str) -> None:
        super().__init__()
        self.report = report
        self.phone_number_id = phone_number_id
        self._ids = itertools.count(1)

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        parts = urlsplit(request.url)
        action = parts.path.rstrip("/").rsplit("/", 1)[-1]
        body = json.loads(request.body) if request.body else {}
        if request.method == "POST" and action == "messages":
            return self._answer(request, *self._message(body))
        if request.method == "POST" and action == "items_batch":
            return self._answer(request, 200, {"handles": [f"sandbox-handle-{uuid.uuid4().hex[:16]}"]})
        if request.method == "GET" and action == "check_batch_request_status":
            handle = (parse_qs(parts.query).get("handle") or [""])[0]
            return self._answer(request, 200, {"data": [{"handle": handle, "status": "finished", "errors": [],
                                                         "errors_total_count": 0, "warnings_total_count": 0}]})
        return self._answer(request, 400, _error(100, f"(#100) Unsupported request: {request.method} {parts.path}"))

    def close(self) -> None:
        pass

    def _message(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        to = str(body.get("to") or "")
        if body.get("messaging_product") != "whatsapp" or not to or body.get("type") not in ("text", "template"):
            return 400, _error(100, "(#100) Invalid parameter")
        wamid = f"wamid.SANDBOX{uuid.uuid4().hex[:20]}{next(self._ids):06d}"
        self._report_statuses(wamid, to, body.get("biz_opaque_callback_data"))
        return 200, {"messaging_product": "whatsapp", "contacts": [{"input": to, "wa_id": _digits(to)}],
                     "messages": [{"id": wamid}]}

    def _report_statuses(self, wamid: str, to: str, callback_data: str | None) -> None:
        roll = _roll(to)
        if roll < FAIL_PERCENT:
            steps = [(FAILED_AFTER, "failed")]
        else:
            steps = [(SENT_AFTER, "sent"), (DELIVERED_AFTER, "delivered")]
            if roll < FAIL_PERCENT + READ_PERCENT:
                steps.append((READ_AFTER, "read"))
        now = time.time()
        for delay, name in steps:
            status: dict[str, Any] = {"id": wamid, "status": name, "timestamp": str(int(now + delay)),
                                      "recipient_id": _digits(to)}
            if callback_data:
                status["biz_opaque_callback_data"] = callback_data
            if name == "failed":
                status["errors"] = [UNDELIVERABLE]
            self.report(self.webhook(status), delay)

    def webhook(self, status: dict[str, Any]) -> dict[str, Any]:
        """A status as Meta's webhook delivers it."""
        return {"object": "whatsapp_business_account", "entry": [{"id": "SANDBOX", "changes": [{
            "field": "messages", "value": {"messaging_product": "whatsapp",
                                           "metadata": {"phone_number_id": self.phone_number_id},
                                           "statuses": [status]}}]}]}

    @staticmethod
    def _answer(request: requests.PreparedRequest, status: int, answer: dict[str, Any]) -> requests.Response:
        response = requests.Response()
        response.status_code = status
        response._content = json.dumps(answer).encode()
        response.headers["Content-Type"] = "application/json"
        response.url = request.url
        response.request = request
        response.encoding = "utf-8"
        return response


def sandbox_client(settings: Settings, *, report: Report) -> WhatsAppClient:
    """A client whose calls :class:`SandboxGraph` answers; the ``WHATSAPP_*`` ids are used when set."""
    phone_number_id = settings.whatsapp_phone_number_id or SANDBOX_PHONE_NUMBER_ID
    client = WhatsAppClient(api_url=settings.whatsapp_api_url,
                            access_token=settings.whatsapp_access_token or SANDBOX_TOKEN,
                            phone_number_id=phone_number_id,
                            catalog_id=settings.whatsapp_catalog_id or SANDBOX_CATALOG_ID,
                            timeout=(settings.whatsapp_connect_timeout, settings.whatsapp_read_timeout))
    # The longest matching prefix wins: every Graph call reaches the sandbox, nothing the network.
    client.session.mount(client.api_url + "/", SandboxGraph(report=report, phone_number_id=phone_number_id))
    return client


def _roll(to: str) -> int:
    """0–99, fixed for a number."""
    return int(hashlib.sha256(_digits(to).encode()).hexdigest(), 16) % 100


def _digits(phone: str) -> str:
    return "".join(c for c in phone if c.isdigit())


def _error(code: int, message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": "OAuthException", "code": code,
                      "fbtrace_id": f"SANDBOX{uuid.uuid4().hex[:12]}"}}
