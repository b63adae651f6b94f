"""Job counters and durations for Prometheus, kept by the workers themselves: no query per scrape.

Each worker process counts its jobs in prometheus_client's multiprocess
files; one exposition server per ``dramatiq`` command (a Dramatiq fork
process) adds up the files of all its worker processes and serves them on
``WCH_METRICS_HOST:WCH_METRICS_PORT``. Prometheus scrapes every worker
machine there, and ``/metrics`` on the web app for the ledger's gauges.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from dramatiq import Middleware

from wch.config import Settings
from wch.logs import configure_logging

logger = logging.getLogger(__name__)

# Seconds: jobs are calls to Meta (tens of milliseconds to seconds) and batch walks (minutes).
BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def metrics_dir() -> str:
    """Where this ``dramatiq`` command's processes keep their counters: one folder per main process.

    Worker processes and the exposition fork are all children of Dramatiq's
    main process, so they agree on it without being told.
    """
    return os.environ.get(MULTIPROC_ENV) or os.path.join(tempfile.gettempdir(), f"wch-metrics-{os.getppid()}")


def _use_multiprocess_files(path: str) -> None:
    # prometheus_client picks its value store when first imported; set the folder before that,
    # and switch the store if something imported it already.
    os.makedirs(path, exist_ok=True)
    os.environ[MULTIPROC_ENV] = path
    if "prometheus_client" in sys.modules:
        from prometheus_client import values

        values.ValueClass = values.get_value_class()


class JobMetrics(Middleware):
    """Counts finished attempts by job type and outcome, and times them, in Dramatiq worker processes.

    Parameters:
      host, port: where the exposition server listens (``port=0``: no server, and nothing is counted).

    ``wch_jobs_total{type, outcome}``: ``succeeded``, ``failed`` (for good),
    ``retrying`` (failed, another attempt is scheduled) or ``skipped`` (a
    canceled job, a duplicate copy, a late periodic trigger).
    ``wch_job_duration_seconds{type}``: time in the actor, per attempt.
    Placed before the retries middleware: Dramatiq runs ``after_*`` hooks in
    reverse order, so the outcome is read after retries has decided it.
    Only processes started by the ``dramatiq`` command count (the in-process
    runner and the tests' workers do not boot a process).
    """

    def __init__(self, *, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._jobs = None
        self._durations = None
        self._started: dict[str, float] = {}

    @property
    def forks(self) -> list[Callable[[], int]]:
        return [serve_metrics] if self.port else []

    def after_process_boot(self, broker) -> None:
        if not self.port:
            return
        _use_multiprocess_files(metrics_dir())
        from prometheus_client import CollectorRegistry, Counter, Histogram

        registry = CollectorRegistry()  # the files are the store; this registry is never served
        self._jobs = Counter("wch_jobs", "Job attempts finished, by type and outcome", ["type", "outcome"],
                             registry=registry)
        self._durations = Histogram("wch_job_duration_seconds", "Time an attempt spent in its actor, by type",
                                    ["type"], buckets=BUCKETS, registry=registry)

    def after_worker_shutdown(self, broker, worker) -> None:
        if self._jobs is not None:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(os.getpid())

    def before_process_message(self, broker, message) -> None:
        if self._jobs is not None:
            self._started[message.message_id] = time.monotonic()

    def after_process_message(self, broker, message, *, result=None, exception=None) -> None:
        if self._jobs is None:
            return
        started = self._started.pop(message.message_id, None)
        outcome = "succeeded" if exception is None else "failed" if message.failed else "retrying"
        self._count(message.actor_name, outcome, None if started is None else time.monotonic() - started)

    def after_skip_message(self, broker, message) -> None:
        if self._jobs is None:
            return
        self._started.pop(message.message_id, None)
        self._count(message.actor_name, "skipped", None)

    def _count(self, job_type: str, outcome: str, seconds: float | None) -> None:
        try:
            if seconds is not None:
                self._durations.labels(job_type).observe(seconds)
            self._jobs.labels(job_type, outcome).inc()
        except Exception:
            # A metrics file that cannot be written must never change what becomes of a job.
            logger.exception("Could not count a %s job.", job_type)


def serve_metrics() -> int:
    """Serve the sum of every worker process's counters (run by Dramatiq in a fork process of its own)."""
    settings = Settings.from_env()
    configure_logging(level=settings.log_level, fmt=settings.log_format)
    _use_multiprocess_files(metrics_dir())
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            body = generate_latest(registry)
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE_LATEST)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format, *args) -> None:  # noqa: A002  (scrapes every 15 s are not news)
            pass

    try:
        server = ThreadingHTTPServer((settings.metrics_host, settings.metrics_port), Handler)
    except OSError as error:
        logger.error("Job metrics are not served: cannot listen on %s:%s (%s); set WCH_METRICS_PORT.",
                     settings.metrics_host, settings.metrics_port, error)
        return 1
    logger.info("Serving job metrics on http://%s:%s/metrics", settings.metrics_host, settings.metrics_port)
    server.serve_forever()
    return 0
