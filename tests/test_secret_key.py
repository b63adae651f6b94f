"""The instance secret key: created once, readable by its owner only, the same for processes started together."""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys
import threading

import pytest

from tests.support.services import ROOT, wait_for
from wch import create_app
from wch.config import ConfigError, Settings, instance_secret_key

# Each process says it is ready, then blocks opening the FIFO until the test opens its other end: then all ask
# for the key at the same moment.
RACER = """
import os, sys
from wch.config import instance_secret_key
open(sys.argv[2] + f".ready-{os.getpid()}", "w").close()
open(sys.argv[2], "rb").close()
print(instance_secret_key(sys.argv[1]))
"""


def test_processes_started_together_all_sign_with_the_same_key(tmp_path):
    instance, start = tmp_path / "instance", tmp_path / "go"
    os.mkfifo(start)
    racers = [subprocess.Popen([sys.executable, "-c", RACER, str(instance), str(start)], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(12)]
    wait_for(lambda: len(list(tmp_path.glob("go.ready-*"))) == len(racers), timeout=60, what="every racer")
    start_line = os.open(start, os.O_WRONLY)  # every racer blocked on the FIFO wakes up now
    try:
        results = [racer.communicate(timeout=60) for racer in racers]
    finally:
        os.close(start_line)
    assert all(racer.returncode == 0 for racer in racers), [err for _, err in results]
    keys = {out.strip() for out, _ in results}
    assert len(keys) == 1 and len(keys.pop()) == 64
    path = instance / "secret_key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().strip() == results[0][0].strip()


def test_the_key_file_is_owner_only_before_the_key_is_written_even_with_a_lax_umask(tmp_path, monkeypatch):
    modes = []
    fdopen = os.fdopen

    def watching(fd, *args, **kwargs):
        modes.append((stat.S_IMODE(os.fstat(fd).st_mode), os.fstat(fd).st_size))
        return fdopen(fd, *args, **kwargs)

    monkeypatch.setattr(os, "fdopen", watching)
    old = os.umask(0)
    try:
        key = instance_secret_key(tmp_path)
    finally:
        os.umask(old)
    assert modes == [(0o600, 0)], "created empty and owner-only: no moment when others could read the key"
    assert stat.S_IMODE((tmp_path / "secret_key").stat().st_mode) == 0o600
    assert (tmp_path / "secret_key").read_text() == key + "\n"


def test_a_reader_waits_for_the_writer_to_finish(tmp_path):
    path = tmp_path / "secret_key"
    path.touch(mode=0o600)  # created, not yet written: what a second process can see
    key = "ab" * 32
    threading.Timer(0.3, lambda: path.write_text(key + "\n")).start()
    assert instance_secret_key(tmp_path) == key


def test_an_empty_key_file_is_one_clear_error(tmp_path):
    (tmp_path / "secret_key").touch()
    with pytest.raises(ConfigError, match=r"^WCH_SECRET_KEY: .*secret_key holds no key"):
        instance_secret_key(tmp_path, wait=0.2)


def test_production_settings_without_a_secret_key_warn_at_start_up(caplog, tmp_path):
    settings = Settings.from_env({"WCH_DATABASE_URL": f"sqlite:///{tmp_path / 'wch.sqlite3'}",
                                  "WCH_BROKER_URL": "stub://", "WCH_SESSION_COOKIE_SECURE": "1"})
    with caplog.at_level(logging.WARNING, logger="wch"):
        app = create_app(settings, publisher=None)
    warnings = [r.getMessage() for r in caplog.records if r.name == "wch" and r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "WCH_SECRET_KEY is not set" in warnings[0]
    assert app.config["SECRET_KEY"] == instance_secret_key(app.instance_path)

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="wch"):
        create_app(Settings.from_env({"WCH_DATABASE_URL": f"sqlite:///{tmp_path / 'wch.sqlite3'}",
                                      "WCH_BROKER_URL": "stub://"}), publisher=None)
    assert not [r for r in caplog.records if "WCH_SECRET_KEY" in r.getMessage()], "a development set-up is quiet"
