"""WhatsApp for the broadcast, reminder and webhook tests (and the benchmark): settings, contacts, signed webhooks.

The settings point wch at the fake Graph API (``tests.support.fake_graph``);
the folders that send build their apps with :func:`broadcast_env`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from datetime import datetime

from wch import runtime
from wch.db import db, transaction, utcnow
from wch.messaging import campaigns
from wch.models import Contact
from wch.whatsapp.signature import HEADER, sign

APP_SECRET = "test-app-secret-abcdef"
SENDER = "1000001"  # the phone number id the tests send from
VERIFY_TOKEN = "test-verify-token"
WHATSAPP_ENV = {
    "WHATSAPP_ACCESS_TOKEN": "EAAtesttokenvalue1234567890",
    "WHATSAPP_PHONE_NUMBER_ID": SENDER,
    "WHATSAPP_APP_SECRET": APP_SECRET,
    "WHATSAPP_VERIFY_TOKEN": VERIFY_TOKEN,
    "WHATSAPP_READ_TIMEOUT": "2",
    "WCH_MESSAGING_LIMIT": "unlimited",  # the tests about the limit set their own
}


def broadcast_env(graph_url: str) -> dict[str, str]:
    """WhatsApp settings on the fake Graph API at ``graph_url``, sending fast: tests assert outcomes, not the pace."""
    return WHATSAPP_ENV | {"WHATSAPP_API_URL": graph_url, "WCH_SEND_RATE_LIMIT": "500",
                           "WCH_BROADCAST_BATCH_SIZE": "10", "WCH_BROADCAST_BATCH_INTERVAL": "0.05",
                           "WCH_BROADCAST_RETRY_DELAYS": "0.2,0.2,0.2"}


def phone(n: int) -> str:
    """A valid German mobile number in E.164, distinct for each ``n`` < 10**7."""
    return f"+49151{n:08d}"


def add_contacts(count: int, *, start: int = 0, opted_out: Iterable[int] = ()) -> list[str]:
    opted_out = set(opted_out)
    now = utcnow()
    phones = [phone(i) for i in range(start, start + count)]
    db.session.add_all(
        Contact(phone=p, name=f"Customer {i}", created_at=now, opted_out_at=now if i in opted_out else None)
        for i, p in zip(range(start, start + count), phones, strict=True)
    )
    db.session.commit()
    return phones


def start_campaign(campaign_id: int, *, at: datetime | None = None) -> None:
    """Start the campaign as the panel does, and commit."""
    with transaction():
        campaigns.start_campaign(campaign_id, at=at, max_broker_delay=runtime.settings().max_broker_delay)


def campaign_progress(campaign_id: int) -> dict:
    """The campaign's progress as the workers have left it, read in a transaction of its own."""
    db.session.rollback()
    info = campaigns.progress(campaign_id)
    db.session.rollback()
    return info


def wa_id(e164: str) -> str:
    return e164.lstrip("+")


def status_payload(*statuses: dict) -> dict:
    return {"object": "whatsapp_business_account",
            "entry": [{"id": "WABA", "changes": [{"field": "messages", "value": {
                "messaging_product": "whatsapp", "metadata": {"phone_number_id": "1000001"},
                "statuses": list(statuses)}}]}]}


def status(wamid: str, name: str, to: str, *, ts: int | None = None, error_code: int | None = None) -> dict:
    entry = {"id": wamid, "status": name, "timestamp": str(ts or int(time.time())), "recipient_id": wa_id(to)}
    if error_code is not None:
        entry["errors"] = [{"code": error_code, "title": "Message undeliverable"}]
    return entry


def inbound_payload(sender: str, text: str, *, ts: int | None = None, name: str = "Ann") -> dict:
    return {"object": "whatsapp_business_account",
            "entry": [{"id": "WABA", "changes": [{"field": "messages", "value": {
                "messaging_product": "whatsapp", "metadata": {"phone_number_id": "1000001"},
                "contacts": [{"profile": {"name": name}, "wa_id": wa_id(sender)}],
                "messages": [{"from": wa_id(sender), "id": f"wamid.in{time.time_ns()}",
                              "timestamp": str(ts or int(time.time())), "type": "text",
                              "text": {"body": text}}]}}]}]}


def post_webhook(client, payload: dict, *, secret: str | None = APP_SECRET, signature: str | None = None):
    body = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers[HEADER] = signature
    elif secret is not None:
        headers[HEADER] = sign(body, secret)
    return client.post("/webhooks/whatsapp", data=body, headers=headers)


def max_in_any_second(times: list[float]) -> int:
    """The largest number of ``times`` inside any one-second window [t, t + 1)."""
    times = sorted(times)
    best = start = 0
    for end, t in enumerate(times):
        while t - times[start] >= 1.0:
            start += 1
        best = max(best, end - start + 1)
    return best
