"""The SQLAlchemy handle shared by the web app, the workers and the CLI, and the one rule for transactions.

The entry point owns the transaction: a web view, a command or an actor runs
its unit of work in ``with transaction():``, which commits at the end of the
block or rolls back if it raises. Services do not commit; the exceptions are
services that call Meta or walk through many rows in batches, which run a
series of short transactions of their own (each one a ``with transaction():``)
and say "runs its own transactions" in their docstring. Call those with no
transaction open.

The job core's hot paths (a worker's claim and outcome, the outbox) run Core
statements in ``with core_transaction():``, on a pooled connection of their own
and no session; never inside an open ``transaction()``, which would hold a
second connection.

A block that only reads is marked ``with read_only():``. On SQLite it begins
with a plain ``BEGIN`` instead of ``BEGIN IMMEDIATE``, so it does not take the
write lock, and its transaction ends with the block, so nothing holds the
database while the caller goes on to a slow call (Meta, RabbitMQ, a sleep).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import DateTime, Insert, MetaData, Table, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import DeclarativeBase, Session
from sqlalchemy.types import TypeDecorator

# Stable constraint names keep migrations identical on SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)

    def values(self, *names: str) -> dict[str, Any]:
        """These attributes as JSON-ready values: timestamps in ISO 8601, amounts as strings."""
        return {name: _plain(getattr(self, name)) for name in names}


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


db = SQLAlchemy(model_class=Base)

# Execution option that makes a SQLite transaction begin without the write lock (see read_only()).
READ_ONLY = "wch_read_only"


@contextmanager
def transaction() -> Iterator[Session]:
    """A unit of work: commits when the block ends, rolls back if it raises."""
    try:
        yield db.session
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise


@contextmanager
def core_transaction(*, single_statement: bool = False) -> Iterator[Connection]:
    """A unit of work in Core statements, on a pooled connection and no session: commits when the block ends.

    ``single_statement=True`` promises the block runs one statement: on
    PostgreSQL it then runs in autocommit, which commits it by itself, saving
    the round trips of ``BEGIN`` and ``COMMIT`` (the worker's claim and most
    outcomes are one statement each).

    Refused inside an open session transaction: the thread would hold two
    connections, and a burst of such threads can exhaust the pool waiting on itself.
    """
    # (``registry.has()`` first: asking the session itself would create one, which the hot path does not need.)
    if db.session.registry.has() and db.session().in_transaction():
        raise RuntimeError("core_transaction() inside an open session transaction would hold two connections")
    if single_statement and db.engine.dialect.name == "postgresql":
        with db.engine.connect() as connection:
            yield connection.execution_options(isolation_level="AUTOCOMMIT")
        return
    with db.engine.begin() as connection:
        yield connection


@contextmanager
def read_only() -> Iterator[Session]:
    """A block that only reads, in a transaction of its own that ends with the block.

    Inside a transaction that is already open (one that may have written), the
    block simply joins it and leaves it open.
    """
    session = db.session()  # the thread's session itself: the scoped proxy does not offer in_transaction()
    if session.in_transaction():
        yield session
        return
    session.connection(execution_options={READ_ONLY: True})
    try:
        yield session
    finally:
        session.rollback()


def insert_unless_present(table: Table, *, dialect: str, index_elements: list, index_where: Any = None) -> Insert:
    """``INSERT ... ON CONFLICT DO NOTHING`` against one unique index, on PostgreSQL or SQLite (``dialect``).

    A row that would break the index is skipped, not an error: no savepoint
    needed, and with ``.returning()`` the caller learns which rows went in.
    ``index_where`` repeats a partial index's predicate (as text), so the
    database knows which index is meant.
    """
    module = postgresql if dialect == "postgresql" else sqlite
    return module.insert(table).on_conflict_do_nothing(index_elements=index_elements, index_where=index_where)


def driver_message(error: Exception) -> str:
    """A database error in one line: the driver's own message, without the statement SQLAlchemy adds."""
    return str(getattr(error, "orig", None) or error).strip().splitlines()[0]


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """A timestamp stored as naive UTC and always read back timezone-aware.

    SQLite keeps no zone; storing naive UTC everywhere lets both databases
    compare and index timestamps the same way.
    """

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; wch stores UTC-aware datetimes only")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=UTC)


@event.listens_for(Engine, "connect")
def _tune_sqlite(dbapi_connection, connection_record) -> None:
    # WAL lets the web app read while a worker writes. The busy timeout
    # (``WCH_SQLITE_BUSY_TIMEOUT``, the driver's ``timeout``) makes writers
    # queue instead of failing with "database is locked".
    if isinstance(dbapi_connection, sqlite3.Connection):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()
        # Let SQLAlchemy, not the sqlite3 module, open transactions (see _begin_sqlite).
        dbapi_connection.isolation_level = None


@event.listens_for(Engine, "begin")
def _begin_sqlite(connection) -> None:
    # IMMEDIATE takes the write lock up front, so two writers queue on the busy
    # timeout instead of one failing when it upgrades a read snapshot to a write.
    # A read-only block needs no lock: WAL gives it a snapshot beside the writers.
    if connection.dialect.name == "sqlite":
        read_only = connection.get_execution_options().get(READ_ONLY, False)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")
