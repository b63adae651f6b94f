"""Every job type wch runs. ``dramatiq wch.actors`` and ``periodiq wch.actors`` import this.

The broker is set up before any actor module is imported, as Dramatiq requires.
"""

from wch.broker import setup_broker
from wch.config import ConfigError

try:
    broker = setup_broker()
except ConfigError as error:
    raise SystemExit(f"wch: {error}") from None

from wch.actors import broadcast, carts, maintenance, reminders, sync  # noqa: E402

__all__ = ["broadcast", "broker", "carts", "maintenance", "reminders", "sync"]
