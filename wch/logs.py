"""One logging set-up for the web app, the workers and the scheduler: level, text or JSON, secrets masked.

``WCH_LOG_LEVEL`` sets the level of wch's (and Dramatiq's) loggers;
``WCH_LOG_FORMAT=json`` writes one JSON object per line for log shippers.
Libraries that chatter at INFO (pika on every connection, Alembic on every
start) are held at WARNING unless the level is DEBUG. Every record goes
through :class:`RedactSecrets`, so a token that slips into a message or a
traceback is masked as it is in the ledger and the panel.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import IO

from wch.redact import redact_text

TEXT_FORMAT = "%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s"
CHATTY = ("pika", "alembic")
# gunicorn logs through handlers of its own; they get wch's format and filter too.
GUNICORN = ("gunicorn.error", "gunicorn.access")


class RedactSecrets(logging.Filter):
    """Masks configured secrets and token-shaped text in a record's message, traceback and stack."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact_text(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.exc_text = redact_text(record.exc_text)
        record.stack_info = redact_text(record.stack_info)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``time``, ``level``, ``logger``, ``message``, ``process``, and ``exception``."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
            "thread": record.threadName,
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, ensure_ascii=False)


class _WchHandler(logging.StreamHandler):
    """The handler :func:`configure_logging` installs on the root logger (and replaces when called again)."""


def formatter_for(fmt: str) -> logging.Formatter:
    return JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT)


def configure_logging(*, level: str, fmt: str, stream: IO[str] | None = None) -> None:
    """Send every log record to ``stream`` (standard error) at ``level``, as ``fmt`` (``text`` or ``json``).

    Safe to call again: the handler it installed before is replaced, other handlers (a test runner's) stay.
    """
    root = logging.getLogger()
    formatter = formatter_for(fmt)
    handler = _WchHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(formatter)
    handler.addFilter(RedactSecrets())
    # dramatiq and periodiq call logging.basicConfig() before they import wch.actors: that
    # plain StreamHandler would print every record a second time, in their format.
    for old in [h for h in root.handlers if isinstance(h, _WchHandler) or type(h) is logging.StreamHandler]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in CHATTY:
        logging.getLogger(name).setLevel(level if level == "DEBUG" else logging.WARNING)
    for name in GUNICORN:
        for gunicorn_handler in logging.getLogger(name).handlers:
            gunicorn_handler.setFormatter(formatter)
            if not any(isinstance(f, RedactSecrets) for f in gunicorn_handler.filters):
                gunicorn_handler.addFilter(RedactSecrets())

