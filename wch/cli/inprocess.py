"""wch in one process on an in-memory broker: for trying it without RabbitMQ.

Run by ``wch up --in-process``. Jobs run in worker threads beside the web
app; the periodic work runs on a timer thread. Jobs dispatched from another
process (the CLI) reach the worker through the outbox relay.
"""

from __future__ import annotations

import argparse
import logging
import threading

import dramatiq
from werkzeug.serving import run_simple
from werkzeug.utils import import_string

from wch.cli import APP_FACTORY
from wch.config import Settings
from wch.db import utcnow
from wch.jobs.broker import setup_broker
from wch.jobs.middleware import AppContext
from wch.jobs.outbox import relay
from wch.logs import configure_logging

RELAY_EVERY = 2.0
logger = logging.getLogger(__name__)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m wch.cli.inprocess")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    options = parser.parse_args()
    settings = Settings.from_env()
    configure_logging(level=settings.log_level, fmt=settings.log_format)
    broker = setup_broker(settings, app_factory=APP_FACTORY)
    app = import_string(APP_FACTORY)(publisher=broker)
    next(m for m in broker.middleware if isinstance(m, AppContext)).app = app
    worker = dramatiq.Worker(broker, worker_threads=4)
    worker.start()
    threading.Thread(target=_schedule, args=(app, broker), name="wch-scheduler", daemon=True).start()
    try:
        run_simple(options.host, options.port, app, threaded=True)
    finally:
        worker.stop()


def _schedule(app, broker) -> None:
    """Relay the outbox every few seconds and send periodic actors when their cron spec is due."""
    periodic = [actor for actor in broker.actors.values() if "periodic" in actor.options]
    last_minute = None
    stop = threading.Event()
    while not stop.wait(RELAY_EVERY):
        try:
            with app.app_context():
                relay()
            minute = utcnow().replace(second=0, microsecond=0)
            if minute != last_minute:
                last_minute = minute
                for actor in periodic:
                    if actor.options["periodic"].validate(minute):
                        actor.send()
        except Exception:
            # A locked database or a failing trigger must not end the schedule for good.
            logger.exception("The in-process scheduler failed; trying again in %s s.", RELAY_EVERY)


if __name__ == "__main__":
    main()
