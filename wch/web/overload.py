"""503 with ``Retry-After`` when the database cannot serve a request now: the pool is exhausted, or it is unreachable.

Both are passing conditions, and the store and Meta retry a webhook answered
503: a 500 would count as a failed delivery (WooCommerce disables a webhook
after repeated ones), and waiting longer would hang the request.
"""

from __future__ import annotations

import logging

from flask import Flask, jsonify, request
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from wch.db import db, driver_message

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5


def init_overload(app: Flask) -> None:
    app.register_error_handler(PoolTimeout, _busy)
    app.register_error_handler(OperationalError, _unreachable)


def _busy(error: PoolTimeout):
    logger.warning("%s %s answered 503: every database connection is in use (%s).",
                   request.method, request.path, error)
    return _unavailable("busy: every database connection is in use")


def _unreachable(error: OperationalError):
    logger.error("%s %s answered 503: the database is unreachable (%s).",
                 request.method, request.path, driver_message(error))
    db.session.rollback()
    return _unavailable("the database is unreachable")


def _unavailable(reason: str):
    response = jsonify(outcome="unavailable", reason=reason)
    response.status_code = 503
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response
