"""The signature WooCommerce puts on its webhook deliveries: ``X-WC-Webhook-Signature``.

The same two functions, with the same arguments, as :mod:`wch.whatsapp.signature`
for Meta's webhooks.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

HEADER = "X-WC-Webhook-Signature"


def sign(body: bytes, secret: str) -> str:
    """The header value WooCommerce sends with ``body``: base64 of HMAC-SHA256 of it with the webhook secret."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def valid_signature(body: bytes, header: str | None, secret: str) -> bool:
    """Whether ``header`` is the signature of the raw ``body`` under ``secret`` (constant time)."""
    if not header:
        return False
    return hmac.compare_digest(header.strip().encode("latin-1", "replace"), sign(body, secret).encode())
