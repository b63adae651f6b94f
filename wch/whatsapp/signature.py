"""The signature Meta puts on its webhook deliveries: ``X-Hub-Signature-256``.

The same two functions, with the same arguments, as :mod:`wch.store.signature`
for the store's webhooks.
"""

from __future__ import annotations

import hashlib
import hmac

HEADER = "X-Hub-Signature-256"
PREFIX = "sha256="


def sign(body: bytes, secret: str) -> str:
    """The header value Meta sends with ``body``: ``sha256=<hex HMAC-SHA256 of body with the app secret>``."""
    return PREFIX + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def valid_signature(body: bytes, header: str | None, secret: str) -> bool:
    """Whether ``header`` is the signature of the raw ``body`` under ``secret`` (constant time)."""
    if not header or not header.startswith(PREFIX):
        return False
    return hmac.compare_digest(header.encode("latin-1", "replace"), sign(body, secret).encode())
