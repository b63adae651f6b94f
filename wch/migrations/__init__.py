"""Schema migrations (Alembic, through Flask-Migrate); ``wch db upgrade`` applies them."""

from pathlib import Path

from flask_migrate import Migrate

migrate = Migrate(directory=str(Path(__file__).resolve().parent), render_as_batch=True, compare_type=True)
