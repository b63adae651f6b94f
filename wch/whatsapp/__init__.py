"""The WhatsApp Cloud API: a small client and the errors its callers act on."""

from wch.whatsapp.client import WhatsAppClient
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
    "ConfigurationError",
    "NeedsTemplate",
    "RecipientUnreachable",
    "RetryLater",
    "StopSending",
    "WhatsAppClient",
    "WhatsAppError",
    "classify",
]
