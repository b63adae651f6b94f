"""The ``wch`` command line: Flask's CLI (``run``, ``shell``, ``db``) plus wch's own groups.

The same groups hang off ``flask --app wch``.
"""

from __future__ import annotations

import sys

import click
from flask import Flask
from flask.cli import FlaskGroup
from werkzeug.utils import import_string

from wch import runtime
from wch.config import ConfigError
from wch.logs import configure_logging

# By import path: the app factory imports this package to register the commands.
APP_FACTORY = "wch:create_app"


def register_commands(app: Flask) -> None:
    from wch.cli.audit import audit
    from wch.cli.campaigns import campaigns_cli
    from wch.cli.carts import carts
    from wch.cli.demo import demo
    from wch.cli.jobs import jobs
    from wch.cli.messages import messages_cli
    from wch.cli.processes import scheduler, web, worker
    from wch.cli.store import store
    from wch.cli.sync import sync
    from wch.cli.up import up
    from wch.cli.users import users
    from wch.cli.workers import workers

    for command in (jobs, carts, workers, web, worker, scheduler, up, users, audit, demo, store, sync, campaigns_cli,
                    messages_cli):
        app.cli.add_command(command)


def _create_app() -> Flask:
    app = import_string(APP_FACTORY)()
    # A command reports through its output: its log shows warnings and errors, everything at DEBUG.
    with app.app_context():
        settings = runtime.settings()
    configure_logging(level="DEBUG" if settings.log_level == "DEBUG" else "WARNING", fmt=settings.log_format)
    return app


cli = FlaskGroup(
    name="wch",
    create_app=_create_app,
    add_version_option=False,
    help="wch: background jobs of a WhatsApp commerce store.",
)


def main() -> None:
    try:
        cli.main(prog_name="wch")
    except ConfigError as error:
        click.echo(f"wch: {error}", err=True)
        sys.exit(2)
