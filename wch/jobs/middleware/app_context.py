"""Run every job inside a Flask application context."""

from __future__ import annotations

import threading

from dramatiq import Middleware
from dramatiq.middleware import MiddlewareError
from flask import Flask
from werkzeug.utils import import_string


class NoApp(MiddlewareError):
    """Raised when a message arrives before the worker has its Flask app."""


class AppContext(Middleware):
    """Pushes a Flask app context around each message.

    Parameters:
      app_factory: the import path of the function that builds the app
        (``"wch:create_app"``), called once per worker process, after the fork,
        with the worker's thread count (``threads=``).
        A path rather than the function: the app factory imports the actors,
        which are declared on the broker this middleware belongs to.

    Set ``app`` directly to run jobs against an app you already have (tests,
    the in-process runner).
    """

    def __init__(self, *, app_factory: str) -> None:
        self.app_factory = app_factory
        self.app: Flask | None = None
        self._local = threading.local()

    def before_worker_boot(self, broker, worker) -> None:
        # Before the consumers start, so no message arrives ahead of the app.
        if self.app is None:
            # The pool is sized for the worker's threads.
            self.app = import_string(self.app_factory)(threads=worker.worker_threads)

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
