"""Stop a worker process at boot when its database's schema is older than this wch's."""

from __future__ import annotations

import sys

from dramatiq import Middleware

from wch.db import db
from wch.jobs.middleware.app_context import AppContext


class SchemaCheck(Middleware):
    """Before the worker consumes anything, checks that ``wch db upgrade`` has been run; else one line, status 2.

    Parameters:
      app_context: the middleware holding the worker's Flask app; it boots before this one.
    """

    def __init__(self, *, app_context: AppContext) -> None:
        self.app_context = app_context

    def before_worker_boot(self, broker, worker) -> None:
        # Alembic logs as it is imported: here, wch's logging is in place (wch.actors sets it up).
        from wch.migrations import SchemaBehind, check_schema

        with self.app_context.app.app_context():
            try:
                check_schema(db.engine)
            except SchemaBehind as error:
                # Every job would fail on a missing table or column: better not to start.
                print(f"wch: {error}", file=sys.stderr, flush=True)
                raise SystemExit(2) from None
