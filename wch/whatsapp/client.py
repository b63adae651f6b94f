"""A small, thread-safe client of the WhatsApp Cloud API (Graph API) on ``requests``."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import NameResolutionError, NewConnectionError

from wch.config import ConfigError, Settings
from wch.redact import register_secret
from wch.whatsapp.errors import ConfigurationError, RetryLater, WhatsAppError, classify

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = (3.05, 10)
MAX_CALLBACK_DATA = 512  # bytes Meta keeps in biz_opaque_callback_data
# What a sending number is called (its send budget, its standing) before WHATSAPP_PHONE_NUMBER_ID is set.
DEFAULT_SENDER = "default"
# Connections a shared client keeps open, at least: a campaign batch sends this many at once.
SHARED_POOL_SIZE = 64

# Raised before a request leaves: nothing reached Meta.
_NEVER_SENT = (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema, requests.exceptions.InvalidSchema,
               requests.exceptions.InvalidHeader, requests.exceptions.URLRequired,
               requests.exceptions.InvalidJSONError)

_shared_lock = threading.Lock()
_shared: dict[tuple, WhatsAppClient] = {}


class MissingSetting(ConfigurationError, ConfigError):
    """A WhatsApp setting the job needs is not configured; the message names the variable."""


class WhatsAppClient:
    """Sends messages and catalog updates through Meta's Graph API.

    Parameters:
      api_url: base URL including the Graph version (``https://graph.facebook.com/v21.0``).
      access_token: the system-user token; sent as a Bearer header, never logged.
      phone_number_id: the business phone number messages are sent from.
      catalog_id: the commerce catalog ``items_batch`` writes to.
      timeout: ``(connect, read)`` seconds for each call.
      pool_size: connections kept open, enough for that many concurrent sends.

    One client may be shared by many threads: the session is configured here
    and never changed afterwards.
    """

    def __init__(
        self,
        *,
        api_url: str,
        access_token: str,
        phone_number_id: str | None,
        catalog_id: str | None = None,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        pool_size: int = 64,
    ) -> None:
        if not access_token:
            raise MissingSetting("WHATSAPP_ACCESS_TOKEN is not set")
        register_secret(access_token)
        self.api_url = api_url.rstrip("/")
        self.phone_number_id = phone_number_id or None
        self.catalog_id = catalog_id or None
        self.timeout = timeout
        self.session = requests.Session()
        adapter = HTTPAdapter(pool_connections=pool_size, pool_maxsize=pool_size, max_retries=0)
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)
        self.session.headers.update({"Authorization": f"Bearer {access_token}", "Accept": "application/json"})

    @classmethod
    def from_settings(cls, settings: Settings, **options: Any) -> WhatsAppClient:
        """A client configured by ``WHATSAPP_*`` settings; raises :class:`MissingSetting` if the token is unset."""
        return cls(
            api_url=settings.whatsapp_api_url,
            access_token=settings.whatsapp_access_token,
            phone_number_id=settings.whatsapp_phone_number_id,
            catalog_id=settings.whatsapp_catalog_id,
            timeout=(settings.whatsapp_connect_timeout, settings.whatsapp_read_timeout),
            **options,
        )

    @property
    def sender(self) -> str:
        """The key of the sending number's budget and standing: its phone number id."""
        return self.phone_number_id or DEFAULT_SENDER

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> WhatsAppClient:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # -- messages ---------------------------------------------------------

    def send_text(self, to: str, body: str, *, callback_data: str | None = None) -> str:
        """Send a free-form text (only inside the customer's 24 h window); returns the message id (wamid)."""
        return self._send(to, {"type": "text", "text": {"preview_url": False, "body": body}}, callback_data)

    def send_template(
        self,
        to: str,
        name: str,
        language: str,
        parameters: list[str] | None = None,
        *,
        callback_data: str | None = None,
    ) -> str:
        """Send an approved template; ``parameters`` fill its body's ``{{1}}``, ``{{2}}``…; returns the wamid."""
        template: dict[str, Any] = {"name": name, "language": {"code": language}}
        if parameters:
            template["components"] = [
                {"type": "body", "parameters": [{"type": "text", "text": str(value)} for value in parameters]}
            ]
        return self._send(to, {"type": "template", "template": template}, callback_data)

    def _send(self, to: str, content: dict[str, Any], callback_data: str | None) -> str:
        if not self.phone_number_id:
            raise MissingSetting("WHATSAPP_PHONE_NUMBER_ID is not set")
        payload = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": to, **content}
        if callback_data is not None:
            if len(callback_data.encode()) > MAX_CALLBACK_DATA:
                raise ValueError(f"callback_data is longer than {MAX_CALLBACK_DATA} bytes")
            payload["biz_opaque_callback_data"] = callback_data
        answer = self._call("POST", f"{self.phone_number_id}/messages", json=payload)
        try:
            wamid = answer["messages"][0]["id"]
        except (KeyError, IndexError, TypeError):
            wamid = None
        if not isinstance(wamid, str) or not wamid:
            # A 2xx without the message id: Meta may well have accepted the message.
            raise RetryLater(f"unexpected answer to a send: no message id in {_short(answer)}", sent_unknown=True)
        return wamid

    def phone_number_standing(self) -> dict[str, Any]:
        """What Meta says of the sending number: ``quality_rating``, ``display_phone_number`` and the business
        portfolio's ``whatsapp_business_manager_messaging_limit``."""
        if not self.phone_number_id:
            raise MissingSetting("WHATSAPP_PHONE_NUMBER_ID is not set")
        return self._call("GET", self.phone_number_id, params={
            "fields": "display_phone_number,quality_rating,whatsapp_business_manager_messaging_limit"})

    # -- catalog ----------------------------------------------------------

    def items_batch(self, requests: list[dict[str, Any]], *, item_type: str = "PRODUCT_ITEM") -> dict[str, Any]:
        """Create, update (upsert) or delete catalog items in one call; returns Meta's answer (``handles``)."""
        if not requests:
            raise ValueError("items_batch needs at least one request")
        body = {"item_type": item_type, "allow_upsert": True, "requests": requests}
        return self._call("POST", f"{self._catalog()}/items_batch", json=body)

    def batch_status(self, handle: str) -> dict[str, Any]:
        """Meta's processing status of an ``items_batch`` call (``{"data": [{"status": ..., "errors": ...}]}``)."""
        return self._call("GET", f"{self._catalog()}/check_batch_request_status", params={"handle": handle})

    def _catalog(self) -> str:
        if not self.catalog_id:
            raise MissingSetting("WHATSAPP_CATALOG_ID is not set")
        return self.catalog_id

    # -- transport --------------------------------------------------------

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        where = f"{method} /{path}"
        try:
            response = self.session.request(method, f"{self.api_url}/{path}", timeout=self.timeout, **kwargs)
        except requests.ConnectTimeout:
            raise RetryLater(f"WhatsApp API timed out connecting ({where})") from None
        except requests.Timeout as error:
            raise RetryLater(f"WhatsApp API timed out ({where}): {type(error).__name__}", sent_unknown=True) from None
        except requests.ConnectionError as error:
            if _never_connected(error):
                raise RetryLater(f"WhatsApp API unreachable ({where}): {_reason(error)}") from None
            raise RetryLater(f"WhatsApp API connection lost ({where}): {_reason(error)}", sent_unknown=True) from None
        except _NEVER_SENT as error:
            raise WhatsAppError(f"WhatsApp API request not sent ({where}): {type(error).__name__}") from None
        except requests.RequestException as error:
            # The answer broke off while it was read (ChunkedEncodingError and the like): Meta had the request.
            raise RetryLater(f"WhatsApp API answer broken off ({where}): {type(error).__name__}",
                             sent_unknown=True) from None
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if response.status_code < 400:
            if isinstance(answer, dict) and "error" not in answer:
                logger.debug("%s -> HTTP %s", where, response.status_code)
                return answer
            # Meta said yes but we cannot read what it did: it may have acted on the request.
            raise RetryLater(f"WhatsApp API gave an unreadable answer ({where}, HTTP {response.status_code}): "
                             f"{_short(response.text)}", http_status=response.status_code, sent_unknown=True)
        if not isinstance(answer, dict):
            answer = {"error": {"message": f"non-JSON answer: {_short(response.text)}"}}
        error = classify(response.status_code, answer, retry_after=_retry_after(response))
        logger.warning("%s failed: %s", where, error)
        raise error


def shared_client(settings: Settings) -> WhatsAppClient:
    """The process's client for these settings, made once so its pooled connections are reused job after job."""
    key = (settings.whatsapp_api_url, settings.whatsapp_access_token, settings.whatsapp_phone_number_id,
           settings.whatsapp_catalog_id, settings.whatsapp_connect_timeout, settings.whatsapp_read_timeout)
    with _shared_lock:
        client = _shared.get(key)
        if client is None:
            pool_size = max(SHARED_POOL_SIZE, settings.broadcast_batch_size)
            client = _shared[key] = WhatsAppClient.from_settings(settings, pool_size=pool_size)
        return client


def _never_connected(error: requests.ConnectionError) -> bool:
    # urllib3 wraps a refused or unresolvable connection in NewConnectionError:
    # nothing was sent, so sending again cannot duplicate anything.
    reason = getattr(error.args[0], "reason", None) if error.args else None
    return isinstance(reason, (NewConnectionError, NameResolutionError))


def _reason(error: requests.ConnectionError) -> str:
    inner = error.args[0] if error.args else None
    # urllib3 keeps the cause in .reason (MaxRetryError) or as the last argument (ProtocolError).
    reason = getattr(inner, "reason", None) or (inner.args[-1] if isinstance(inner, Exception) and inner.args
                                                 and isinstance(inner.args[-1], Exception) else None)
    return type(reason or error).__name__


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError):
        return None


def _short(value: Any, limit: int = 200) -> str:
    text = str(value)
    return text if len(text) <= limit else text[:limit] + "…"
