"""Meta's error answers, sorted into the few kinds a job acts on.

=====================  ==============================================================
``RetryLater``         try again later: HTTP 5xx, timeouts, connection errors, rate
                       limits and transient codes (1, 2, 4, 17, 32, 613, 80007, 80014,
                       130429, 131000, 131016, 131056)
``NeedsTemplate``      131047: outside the 24 h window a free-form message is refused
``RecipientUnreachable`` 131026: this number cannot receive messages; other recipients can
``StopSending``        sending more makes things worse or cannot succeed until a person
                       acts: 131048 (spam rate limit), 131049 (ecosystem engagement
                       limit), 368 (blocked for policy violations), 130497 (country
                       restricted), 131031 (business account locked), 131042 (payment
                       problem), 131057 (account in maintenance mode)
``ConfigurationError`` our setup is wrong: 100, 190, 200-299, 10, 132xxx (templates)
``WhatsAppError``      anything else; jobs retry it on their ordinary schedule
=====================  ==============================================================

Every message is built from Meta's answer, never from the request, and is run
through :func:`wch.redact.redact_text`, so the access token cannot leak into a
log line or a ledger row.
"""

from __future__ import annotations

from typing import Any

from wch.redact import redact_text

RETRY_CODES = frozenset({1, 2, 4, 17, 32, 613, 80007, 80014, 130429, 131000, 131016, 131056})
STOP_CODES = frozenset({131048, 131049, 368, 130497, 131031, 131042, 131057})
CONFIG_CODES = frozenset({10, 100, 190})
NEEDS_TEMPLATE = 131047
UNREACHABLE = 131026


class WhatsAppError(Exception):
    """An error answer (or no answer) from the WhatsApp Cloud API.

    Parameters:
      message: what went wrong, free of secrets.
      code: Meta's error code, if it sent one.
      http_status: the HTTP status, if there was a response.
      retry_after: seconds Meta asked us to wait, if it said.
      subcode: Meta's ``error_subcode``, if any.
      fbtrace_id: Meta's trace id, for a support ticket.
      sent_unknown: the request may have reached Meta but no usable answer
        came back (a read timeout, a connection broken before or while the
        answer was read, a 2xx that is not JSON or has no message id): Meta
        may have acted on it, so a message must not be sent again blindly.
    """

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        http_status: int | None = None,
        retry_after: float | None = None,
        subcode: int | None = None,
        fbtrace_id: str | None = None,
        sent_unknown: bool = False,
    ) -> None:
        super().__init__(redact_text(message))
        self.sent_unknown = sent_unknown
        self.code = code
        self.http_status = http_status
        self.retry_after = retry_after
        self.subcode = subcode
        self.fbtrace_id = fbtrace_id

    def __reduce__(self):
        # Keep the attributes when the error crosses a process boundary.
        return _rebuild, (type(self), str(self), self.__dict__)


def _rebuild(cls, message, attributes):
    error = cls(message)
    error.__dict__.update(attributes)
    return error


class RetryLater(WhatsAppError):
    """A transient failure: the same request may succeed later."""


class NeedsTemplate(WhatsAppError):
    """The customer's 24-hour window is closed; only a template message can reach them."""


class RecipientUnreachable(WhatsAppError):
    """This recipient cannot get WhatsApp messages (no account, old app); do not retry."""


class StopSending(WhatsAppError):
    """Meta is limiting or blocking the business; stop (pause a campaign) until someone acts."""


class ConfigurationError(WhatsAppError):
    """wch's WhatsApp setup is wrong (token, ids, permissions, template); retrying cannot help."""


def kind_of(code: int | None, http_status: int | None) -> type[WhatsAppError]:
    """Which error class a Graph error ``code`` (and HTTP status) belongs to."""
    if code is not None:
        if code in RETRY_CODES:
            return RetryLater
        if code == NEEDS_TEMPLATE:
            return NeedsTemplate
        if code == UNREACHABLE:
            return RecipientUnreachable
        if code in STOP_CODES:
            return StopSending
        if code in CONFIG_CODES or 200 <= code <= 299 or 132000 <= code <= 132999:
            return ConfigurationError
    if http_status is not None and (http_status >= 500 or http_status == 429):
        return RetryLater
    return WhatsAppError


def classify(
    http_status: int | None,
    error_payload: Any,
    *,
    retry_after: float | None = None,
) -> WhatsAppError:
    """The error for an HTTP status and Graph's JSON answer (``{"error": {...}}`` or its inner object)."""
    error = error_payload.get("error", error_payload) if isinstance(error_payload, dict) else None
    if not isinstance(error, dict):
        error = {}
    code = _int(error.get("code"))
    subcode = _int(error.get("error_subcode"))
    text = str(error.get("message") or "no error message")
    details = (error.get("error_data") or {}).get("details") if isinstance(error.get("error_data"), dict) else None
    if details:
        text = f"{text} ({details})"
    fbtrace_id = error.get("fbtrace_id") if isinstance(error.get("fbtrace_id"), str) else None
    label = f"WhatsApp API error {code}" if code is not None else "WhatsApp API error"
    if http_status is not None:
        label += f" (HTTP {http_status})"
    message = f"{label}: {text}"
    if fbtrace_id:
        message += f" [fbtrace_id {fbtrace_id}]"
    cls = kind_of(code, http_status)
    return cls(
        message,
        code=code,
        http_status=http_status,
        retry_after=retry_after,
        subcode=subcode,
        fbtrace_id=fbtrace_id,
    )


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None
