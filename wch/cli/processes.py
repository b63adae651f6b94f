"""``wch worker`` and ``wch scheduler``: ``dramatiq wch.actors`` and ``periodiq wch.actors``, settings checked first.

Dramatiq's main process reads wch's settings only in the worker processes it
forks, so a bad setting shows up between Dramatiq's own start and shutdown
lines. These commands check the settings (one line and status 2 when one is
wrong), then become the program itself: same process id, signals go straight
to it, as a supervisor expects.
"""

from __future__ import annotations

import os
import sys

import click
from flask.cli import with_appcontext

MODULE = "wch.actors"
PASS_THROUGH = {"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []}


def become(program: str, options: tuple[str, ...]) -> None:
    """Replace this process with ``program wch.actors OPTIONS`` from this environment's bin folder."""
    path = os.path.join(os.path.dirname(sys.executable), program)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(path, [path, MODULE, *options])


@click.command(context_settings=PASS_THROUGH)
@click.argument("options", nargs=-1, type=click.UNPROCESSED)
@with_appcontext
def worker(options: tuple[str, ...]) -> None:
    """Run workers: `dramatiq wch.actors OPTIONS` (e.g. --processes 2 --threads 8 --queues sync)."""
    become("dramatiq", options)


@click.command(context_settings=PASS_THROUGH)
@click.argument("options", nargs=-1, type=click.UNPROCESSED)
@with_appcontext
def scheduler(options: tuple[str, ...]) -> None:
    """Run the scheduler (exactly one per deployment): `periodiq wch.actors OPTIONS`."""
    become("periodiq", options)
