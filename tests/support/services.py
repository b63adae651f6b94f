"""The services the tests run against: waiting on conditions, throwaway PostgreSQL databases and RabbitMQ vhosts."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import psycopg
from flask import has_app_context

from wch.db import db

ROOT = Path(__file__).resolve().parents[2]
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


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now, for a server that must be told its port in advance."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def create_postgres_database(*, template: str | None = None) -> str:
    """A new database's URL: empty, or a copy of the database at ``template`` (a URL no one is connected to)."""
    name = f"wch_test_{uuid.uuid4().hex[:10]}"
    copy = f' TEMPLATE "{template.rsplit("/", 1)[1]}"' if template else ""
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"{copy}')
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
    return f"{base}/{name}"


def drop_postgres_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def postgres_database(*, template: str | None = None) -> Iterator[str]:
    """A fresh PostgreSQL database for the block (empty, or a copy of ``template``); dropped afterwards."""
    url = create_postgres_database(template=template)
    try:
        yield url
    finally:
        drop_postgres_database(url)


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


def purge_queues(url: str) -> None:
    """Empty wch's queues on the RabbitMQ at ``url``."""
    from dramatiq.brokers.rabbitmq import RabbitmqBroker

    from wch.jobs.broker import QUEUES

    cleaner = RabbitmqBroker(url=url, middleware=[])
    for queue in QUEUES:
        cleaner.declare_queue(queue)
    cleaner.flush_all()
    cleaner.close()
