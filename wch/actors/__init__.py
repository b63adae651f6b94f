"""Every job type wch runs, one module per queue. ``dramatiq wch.actors`` and ``periodiq wch.actors`` import this.

The broker is set up before any actor module is imported, as Dramatiq requires.
Actors are thin: they read the settings, call the domain, and commit.
"""

from wch.config import ConfigError
from wch.jobs.broker import setup_broker

try:
    # The app factory by its import path: it imports this package to declare the actors.
    broker = setup_broker(app_factory="wch:create_app")
except ConfigError as error:
    raise SystemExit(f"wch: {error}") from None

from wch.actors import broadcast, carts, maintenance, sync  # noqa: E402

__all__ = ["broadcast", "broker", "carts", "maintenance", "sync"]
