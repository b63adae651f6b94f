"""gunicorn's own log lines (its start, its workers, the access log) in wch's format, secrets masked.

``wch web`` runs gunicorn with ``--logger-class wch.web.gunicorn_logger.GunicornLogger``:
gunicorn sets its logging up before it loads the app, so without this its
start-up lines would keep gunicorn's format whatever ``WCH_LOG_FORMAT`` says.
"""

from __future__ import annotations

import logging
import sys

from gunicorn.glogging import Logger

from wch.config import ConfigError, Settings
from wch.logs import RedactSecrets, formatter_for


class GunicornLogger(Logger):
    """gunicorn's logger, with each of its handlers formatted as ``WCH_LOG_FORMAT`` asks."""

    def setup(self, cfg) -> None:
        super().setup(cfg)
        try:
            settings = Settings.from_env()
        except ConfigError as error:
            # Before gunicorn forks anything: one line, the wch command's status.
            print(f"wch: {error}", file=sys.stderr, flush=True)
            raise SystemExit(2) from None
        formatter = formatter_for(settings.log_format)
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                handler.setFormatter(formatter)
                if not any(isinstance(f, RedactSecrets) for f in handler.filters):
                    handler.addFilter(RedactSecrets())
        logging.getLogger("gunicorn.error").setLevel(settings.log_level)
