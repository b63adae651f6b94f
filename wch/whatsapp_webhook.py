"""``/webhooks/whatsapp``: Meta's verification handshake and signed event deliveries.

A delivery is checked against ``X-Hub-Signature-256`` (HMAC-SHA256 of the raw
body with ``WHATSAPP_APP_SECRET``) and handed to a ``process_whatsapp_webhook``
job; Meta gets its 200 as soon as the job is in the ledger.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging

from flask import Blueprint, abort, current_app, request

from wch.db import db
from wch.dispatcher import dispatch

logger = logging.getLogger(__name__)

bp = Blueprint("whatsapp_webhook", __name__)
# Meta batches at most a few hundred events; read no more than this before checking the signature.
MAX_BODY = 1024 * 1024


@bp.get("/webhooks/whatsapp")
def verify():
    """Answer Meta's subscription check with the challenge, for our verify token only."""
    expected = current_app.extensions["wch"].settings.whatsapp_verify_token
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
    secret = current_app.extensions["wch"].settings.whatsapp_app_secret
    if not secret:
        logger.error("WHATSAPP_APP_SECRET is not set; refusing a WhatsApp webhook delivery.")
        abort(503)
    request.max_content_length = MAX_BODY
    body = request.get_data(cache=False)
    if not valid_signature(body, request.headers.get("X-Hub-Signature-256", ""), secret):
        abort(401)
    try:
        payload = json.loads(body)
    except ValueError:
        abort(400)
    if not isinstance(payload, dict):
        abort(400)
    # unique: Meta redelivers the same payload when it misses our answer.
    dispatch("process_whatsapp_webhook", {"payload": payload}, unique=True)
    db.session.commit()
    return {"status": "accepted"}, 200


def valid_signature(body: bytes, header: str, secret: str) -> bool:
    """Whether ``header`` is ``sha256=<hex HMAC-SHA256 of body with secret>``."""
    if not header.startswith("sha256="):
        return False
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(header.removeprefix("sha256=").encode(), expected.encode())


def sign(body: bytes, secret: str) -> str:
    """The ``X-Hub-Signature-256`` value Meta would send for ``body`` (for tests and tools)."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
