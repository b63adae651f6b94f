"""Run every job inside a Flask application context."""

from __future__ import annotations

import threading
from collections.abc import Callable

from dramatiq import Middleware
from dramatiq.middleware import MiddlewareError
from flask import Flask


class NoApp(MiddlewareError):
    """Raised when a message arrives before the worker has its Flask app."""


class AppContext(Middleware):
    """Pushes a Flask app context around each message.

    Parameters:
      create_app: builds the app once per worker process, after the fork;
        defaults to :func:`wch.create_app`.

    Set ``app`` directly to run jobs against an app you already have (tests,
    the in-process runner).
    """

    def __init__(self, *, create_app: Callable[[], Flask] | None = None) -> None:
        self.create_app = create_app
        self.app: Flask | None = None
        self._local = threading.local()

    def before_worker_boot(self, broker, worker) -> None:
        # Before the consumers start, so no message arrives ahead of the app.
        if self.app is None:
            if self.create_app is None:
                from wch import create_app

                self.create_app = create_app
            self.app = self.create_app()

    def before_process_message(self, broker, message) -> None:
        if self.app is None:
            raise NoApp("the worker has no Flask app; set AppContext.app or boot a worker")
        context = self.app.app_context()
        context.push()
        self._local.context = context

    def after_process_message(self, broker, message, *, result=None, exception=None) -> None:
        context = getattr(self._local, "context", None)
        if context is not None:
            self._local.context = None
            context.pop()

    def after_skip_message(self, broker, message) -> None:
        self.after_process_message(broker, message)
