"""What a running wch app holds: its settings and where it publishes jobs, read through one accessor.

The entry points (actors, web views, admin views, commands) read the settings
here and pass what a service needs as arguments; domain code never imports
this module, so it runs the same with any settings a caller builds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import Flask, current_app

from wch.config import Settings

EXTENSION = "wch"


@dataclass(frozen=True)
class Runtime:
    """An app's wch state.

    Parameters:
      settings: the app's settings.
      publisher: the :class:`wch.jobs.publisher.Publisher` committed jobs are
        handed to, or ``None`` to leave them in the outbox (the in-process stub
        broker; see :func:`wch.jobs.broker.build_publisher`).
    """

    settings: Settings
    publisher: Any


def init_runtime(app: Flask, runtime: Runtime) -> None:
    app.extensions[EXTENSION] = runtime


def current() -> Runtime:
    """The runtime of the app whose context is pushed."""
    return current_app.extensions[EXTENSION]


def settings() -> Settings:
    """The settings of the app whose context is pushed."""
    return current().settings
