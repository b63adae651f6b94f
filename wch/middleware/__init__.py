"""Dramatiq middleware that ties wch's workers to its database."""

from wch.middleware.app_context import AppContext
from wch.middleware.heartbeat import Heartbeat
from wch.middleware.ledger import Ledger
from wch.middleware.retries import FixedRetries

__all__ = ["AppContext", "FixedRetries", "Heartbeat", "Ledger"]
