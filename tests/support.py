"""Helpers for the tests: waiting on conditions, throwaway databases and vhosts, worker processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import psycopg
from flask import has_app_context

from wch.db import db

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
POSTGRES_ADMIN_URL = os.environ.get("WCH_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
RABBITMQ_HOST = os.environ.get("WCH_TEST_RABBITMQ", "127.0.0.1:5672")

T = TypeVar("T")


def wait_for(condition: Callable[[], T], *, timeout: float = 30.0, interval: float = 0.05, what: str = "") -> T:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds.

    Between polls the test's transaction is ended: on SQLite any open
    transaction, even one that only read, holds the write lock workers need.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        if has_app_context():
            db.session.rollback()
        time.sleep(interval)


def create_postgres_database() -> str:
    name = f"wch_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
    return f"{base}/{name}"


def drop_postgres_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def rabbitmqctl(*args: str) -> str:
    return subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, text=True, timeout=60).stdout


def create_vhost() -> str:
    """A RabbitMQ virtual host for one test session, so parallel runs never share queues."""
    vhost = f"wch-test-{uuid.uuid4().hex[:10]}"
    rabbitmqctl("add_vhost", vhost)
    rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    return f"amqp://guest:guest@{RABBITMQ_HOST}/{vhost}"


def delete_vhost(url: str) -> None:
    vhost = url.rsplit("/", 1)[1]
    subprocess.run(["rabbitmqctl", "delete_vhost", vhost], capture_output=True, timeout=60)


class WorkerProcess:
    """A real ``dramatiq wch.actors tests.jobs`` process with its own environment.

    Parameters:
      env: environment variables on top of the test process's own.
      log: file the worker's output goes to.
      processes, threads: passed to dramatiq.
    """

    def __init__(self, *, env: dict[str, str], log: Path, processes: int = 1, threads: int = 4,
                 modules: tuple[str, ...] = ("wch.actors", "tests.jobs")) -> None:
        self.env = os.environ | env
        self.log = log
        self.argv = [str(BIN / "dramatiq"), *modules, "--processes", str(processes), "--threads", str(threads)]
        self.process: subprocess.Popen | None = None

    def start(self) -> WorkerProcess:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv, env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        return self

    def kill(self) -> None:
        """SIGKILL the worker and all its processes, as a crash or the OOM killer would."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        """Stop gracefully, as an operator would: SIGTERM to dramatiq's main process only.

        Dramatiq's main process forwards it to its workers; a second SIGTERM
        reaching a worker (as ``killpg`` would send) kills it mid-job instead.
        """
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""
