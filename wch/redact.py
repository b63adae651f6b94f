"""Hide secrets in text and job arguments before they are stored or shown."""

from __future__ import annotations

import re
from typing import Any

MASK = "[redacted]"
SECRET_KEY_NAMES = re.compile(r"(token|secret|passw(or)?d|api[_-]?key|authori[sz]ation|signature|credential)", re.I)
_SECRET_IN_TEXT = [
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"(?i)((?:access_token|token|secret|password|api_key|apikey)[\"']?\s*[=:]\s*[\"']?)[^\s&\"',}]+"),
    re.compile(r"\bEAA[A-Za-z0-9]{20,}\b"),  # Meta access tokens start with EAA
]
# Replaced, never mutated, so threads redacting while another registers see a whole set.
_known_secrets: frozenset[str] = frozenset()


def register_secret(value: str | None) -> None:
    """Mask this exact value wherever it appears (configured tokens, app secrets)."""
    global _known_secrets
    if value and len(value) >= 6:
        _known_secrets = _known_secrets | {value}


def redact_text(text: str | None) -> str | None:
    if not text:
        return text
    for secret in _known_secrets:
        text = text.replace(secret, MASK)
    for pattern in _SECRET_IN_TEXT:
        text = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + MASK, text)
    return text


def redact_value(value: Any) -> Any:
    """A copy of a JSON-like value with secret-looking keys and strings masked."""
    if isinstance(value, dict):
        return {k: MASK if SECRET_KEY_NAMES.search(str(k)) else redact_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_value(v) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    return value
