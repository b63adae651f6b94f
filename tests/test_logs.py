"""Logging (``wch.logs``): level, text or JSON, chatty libraries held back, secrets masked; web, worker, scheduler."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import subprocess
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.services import BIN, ROOT, free_port, wait_for
from tests.support.workers import WorkerProcess
from wch.logs import configure_logging
from wch.redact import register_secret

TOKEN = "EAAlogtokenvalue0123456789abcdef"


@pytest.fixture
def restore_logging():
    root = logging.getLogger()
    saved = (list(root.handlers), root.level, {n: logging.getLogger(n).level for n in ("pika", "alembic")})
    yield
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    for name, level in saved[2].items():
        logging.getLogger(name).setLevel(level)


def test_json_lines_carry_level_logger_message_and_a_masked_traceback(restore_logging):
    register_secret(TOKEN)
    stream = io.StringIO()
    configure_logging(level="INFO", fmt="json", stream=stream)
    logging.getLogger("wch.test").info("calling Meta with token %s", TOKEN)
    try:
        raise RuntimeError(f"Graph said no to Bearer {TOKEN}")
    except RuntimeError:
        logging.getLogger("wch.test").exception("send failed")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["level"] == "INFO" and first["logger"] == "wch.test" and first["process"] == os.getpid()
    assert first["message"] == "calling Meta with token [redacted]"
    assert second["message"] == "send failed" and "RuntimeError" in second["exception"]
    assert TOKEN not in stream.getvalue()


def test_text_format_and_level_and_chatty_libraries_at_warning(restore_logging):
    stream = io.StringIO()
    configure_logging(level="INFO", fmt="text", stream=stream)
    logging.getLogger("pika.connection").info("Created channel=1")
    logging.getLogger("alembic.runtime.migration").info("Context impl SQLiteImpl.")
    logging.getLogger("wch.jobs").debug("a detail")
    logging.getLogger("wch.jobs").info("published 3 jobs")
    logging.getLogger("pika.connection").warning("connection lost")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2, lines
    assert lines[0].endswith("INFO wch.jobs: published 3 jobs")
    assert lines[1].endswith("WARNING pika.connection: connection lost")

    configure_logging(level="DEBUG", fmt="text", stream=stream)  # asked for: everything, and only once
    logging.getLogger("pika.connection").info("Created channel=2")
    assert stream.getvalue().count("Created channel=2") == 1


def test_a_bad_log_setting_is_one_line(tmp_path):
    result = subprocess.run([str(BIN / "wch"), "jobs", "counts"], cwd=tmp_path, capture_output=True, text=True,
                            env=os.environ | {"WCH_LOG_FORMAT": "xml", "WCH_BROKER_URL": "stub://"}, timeout=60)
    assert result.returncode == 2
    assert result.stderr.splitlines() == ["wch: WCH_LOG_FORMAT: 'xml' is not one of text, json"]


def json_lines(text: str) -> list[dict]:
    found = []
    for line in text.splitlines():
        try:
            found.append(json.loads(line))
        except ValueError:
            continue
    return found



@pytest.fixture
def json_env(app_factory, sqlite_url):
    app_factory(sqlite_url)  # the schema, upgraded
    return {"WCH_DATABASE_URL": sqlite_url, "WCH_BROKER_URL": "stub://", "WCH_LOG_FORMAT": "json",
            "WCH_SECRET_KEY": "test-secret-key", "WCH_METRICS_PORT": "0"}


def test_the_worker_logs_json(json_env, tmp_path):
    worker = WorkerProcess(env=json_env, log=tmp_path / "worker.log", threads=1).start()
    try:
        ready = wait_for(lambda: [e for e in json_lines(worker.output()) if "ready for action" in e["message"]],
                         what="the worker's JSON 'ready' line")
    finally:
        worker.stop()
    assert ready[0]["logger"].startswith("dramatiq.WorkerProcess") and ready[0]["level"] == "INFO"
    # Only Dramatiq's main process, which never loads wch, keeps its own format.
    text_lines = [line for line in worker.output().splitlines() if line and not line.startswith("{")]
    assert all("dramatiq.MainProcess" in line for line in text_lines), text_lines


@contextmanager
def running(argv: list[str], env: dict[str, str], log: Path, cwd: Path = ROOT) -> Iterator[None]:
    """``argv`` running with its output in ``log``, stopped with SIGTERM afterwards."""
    with log.open("w") as output:
        process = subprocess.Popen(argv, cwd=cwd, env=os.environ | env, stdout=output, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        try:
            yield
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)


def test_wch_worker_logs_nothing_but_json(json_env, tmp_path):
    log = tmp_path / "worker.log"
    with running([str(BIN / "wch"), "worker", "--processes", "1", "--threads", "1"], json_env, log):
        wait_for(lambda: [e for e in json_lines(log.read_text()) if "ready for action" in e["message"]],
                 what="the worker's JSON 'ready' line")
    lines = [line for line in log.read_text().splitlines() if line]
    assert all(line.startswith("{") for line in lines), lines  # Dramatiq's main process too


def test_the_scheduler_logs_json(json_env, tmp_path):
    log = tmp_path / "scheduler.log"
    with running([str(BIN / "periodiq"), "wch.actors"], json_env, log):
        lines = wait_for(lambda: [e for e in json_lines(log.read_text()) if e["logger"] == "periodiq"],
                         what="the scheduler's JSON lines")
    assert any("relay_outbox" in entry["message"] for entry in lines), lines


def test_the_web_app_gunicorn_and_its_access_log_log_json(json_env, tmp_path):
    port, log = free_port(), tmp_path / "web.log"

    def answered():
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/livez", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    with running([str(BIN / "wch"), "web", "--bind", f"127.0.0.1:{port}"], json_env, log, cwd=tmp_path):
        wait_for(answered, timeout=60, what="gunicorn to answer /livez")
        access = wait_for(lambda: [e for e in json_lines(log.read_text()) if e["logger"] == "gunicorn.access"],
                          what="a JSON access-log line")
    assert '"GET /livez HTTP/1.1" 200' in access[0]["message"]
    entries = json_lines(log.read_text())
    assert any(e["logger"] == "gunicorn.error" and e["message"].startswith("Listening at") for e in entries)
    assert len(entries) == len(log.read_text().splitlines()), "every line, gunicorn's own start included, is JSON"
