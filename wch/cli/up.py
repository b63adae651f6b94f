"""``wch up``: the web app, a worker and the scheduler on one machine, stopped together by Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import click
import pika
from flask.cli import with_appcontext
from flask_migrate import upgrade

from wch import runtime
from wch.cli.processes import scheduler_argv, web_argv, worker_argv
from wch.monitoring.queue_depths import broker_reachable

RABBITMQ_HINT = (
    "start it with `rabbitmq-server -detached` (or `sudo systemctl start rabbitmq-server`), "
    "or try wch without it: `wch up --in-process`"
)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True)
@click.option("--in-process", is_flag=True,
              help="Run jobs inside the web process on an in-memory broker (no RabbitMQ).")
@click.option("--worker-processes", default=1, show_default=True)
@click.option("--worker-threads", default=4, show_default=True)
@with_appcontext
def up(host: str, port: int, in_process: bool, worker_processes: int, worker_threads: int) -> None:
    """Run the web app, a worker and the scheduler until Ctrl-C."""
    settings = runtime.settings()
    url = f"http://{host}:{port}/"
    if in_process or settings.broker_is_stub:
        env = os.environ | {"WCH_BROKER_URL": "stub://"}
        commands = {"wch": [sys.executable, "-m", "wch.cli.inprocess", "--host", host, "--port", str(port)]}
    else:
        problem = rabbitmq_problem(settings.broker_url)
        if problem:
            raise click.ClickException(f"RabbitMQ is not reachable ({problem}): {RABBITMQ_HINT}")
        env = dict(os.environ)
        commands = {
            "web": web_argv("--bind", f"{host}:{port}", "--threads", "4"),
            "worker": worker_argv("--processes", str(worker_processes), "--threads", str(worker_threads)),
            "scheduler": scheduler_argv(),
        }
    upgrade()  # creates the database on first run
    banner = f"wch is up at {url} (admin panel: {url}admin/). Ctrl-C stops it."
    if settings.whatsapp_sandbox:
        banner += "\nWhatsApp sandbox (WHATSAPP_MODE=sandbox): nothing is sent to Meta, statuses are made up."
    run_together(commands, env=env, banner=banner)


def rabbitmq_problem(url: str) -> str | None:
    """Why RabbitMQ at ``url`` cannot be reached, or None when it can."""
    problem = broker_reachable(url)
    if problem is None:
        return None
    params = pika.URLParameters(url)
    return f"{params.host}:{params.port}: {problem}"


def run_together(commands: dict[str, list[str]], *, env: dict[str, str], banner: str) -> None:
    """Start every command; when one exits or Ctrl-C is pressed, stop them all.

    Each child runs in its own process group, so Ctrl-C reaches only this
    process, which sends each child exactly one SIGTERM: Dramatiq's workers
    treat a second signal as "kill now" and would drop their jobs mid-way.
    """
    children = {name: subprocess.Popen(argv, env=env, process_group=0) for name, argv in commands.items()}
    click.echo(banner)
    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        while not stopping:
            exited = [name for name, child in children.items() if child.poll() is not None]
            if exited:
                click.echo(f"{', '.join(exited)} exited; stopping the rest.", err=True)
                break
            time.sleep(0.5)
    finally:
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for child in children.values():
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)  # with its own children
                child.wait()
    if not stopping:
        sys.exit(1)
