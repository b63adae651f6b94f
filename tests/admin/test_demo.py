"""``make run`` on a fresh clone: within a minute of ``wch up``, the panel shows the demo's real work succeeding.

The clone is a ``git clone`` of this repository's committed state; ``make
run`` makes its own virtualenv there, fills the demo store and runs ``wch up``
(web, worker, scheduler) in the WhatsApp sandbox, as a newcomer's first
command would. Only RabbitMQ's virtual host and the port are the test's.
Screenshots go to ``tests/artifacts/``.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import threading
import time

import pytest

from tests.support.services import ROOT, free_port, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.rabbitmq]
SHOWN_WITHIN = 60  # seconds after `wch up` says it is up


class MakeRun:
    """``make run`` in ``folder``, its output collected line by line."""

    def __init__(self, folder, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(["make", "run", f"PORT={env['PORT']}"], cwd=folder, env=env, text=True,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        self.lines: list[str] = []
        threading.Thread(target=lambda: self.lines.extend(self.process.stdout), daemon=True).start()

    def printed(self, pattern: str) -> re.Match | None:
        if self.process.poll() is not None:
            raise AssertionError("make run exited:\n" + "".join(self.lines))
        return next((m for line in list(self.lines) if (m := re.search(pattern, line))), None)

    def stop(self) -> int:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)  # Ctrl-C in the terminal
            try:
                return self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
        return self.process.wait()


def newcomer_env(rabbitmq_url: str, port: int) -> dict[str, str]:
    """The machine's environment without the tests' wch settings: what a newcomer's shell has."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WCH_", "WHATSAPP_", "WOOCOMMERCE_"))}
    return env | {"WCH_BROKER_URL": rabbitmq_url, "PORT": str(port), "WCH_METRICS_PORT": str(free_port())}


def job_results(page, base: str, type_: str) -> list[str]:
    """The results shown on the pages of the newest succeeded jobs of ``type_``."""
    page.goto(f"{base}/admin/jobs/?type={type_}&status=succeeded")
    links = [a.get_attribute("href") for a in page.locator("#jobs-table a.text-monospace").all()[:10]]
    results = []
    for link in links:
        page.goto(base + link)
        if page.locator("#job-result").count():
            results.append(page.locator("#job-result").inner_text())
    return results


def test_make_run_on_a_fresh_clone_shows_syncs_a_campaign_and_a_reminder_succeeding(tmp_path, rabbitmq_url,
                                                                                      browser, artifacts):
    clone = tmp_path / "wch"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True, timeout=120)
    port = free_port()
    run = MakeRun(clone, newcomer_env(rabbitmq_url, port))
    try:
        password = wait_for(lambda: run.printed(r"password: (\S+)"), timeout=300, interval=0.5,
                            what="make run to install wch and fill the demo store").group(1)
        wait_for(lambda: run.printed(r"wch is up at "), timeout=60, interval=0.2, what="wch up to start")
        up_at = time.monotonic()
        assert run.printed(r"WhatsApp sandbox"), "wch up says the sandbox is on"
        base = f"http://127.0.0.1:{port}"
        page = browser.new_page(viewport={"width": 1280, "height": 900})

        def logged_in():
            try:
                page.goto(f"{base}/admin/")
            except Exception:  # noqa: BLE001  (gunicorn still booting: the page does not load yet)
                return False
            page.fill("#email", "admin@demo.store")
            page.fill("#password", password)
            page.click("button[type=submit]")
            page.wait_for_url(f"{base}/admin/")
            return True

        wait_for(logged_in, timeout=30, interval=0.5, what="the panel to answer")
        assert page.locator(".wch-sandbox").count() == 1, "the sandbox banner is on the page"

        def campaign_delivered():
            page.goto(f"{base}/admin/campaigns/")
            page.click("text=Weekend flash sale")
            counters = {key: int(page.locator(f'[data-counter="{key}"]').inner_text())
                        for key in ("sent", "delivered", "read", "failed")}
            status = page.locator("#campaign-status").inner_text()
            return status == "completed" and counters["delivered"] and counters["read"] and counters
        counters = wait_for(campaign_delivered, timeout=SHOWN_WITHIN, interval=1,
                            what="the demo campaign to be sent, delivered and read")
        assert counters["read"] <= counters["delivered"] <= counters["sent"]
        page.screenshot(path=str(artifacts / "demo-campaign.png"), full_page=True)

        def synced():
            return [r for r in job_results(page, base, "sync_product") if "sandbox-handle" in r]
        assert len(wait_for(synced, timeout=max(1, SHOWN_WITHIN - (time.monotonic() - up_at)), interval=1,
                            what="succeeded product syncs")) >= 1

        def reminded():
            return [r for r in job_results(page, base, "send_cart_reminder") if "wamid.SANDBOX" in r]
        assert wait_for(reminded, timeout=max(1, SHOWN_WITHIN - (time.monotonic() - up_at)), interval=1,
                        what="a reminder sent")
        assert time.monotonic() - up_at <= SHOWN_WITHIN
        page.goto(f"{base}/admin/")
        page.screenshot(path=str(artifacts / "demo-dashboard.png"), full_page=True)
    finally:
        run.stop()
    wait_for(lambda: not answers(port), timeout=30, what="Ctrl-C to stop the web app")


def answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True
