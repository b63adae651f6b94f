"""Dramatiq middleware that ties wch's workers to its database."""

from wch.jobs.middleware.app_context import AppContext
from wch.jobs.middleware.heartbeat import Heartbeat
from wch.jobs.middleware.ledger import Ledger
from wch.jobs.middleware.metrics import JobMetrics
from wch.jobs.middleware.retries import FixedRetries
from wch.jobs.middleware.schema import SchemaCheck

__all__ = ["AppContext", "FixedRetries", "Heartbeat", "JobMetrics", "Ledger", "SchemaCheck"]
