"""Schema migrations (Alembic, through Flask-Migrate); ``wch db upgrade`` applies them."""

from pathlib import Path

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask_migrate import Migrate
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from wch.config import ConfigError

DIRECTORY = Path(__file__).resolve().parent

migrate = Migrate(directory=str(DIRECTORY), render_as_batch=True, compare_type=True)


class SchemaBehind(ConfigError):
    """The database has no schema yet, or an older one than this wch's: ``wch db upgrade`` is due."""


def check_schema(engine: Engine) -> None:
    """Raise :class:`SchemaBehind` when ``engine``'s database needs ``wch db upgrade`` before this wch runs on it.

    A newer schema than this wch knows (a newer release migrated it during a
    rolling deploy) passes, and so does a database that cannot be reached
    now: wch waits for it as for any outage.
    """
    try:
        with engine.connect() as connection:
            current = set(MigrationContext.configure(connection).get_current_heads())
    except DBAPIError:
        return
    script = ScriptDirectory(str(DIRECTORY))
    needed = set(script.get_heads())
    if current == needed or not current <= {revision.revision for revision in script.walk_revisions()}:
        return
    if not current:
        raise SchemaBehind("the database has no tables yet: run `wch db upgrade`")
    raise SchemaBehind(f"the database's schema is at revision {', '.join(sorted(current))} and this wch "
                       f"needs {', '.join(sorted(needed))}: run `wch db upgrade`")
