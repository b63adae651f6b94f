"""Real ``dramatiq`` worker processes, as production runs them, for the tests and the benchmarks."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from tests.support.services import BIN, ROOT

# The modules a test worker loads: wch's job types and the tests' own (tests/support/jobs.py).
MODULES = ("wch.actors", "tests.support.jobs")


class WorkerProcess:
    """A real ``dramatiq wch.actors tests.support.jobs`` process with its own environment.

    Parameters:
      env: environment variables on top of the test process's own.
      log: file the worker's output goes to.
      processes, threads: passed to dramatiq.
      modules: the modules dramatiq loads.
    """

    def __init__(self, *, env: dict[str, str], log: Path, processes: int = 1, threads: int = 4,
                 modules: tuple[str, ...] = MODULES) -> None:
        self.env = os.environ | env
        self.log = log
        self.argv = [str(BIN / "dramatiq"), *modules, "--processes", str(processes), "--threads", str(threads)]
        self.process: subprocess.Popen | None = None

    def start(self) -> WorkerProcess:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv, env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        return self

    def kill(self) -> None:
        """SIGKILL the worker and all its processes, as a crash or the OOM killer would."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        """Stop gracefully, as an operator would: SIGTERM to dramatiq's main process only.

        Dramatiq's main process forwards it to its workers; a second SIGTERM
        reaching a worker (as ``killpg`` would send) kills it mid-job instead.
        """
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""
