"""Job types used only by the tests; worker processes load them with ``dramatiq wch.actors tests.support.jobs``."""

from __future__ import annotations

import time
from pathlib import Path

import dramatiq

import wch.actors  # noqa: F401  (sets up the broker before these actors are declared)
from wch.jobs.messages import JobCopy
from wch.models import Job


def copy_of(job: Job, *, attempt: int) -> JobCopy:
    """A copy of ``job``'s message as if published after its attempt ``attempt`` (a duplicate, a redelivery...)."""
    return JobCopy(job.id, job.type, job.queue, dict(job.args), None, job.enqueued_at, attempt)


class Unfixable(Exception):
    """An error retrying cannot fix."""


@dramatiq.actor(queue_name="sync")
def echo(value=None, marker: str | None = None):
    """Return ``value``; append a line to ``marker`` so a test can count runs."""
    if marker:
        with Path(marker).open("a") as file:
            file.write("ran\n")
    return value


@dramatiq.actor(queue_name="sync", safe_to_repeat=True)
def safe_echo(value=None, marker: str | None = None):
    """``echo``, declared safe to repeat: an interrupted attempt is run again rather than failed."""
    return echo.fn(value, marker)


@dramatiq.actor(queue_name="sync")
def always_fails(message: str = "boom", marker: str | None = None):
    if marker:
        with Path(marker).open("a") as file:
            file.write(f"{time.time()}\n")
    raise RuntimeError(message)


@dramatiq.actor(queue_name="sync", throws=(Unfixable,))
def fails_for_good(marker: str | None = None):
    if marker:
        with Path(marker).open("a") as file:
            file.write("ran\n")
    raise Unfixable("this cannot work")


@dramatiq.actor(queue_name="sync")
def fail_then_succeed(marker: str, failures: int = 1):
    """Fail ``failures`` times (counted in the ``marker`` file), then succeed."""
    path = Path(marker)
    runs = len(path.read_text().splitlines()) if path.exists() else 0
    with path.open("a") as file:
        file.write("ran\n")
    if runs < failures:
        raise RuntimeError(f"failure {runs + 1} of {failures}")
    return runs + 1


@dramatiq.actor(queue_name="sync", time_limit=120_000)
def slow(seconds: float, started: str | None = None, marker: str | None = None):
    """Sleep; touch ``started`` first so a test knows it is under way."""
    if started:
        Path(started).touch()
    time.sleep(seconds)
    if marker:
        with Path(marker).open("a") as file:
            file.write("done\n")
    return seconds


@dramatiq.actor(queue_name="sync", time_limit=120_000, safe_to_repeat=True)
def safe_slow(seconds: float, started: str | None = None, marker: str | None = None):
    """``slow``, declared safe to repeat."""
    return slow.fn(seconds, started, marker)


@dramatiq.actor(queue_name="sync", time_limit=120_000)
def fail_when_released(started: str, release: str, marker: str):
    """First run: touch ``started``, wait for the ``release`` file, then fail. Later runs succeed."""
    path = Path(marker)
    runs = len(path.read_text().splitlines()) if path.exists() else 0
    with path.open("a") as file:
        file.write("ran\n")
    if runs:
        return runs + 1
    Path(started).touch()
    deadline = time.monotonic() + 60
    while not Path(release).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    raise RuntimeError("failed while RabbitMQ was away")


@dramatiq.actor(queue_name="sync", time_limit=120_000)
def hold(started: str, release: str, marker: str, label: str = "done"):
    """Touch ``started``, wait (at most a minute) for the ``release`` file, then append ``label`` to ``marker``."""
    Path(started).touch()
    deadline = time.monotonic() + 60
    while not Path(release).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    with Path(marker).open("a") as file:
        file.write(f"{label}\n")
    return label


@dramatiq.actor(queue_name="sync", time_limit=120_000, safe_to_repeat=True)
def safe_hold(started: str, release: str, marker: str, label: str = "done"):
    """``hold``, declared safe to repeat."""
    return hold.fn(started, release, marker, label)


@dramatiq.actor(queue_name="sync", time_limit=120_000)
def span(seconds: float, marker: str, label: str):
    """Append ``label start end`` (wall-clock seconds) to ``marker`` around a sleep, so a test can see overlaps."""
    began = time.time()
    time.sleep(seconds)
    with Path(marker).open("a") as file:
        file.write(f"{label} {began} {time.time()}\n")
    return label
