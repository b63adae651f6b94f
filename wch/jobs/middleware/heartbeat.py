"""Worker processes announce themselves and keep a heartbeat in the database."""

from __future__ import annotations

import logging
import socket
import threading

from dramatiq import Middleware
from sqlalchemy import delete, update
from sqlalchemy.exc import SQLAlchemyError

from wch.db import db, driver_message, transaction, utcnow
from wch.jobs.middleware.app_context import AppContext
from wch.jobs.middleware.ledger import worker_id
from wch.models import WorkerProcess

logger = logging.getLogger(__name__)


class Heartbeat(Middleware):
    """Registers the worker process and refreshes its ``heartbeat_at``.

    A process that cannot reach its database at boot keeps trying, every
    second, and announces itself as soon as it can: the lifeline takes the
    jobs of a process with no heartbeat for those of a dead one.

    Parameters:
      app_context: the middleware holding the process's Flask app.
      interval: seconds between heartbeats.
    """

    def __init__(self, *, app_context: AppContext, interval: float) -> None:
        self.app_context = app_context
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._id: str | None = None
        self._queues: list[str] = []
        self._threads = 0
        self._started_at = utcnow()
        self._announced = False

    def after_worker_boot(self, broker, worker) -> None:
        self._id = worker_id()
        self._queues = sorted(worker.consumer_whitelist or broker.get_declared_queues())
        self._threads = worker.worker_threads
        self._started_at = utcnow()
        self._announced = False
        self._record()
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name="wch-heartbeat", daemon=True)
        self._thread.start()

    def after_worker_shutdown(self, broker, worker) -> None:
        # After the jobs in hand have finished: until then the worker is alive,
        # and the lifeline must not take its jobs for interrupted.
        self._stop.set()
        if self._id is None or not self._announced:
            return
        try:
            with self.app_context.app.app_context(), transaction():
                db.session.execute(delete(WorkerProcess).where(WorkerProcess.id == self._id))
        except SQLAlchemyError as error:
            logger.warning("Could not remove this worker from the database (%s); it will show as silent.",
                           driver_message(error))

    def _beat(self) -> None:
        while not self._stop.wait(self.interval if self._announced else min(self.interval, 1.0)):
            self._record()

    def _record(self) -> None:
        """Announce the process (the first time, or after its row was removed), else refresh its heartbeat."""
        try:
            with self.app_context.app.app_context(), transaction():
                now = utcnow()
                beat = update(WorkerProcess).where(WorkerProcess.id == self._id).values(heartbeat_at=now)
                if not self._announced or db.session.execute(beat).rowcount == 0:
                    row = db.session.get(WorkerProcess, self._id) or WorkerProcess(id=self._id)
                    row.host, row.pid = socket.gethostname(), int(self._id.rsplit(":", 1)[1])
                    row.queues, row.threads = self._queues, self._threads
                    row.started_at, row.heartbeat_at = self._started_at, now
                    db.session.add(row)
            self._announced = True
        except SQLAlchemyError as error:
            # Every beat of an outage would log a traceback; the driver's message says it all.
            logger.warning("Could not record the worker heartbeat (%s).", driver_message(error))
        except Exception:
            logger.warning("Could not record the worker heartbeat.", exc_info=True)
