"""Fresh databases at the current schema, copied from one migrated template a test session makes.

Running every migration costs about 0.2–0.4 s a database, for each of the
hundreds of apps the tests build; copying a migrated template costs
milliseconds: a file copy on SQLite, ``CREATE DATABASE … TEMPLATE`` on
PostgreSQL. Each test still gets a database of its own. The migration tests
ask for empty databases instead (``empty_database_url``).
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.apps import close, make_app, settings_for
from tests.support.services import create_postgres_database, drop_postgres_database, postgres_database


class Templates:
    """The session's migrated templates, made on first use and removed by :meth:`remove`."""

    def __init__(self) -> None:
        self._folder: Path | None = None
        self._postgres: str | None = None  # the template database's URL

    def sqlite_copy(self, path: Path) -> str:
        """A migrated SQLite database at ``path``; its URL."""
        if self._folder is None:
            folder = Path(tempfile.mkdtemp(prefix="wch-template-"))
            _migrate(f"sqlite:///{folder / 'template.sqlite3'}")
            # Everything in the main file, so that copying that one file copies the whole database.
            with sqlite3.connect(folder / "template.sqlite3") as connection:
                connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._folder = folder
        shutil.copyfile(self._folder / "template.sqlite3", path)
        return f"sqlite:///{path}"

    @contextmanager
    def postgres_copy(self) -> Iterator[str]:
        """A migrated PostgreSQL database of the block's own; dropped afterwards."""
        if self._postgres is None:
            url = create_postgres_database()
            _migrate(url)
            self._postgres = url
        with postgres_database(template=self._postgres) as url:
            yield url

    def remove(self) -> None:
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
        if self._postgres is not None:
            drop_postgres_database(self._postgres)


def _migrate(url: str) -> None:
    # make_app runs the migrations; closing it leaves no connection open, as a template requires.
    close(make_app(settings_for(url), None))
