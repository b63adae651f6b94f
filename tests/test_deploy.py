"""The deployment files, checked with their own tools where this machine has them.

No container engine runs here, so the image is not built: ``docker-compose
config`` validates ``compose.yaml`` and ``systemd-analyze verify`` the unit
files. ``make test`` installs both; a missing tool fails its test rather than skipping it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

from tests.support.services import BIN, ROOT

UNITS = sorted((ROOT / "deploy" / "systemd").glob("*.service"))


def tool(name: str) -> str:
    program = shutil.which(name)
    assert program is not None, f"{name} is not installed: run `make deploy-tools`"
    return program


def compose(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = os.environ | {"WCH_SECRET_KEY": "compose-check-key"} if env is None else env
    return subprocess.run([tool("docker-compose"), "-f", str(ROOT / "compose.yaml"), *args], capture_output=True,
                          text=True, env=env, timeout=60)


def test_compose_file_is_valid_and_migrates_before_anything_starts():
    checked = compose("config")
    assert checked.returncode == 0, checked.stderr
    assert sorted(compose("config", "--services").stdout.split()) == [
        "migrate", "postgres", "rabbitmq", "scheduler", "web", "worker"]
    services = dict(re.findall(r"\n  (\w+):\n(.*?)(?=\n  \w+:\n|\nvolumes:)", checked.stdout, re.S))
    for name in ("web", "worker", "scheduler"):
        assert re.search(r"migrate:\n\s+condition: service_completed_successfully", services[name]), name
    assert "- upgrade" in services["migrate"] and "condition: service_healthy" in services["migrate"]
    assert "- web" in services["web"] and "- worker" in services["worker"] and "- scheduler" in services["scheduler"]


def test_compose_refuses_to_start_without_a_secret_key():
    result = compose("config", env={k: v for k, v in os.environ.items() if k != "WCH_SECRET_KEY"})
    assert result.returncode != 0 and "set WCH_SECRET_KEY" in result.stderr


def test_systemd_units_verify_cleanly(tmp_path):
    assert [unit.name for unit in UNITS] == ["wch-scheduler.service", "wch-web.service", "wch-worker.service"]
    # verify insists that ExecStart exists: point the units at this checkout's virtualenv.
    for unit in UNITS:
        (tmp_path / unit.name).write_text(unit.read_text().replace("/srv/wch/venv/bin", str(BIN)))
    result = subprocess.run([tool("systemd-analyze"), "verify", *sorted(str(p) for p in tmp_path.glob("*.service"))],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stderr == "" and result.stdout == "", result.stderr


def test_procfile_runs_the_checked_commands_and_one_scheduler():
    processes = dict(line.split(": ", 1) for line in (ROOT / "Procfile").read_text().splitlines()
                     if line and not line.startswith("#"))
    assert sorted(processes) == ["release", "scheduler", "web", "worker"]
    assert processes["release"] == "wch db upgrade"
    assert processes["web"].startswith("wch web ") and processes["worker"].startswith("wch worker ")
    assert processes["scheduler"] == "wch scheduler"
    for command in processes.values():
        assert (BIN / command.split()[0]).exists(), command


def test_the_image_installs_the_wheel_and_runs_without_privileges():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "pip wheel" in dockerfile and "pip install --no-cache-dir /wheels/*.whl" in dockerfile
    assert " -e " not in dockerfile and "--editable" not in dockerfile
    users = re.findall(r"^USER (\S+)", dockerfile, re.M)
    assert users == ["wch"], "the last stage runs as the unprivileged wch user"
