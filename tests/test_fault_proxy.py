"""The fault proxy the fault tests rely on: it really cuts PostgreSQL and RabbitMQ, and really restores them."""

from __future__ import annotations

import time

import pika
import psycopg
import pytest

from tests.support.proxy import FaultProxy
from tests.support.services import POSTGRES_ADMIN_URL, RABBITMQ_HOST
from wch.monitoring.queue_depths import UNREACHABLE


@pytest.fixture
def postgres_proxy():
    with FaultProxy.for_url(POSTGRES_ADMIN_URL, default_port=5432) as proxy:
        yield proxy


def _query(url: str, *, timeout: int = 2) -> int:
    with psycopg.connect(url, connect_timeout=timeout) as connection:
        return connection.execute("SELECT 1").fetchone()[0]


def test_a_cut_resets_open_connections_and_refuses_new_ones_until_restored(postgres_proxy):
    url = postgres_proxy.url(POSTGRES_ADMIN_URL)
    connection = psycopg.connect(url, autocommit=True)
    assert connection.execute("SELECT 1").fetchone() == (1,)
    postgres_proxy.cut()
    with pytest.raises(psycopg.OperationalError):
        connection.execute("SELECT 1")
    with pytest.raises(psycopg.OperationalError):
        _query(url)
    postgres_proxy.restore()
    assert _query(url) == 1


def test_a_blackhole_hangs_until_the_clients_own_timeout(postgres_proxy):
    url = postgres_proxy.url(POSTGRES_ADMIN_URL)
    postgres_proxy.cut(mode="blackhole")
    started = time.monotonic()
    with pytest.raises(psycopg.OperationalError):
        _query(url, timeout=1)
    assert time.monotonic() - started >= 0.9
    postgres_proxy.restore()
    assert _query(url) == 1


def test_rabbitmq_through_the_proxy_is_cut_and_restored():
    host, port = RABBITMQ_HOST.split(":")
    with FaultProxy(host, int(port)) as proxy:
        url = proxy.url("amqp://guest:guest@127.0.0.1:5672/%2F")
        pika.BlockingConnection(pika.URLParameters(url)).close()
        proxy.cut()
        params = pika.URLParameters(url)
        params.connection_attempts, params.socket_timeout = 1, 2
        with pytest.raises(UNREACHABLE):  # pika raises ValueError when the reset comes during its handshake
            pika.BlockingConnection(params)
        proxy.restore()
        pika.BlockingConnection(pika.URLParameters(url)).close()
