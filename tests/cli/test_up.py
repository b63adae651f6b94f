"""``wch up``: web app, worker and scheduler on one machine, stopped together by Ctrl-C."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.support.services import BIN, free_port, wait_for


def descendants(pid: int) -> dict[int, str]:
    """Every process below ``pid``, with its command line."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = {}, [pid]
    while frontier:
        parent = frontier.pop()
        for child, its_parent in parents.items():
            if its_parent == parent and child not in found:
                try:
                    found[child] = (Path("/proc") / str(child) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                except OSError:
                    found[child] = ""
                frontier.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def http_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return None


class Up:
    """A ``wch up`` process with its output collected line by line."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path) -> None:
        self.process = subprocess.Popen([str(BIN / "wch"), "up", *argv], env=env, cwd=cwd, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=lambda: self.lines.extend(self.process.stdout), daemon=True)
        self._reader.start()

    def url(self) -> str:
        def printed():
            if self.process.poll() is not None:
                raise AssertionError("wch up exited:\n" + "".join(self.lines))
            return next((m.group(1) for line in self.lines if (m := re.search(r"wch is up at (\S+) ", line))), None)

        return wait_for(printed, timeout=60, what="wch up to print its URL")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


@pytest.fixture
def up_env(tmp_path):
    return os.environ | {
        "WCH_DATABASE_URL": f"sqlite:///{tmp_path / 'wch.sqlite3'}",
        "WCH_SECRET_KEY": "test-secret-key",
        "WCH_WORKER_HEARTBEAT": "1",
        "WCH_METRICS_PORT": "0",
    }


def wch(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "wch"), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60)


def wait_job(job_id: str, env, cwd, status: str = "succeeded") -> dict:
    def shown():
        result = wch(["jobs", "show", job_id, "--json"], env, cwd)
        return result.returncode == 0 and json.loads(result.stdout)["status"] == status and json.loads(result.stdout)

    return wait_for(shown, timeout=60, interval=0.5, what=f"job {job_id} to be {status}")


@pytest.mark.rabbitmq
def test_up_runs_web_worker_and_scheduler_and_ctrl_c_stops_them_all(up_env, rabbitmq_url, tmp_path):
    env = up_env | {"WCH_BROKER_URL": rabbitmq_url}
    port = free_port()
    up = Up(["--port", str(port), "--worker-threads", "2"], env, tmp_path)
    try:
        url = up.url()
        assert url == f"http://127.0.0.1:{port}/"
        assert (tmp_path / "wch.sqlite3").exists(), "the database is created on first run"
        wait_for(lambda: http_status(url) is not None, timeout=60, what="the web app to answer")
        assert http_status(url) < 500

        children = descendants(up.process.pid)
        commands = " ".join(children.values())
        assert "gunicorn" in commands and "dramatiq wch.actors" in commands and "periodiq wch.actors" in commands

        def worker_announced():
            result = wch(["workers", "--json"], env, tmp_path)
            return result.returncode == 0 and json.loads(result.stdout)

        wait_for(worker_announced, timeout=60, interval=0.5, what="the worker to announce itself")
        job_id = wch(["jobs", "dispatch", "cleanup_carts", '{"trigger": "up-test"}'], env, tmp_path).stdout.strip()
        assert wait_job(job_id, env, tmp_path)["result"]["trigger"] == "up-test"

        # Ctrl-C, as a terminal sends it: to the whole foreground process group.
        os.killpg(up.process.pid, signal.SIGINT)
        assert up.process.wait(timeout=60) == 0
        wait_for(lambda: not any(alive(pid) for pid in children), timeout=10, what="every child to exit")
    finally:
        up.stop()
    assert wch(["workers", "--json"], env, tmp_path).stdout.strip() == "[]", "the worker stopped cleanly"


def test_up_without_rabbitmq_says_so_in_one_line(up_env, tmp_path):
    result = wch(["up", "--port", str(free_port())], up_env | {"WCH_BROKER_URL": "amqp://guest:guest@127.0.0.1:1/%2F"},
                 tmp_path)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "RabbitMQ is not reachable" in lines[0] and "127.0.0.1:1" in lines[0]
    assert "rabbitmq-server" in lines[0] and "wch up --in-process" in lines[0]
    assert result.stdout == ""


def test_up_in_process_serves_the_web_app_and_runs_jobs_dispatched_from_another_process(up_env, tmp_path):
    env = up_env | {"WCH_BROKER_URL": "amqp://guest:guest@127.0.0.1:1/%2F"}  # not needed in-process
    port = free_port()
    up = Up(["--in-process", "--port", str(port)], env, tmp_path)
    try:
        url = up.url()
        wait_for(lambda: http_status(url) is not None, timeout=60, what="the web app to answer")
        assert http_status(url) < 500

        # The CLI has no broker to publish to: the job waits in the outbox until the in-process relay picks it up.
        cli_env = env | {"WCH_BROKER_URL": "stub://"}
        dispatched = wch(["jobs", "dispatch", "cleanup_carts", '{"trigger": "in-process"}'], cli_env, tmp_path)
        assert dispatched.returncode == 0, dispatched.stderr
        job = wait_job(dispatched.stdout.strip(), cli_env, tmp_path)
        assert job["result"]["trigger"] == "in-process" and job["attempts"] == 1

        children = descendants(up.process.pid)
        up.process.send_signal(signal.SIGINT)
        assert up.process.wait(timeout=30) == 0
        wait_for(lambda: not any(alive(pid) for pid in children), timeout=10, what="every child to exit")
    finally:
        up.stop()
