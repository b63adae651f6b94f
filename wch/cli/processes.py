"""``wch web``, ``wch worker``, ``wch scheduler``: gunicorn, ``dramatiq wch.actors``, ``periodiq wch.actors``.

Dramatiq's main process reads wch's settings only in the worker processes it
forks, so a bad setting shows up after Dramatiq's own start line; gunicorn
logs its start in its own format before it loads the app. These commands
check the settings and that ``wch db upgrade`` has been run (one line and
status 2 when not), then become the program itself with wch's options: same
process id, signals go straight to it, as a supervisor expects.
"""

from __future__ import annotations

import os
import sys

import click
from flask.cli import with_appcontext

from wch.db import db
from wch.migrations import check_schema

MODULE = "wch.actors"
APP = "wch:create_app()"
GUNICORN_LOGGER = "wch.web.gunicorn_logger.GunicornLogger"
PASS_THROUGH = {"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []}


def web_argv(*options: str) -> list[str]:
    """gunicorn serving wch, its own lines and its access log (on standard output) in wch's log format."""
    return [_program("gunicorn"), "--logger-class", GUNICORN_LOGGER, "--access-logfile", "-", *options, APP]


def worker_argv(*options: str) -> list[str]:
    """Dramatiq running wch's jobs, every line in wch's log format.

    Dramatiq's main process never loads wch: with ``--skip-logging`` it leaves
    logging alone, so its start and stop lines (INFO) are not printed and its
    warnings come out as the bare message, while the worker processes log
    through wch's handler.
    """
    return [_program("dramatiq"), MODULE, "--skip-logging", *options]


def scheduler_argv(*options: str) -> list[str]:
    return [_program("periodiq"), MODULE, *options]


def _program(name: str) -> str:
    """``name`` from this environment's bin folder."""
    return os.path.join(os.path.dirname(sys.executable), name)


def become(argv: list[str]) -> None:
    """Replace this process with ``argv``, once the database's schema is known to be current."""
    check_schema(db.engine)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(argv[0], argv)


@click.command(context_settings=PASS_THROUGH)
@click.argument("options", nargs=-1, type=click.UNPROCESSED)
@with_appcontext
def web(options: tuple[str, ...]) -> None:
    """Run the web app: `gunicorn OPTIONS 'wch:create_app()'` (e.g. --workers 4 --threads 4 --bind 0.0.0.0:8000)."""
    become(web_argv(*options))


@click.command(context_settings=PASS_THROUGH)
@click.argument("options", nargs=-1, type=click.UNPROCESSED)
@with_appcontext
def worker(options: tuple[str, ...]) -> None:
    """Run workers: `dramatiq wch.actors OPTIONS` (e.g. --processes 2 --threads 8 --queues sync)."""
    become(worker_argv(*options))


@click.command(context_settings=PASS_THROUGH)
@click.argument("options", nargs=-1, type=click.UNPROCESSED)
@with_appcontext
def scheduler(options: tuple[str, ...]) -> None:
    """Run the scheduler (exactly one per deployment): `periodiq wch.actors OPTIONS`."""
    become(scheduler_argv(*options))
