"""The WhatsApp Cloud API: a small client, the errors its callers act on, and Meta's webhook signature.

Nothing here knows Flask or the database: callers pass settings in and act on the errors.
"""

from wch.whatsapp.client import DEFAULT_SENDER, MissingSetting, WhatsAppClient, shared_client
from wch.whatsapp.errors import (
    ConfigurationError,
    NeedsTemplate,
    RecipientUnreachable,
    RetryLater,
    StopSending,
    WhatsAppError,
    classify,
)

__all__ = [
    "DEFAULT_SENDER",
    "ConfigurationError",
    "MissingSetting",
    "NeedsTemplate",
    "RecipientUnreachable",
    "RetryLater",
    "StopSending",
    "WhatsAppClient",
    "WhatsAppError",
    "classify",
    "shared_client",
]
