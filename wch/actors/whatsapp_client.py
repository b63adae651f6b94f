"""The WhatsApp client the actors use: Meta's Graph API, or the sandbox (``WHATSAPP_MODE=sandbox``).

In the sandbox, the statuses Meta would send to ``/webhooks/whatsapp`` are
dispatched as the very job that webhook dispatches, a moment later, so
campaigns and order messages get their delivered and read counts as they
would in production.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from flask import Flask, current_app

from wch import runtime
from wch.db import transaction
from wch.messaging import events
from wch.whatsapp import WhatsAppClient, shared_client
from wch.whatsapp.sandbox import sandbox_client

logger = logging.getLogger(__name__)

SANDBOX = "wch.whatsapp_sandbox"
_lock = threading.Lock()


def client() -> WhatsAppClient:
    """The client for the current app's settings, made once per app so its pooled connections are reused."""
    settings = runtime.settings()
    if not settings.whatsapp_sandbox:
        return shared_client(settings)
    app = current_app._get_current_object()
    with _lock:
        if SANDBOX not in app.extensions:
            app.extensions[SANDBOX] = sandbox_client(settings, report=lambda payload, delay: _deliver(app, payload,
                                                                                                      delay))
        return app.extensions[SANDBOX]


def _deliver(app: Flask, payload: dict[str, Any], delay: float) -> None:
    # Called inside a send, possibly on a campaign's sending thread: a context and a transaction of its own.
    try:
        with app.app_context(), transaction():
            events.process_later(payload, delay=delay)
    except Exception:
        # The message was "sent"; a lost status must not turn that into a failure.
        logger.exception("The WhatsApp sandbox could not deliver a status.")
