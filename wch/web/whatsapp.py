"""``/webhooks/whatsapp``: Meta's verification handshake and signed event deliveries.

A delivery is checked against ``X-Hub-Signature-256`` (HMAC-SHA256 of the raw
body with ``WHATSAPP_APP_SECRET``) and handed to a ``process_whatsapp_webhook``
job; Meta gets its 200 as soon as the job is in the ledger.
"""

from __future__ import annotations

import hmac
import json
import logging

from flask import Blueprint, abort, request

from wch import runtime
from wch.db import transaction
from wch.messaging.events import process_later
from wch.whatsapp import signature

logger = logging.getLogger(__name__)

bp = Blueprint("whatsapp_webhook", __name__)
# Meta batches at most a few hundred events; read no more than this before checking the signature.
MAX_BODY = 1024 * 1024


@bp.get("/webhooks/whatsapp")
def verify():
    """Answer Meta's subscription check with the challenge, for our verify token only."""
    expected = runtime.settings().whatsapp_verify_token
    token = request.args.get("hub.verify_token", "")
    if (
        request.args.get("hub.mode") != "subscribe"
        or not expected
        or not hmac.compare_digest(token.encode(), expected.encode())
    ):
        abort(403)
    return request.args.get("hub.challenge", ""), 200, {"Content-Type": "text/plain"}


@bp.post("/webhooks/whatsapp")
def receive():
    """Check the signature over the raw body, then enqueue the payload for processing."""
    secret = runtime.settings().whatsapp_app_secret
    if not secret:
        logger.error("WHATSAPP_APP_SECRET is not set; refusing a WhatsApp webhook delivery.")
        abort(503)
    request.max_content_length = MAX_BODY
    body = request.get_data(cache=False)
    if not signature.valid_signature(body, request.headers.get(signature.HEADER), secret):
        abort(401)
    try:
        payload = json.loads(body)
    except ValueError:
        abort(400)
    if not isinstance(payload, dict):
        abort(400)
    with transaction():
        process_later(payload)
    return {"status": "accepted"}, 200
