"""Processes refuse to start on a database that ``wch db upgrade`` has not brought up to date: one line, status 2.

On both databases: a database without tables, and one a release behind. A
schema newer than this wch (a newer release migrated it during a rolling
deploy) does not stop anything.
"""

from __future__ import annotations

import os
import subprocess

import pytest
from flask_migrate import upgrade
from sqlalchemy import text

from tests.support.apps import inside, settings_for
from tests.support.services import BIN, ROOT
from wch import create_app
from wch.db import db
from wch.migrations import SchemaBehind, check_schema

NO_TABLES = "wch: the database has no tables yet: run `wch db upgrade`"
A_RELEASE_BEHIND = "wch: the database's schema is at revision 0008 and this wch needs 0009: run `wch db upgrade`"


def run(argv: list[str], database_url: str, cwd) -> subprocess.CompletedProcess:
    env = os.environ | {"WCH_DATABASE_URL": database_url, "WCH_BROKER_URL": "stub://", "WCH_METRICS_PORT": "0"}
    return subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("command", ["web", "worker", "scheduler"])
def test_wch_web_worker_and_scheduler_on_a_database_without_tables_say_to_upgrade(command, empty_database_url,
                                                                                 tmp_path):
    result = run([str(BIN / "wch"), command], empty_database_url, tmp_path)
    assert result.returncode == 2
    assert result.stdout == "" and result.stderr.splitlines() == [NO_TABLES]


def test_a_database_a_release_behind_stops_wch_worker_and_every_dramatiq_worker_process(empty_database_url, tmp_path):
    app = create_app(settings_for(empty_database_url), publisher=None)
    with inside(app):
        upgrade(revision="0008")
        with pytest.raises(SchemaBehind):
            check_schema(db.engine)

    result = run([str(BIN / "wch"), "worker"], empty_database_url, tmp_path)
    assert (result.returncode, result.stderr.splitlines()) == (2, [A_RELEASE_BEHIND])
    # Plain dramatiq: its worker process stops before it consumes anything (Dramatiq adds lines of its own).
    result = run([str(BIN / "dramatiq"), "wch.actors", "--processes", "1", "--threads", "1"], empty_database_url,
                 ROOT)
    assert result.returncode == 2
    assert A_RELEASE_BEHIND in result.stderr.splitlines() and "Traceback" not in result.stderr


def test_a_current_or_newer_schema_passes(empty_database_url):
    app = create_app(settings_for(empty_database_url), publisher=None)
    with inside(app):
        upgrade()
        check_schema(db.engine)
        with db.engine.begin() as connection:  # as a later release's migration would leave it
            connection.execute(text("UPDATE alembic_version SET version_num = '0010'"))
        check_schema(db.engine)
