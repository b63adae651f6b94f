"""The ``wch`` command line: Flask's CLI (``run``, ``shell``, ``db``) plus wch's own groups.

The same groups hang off ``flask --app wch``.
"""

from __future__ import annotations

import sys

import click
from flask import Flask
from flask.cli import FlaskGroup

from wch.config import ConfigError


def register_commands(app: Flask) -> None:
    from wch.commands.campaigns import campaigns_group, remind
    from wch.commands.carts import carts
    from wch.commands.demo import demo
    from wch.commands.jobs import jobs
    from wch.commands.sync import sync
    from wch.commands.up import up
    from wch.commands.users import users
    from wch.commands.workers import workers

    for command in (jobs, carts, workers, up, users, demo, sync):
        app.cli.add_command(command)
    app.cli.add_command(campaigns_group)
    carts.add_command(remind)


def _create_app() -> Flask:
    from wch import create_app

    return create_app()


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
