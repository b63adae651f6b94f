"""Every job type wch runs, one module per queue. ``dramatiq wch.actors`` and ``periodiq wch.actors`` import this.

The broker is set up before any actor module is imported, as Dramatiq requires.
Actors are thin: they read the settings, call the domain, and commit. Importing this
package also sets up logging (``WCH_LOG_LEVEL``, ``WCH_LOG_FORMAT``) for the worker
and the scheduler, and stops them with one line when a setting is wrong.
"""

import sys

import dramatiq

from wch.config import ConfigError, Settings
from wch.jobs.broker import setup_broker
from wch.logs import configure_logging


def _boot() -> dramatiq.Broker:
    try:
        settings = Settings.from_env()
    except ConfigError as error:
        # One line and the wch command's status; raising would add a traceback to the worker's log.
        print(f"wch: {error}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    configure_logging(level=settings.log_level, fmt=settings.log_format)
    # The app factory by its import path: it imports this package to declare the actors.
    return setup_broker(settings, app_factory="wch:create_app")


broker = _boot()

from wch.actors import broadcast, carts, maintenance, sync  # noqa: E402

__all__ = ["broadcast", "broker", "carts", "maintenance", "sync"]
