"""The panel in headless Chromium, served over HTTP, with a real worker on RabbitMQ.

Screenshots of the dashboard and of a failed job's page go to ``tests/artifacts/``.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from tests.support.panel import PASSWORD, ServedApp, make_user
from tests.support.services import wait_for
from wch.db import db, utcnow
from wch.jobs import dispatcher
from wch.models import Cart, Job

pytestmark = [pytest.mark.browser, pytest.mark.rabbitmq]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


@pytest.fixture
def browser():
    # `make test` installs both; a missing browser fails the test rather than skipping it.
    assert Path(CHROMIUM).exists(), "Debian's chromium is not installed: run `make browser`"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def status_of(job_id: str) -> str:
    db.session.rollback()  # SQLite: never hold the write lock the worker and the web app need
    status = db.session.get(Job, job_id).status
    db.session.rollback()
    return status


def log_in(page, base: str, email: str) -> None:
    page.goto(f"{base}/admin/")
    assert "/login" in page.url  # not logged in: sent to the log-in page
    page.fill("#email", email)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/admin/")


def cell(page, selector: str) -> str:
    return page.locator(selector).inner_text().strip()


def until_shown(page, selector: str, expected: str, *, timeout: float = 30) -> None:
    """Reload until ``selector`` reads ``expected``, as a person pressing F5 would."""
    def shown():
        page.reload()
        return page.locator(selector).count() and cell(page, selector) == expected
    wait_for(shown, timeout=timeout, interval=0.5, what=f"{selector} to read {expected!r}")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_staff_sees_pending_work_retries_a_failed_job_and_runs_cleanup(rabbit_app, spawn_worker, browser, tmp_path):
    make_user("admin@example.com", "admin")
    make_user("viewer@example.com", "viewer")
    for value in range(3):
        dispatcher.dispatch("echo", {"value": value})
    dispatcher.dispatch("echo", {"value": "later"}, delay=600)
    dispatcher.dispatch("slow", {"seconds": 0.1})
    long_ago = utcnow() - timedelta(hours=100)
    db.session.add_all([Cart(customer_phone=f"+1555000{i}", status="abandoned", updated_at=long_ago,
                             created_at=long_ago) for i in range(3)] + [Cart(customer_phone="+15559999")])
    db.session.commit()
    ARTIFACTS.mkdir(exist_ok=True)

    with ServedApp(rabbit_app) as served:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.clock.install()  # so the test can move the 30-second refresh timer forward
        log_in(page, served.url, "admin@example.com")
        # No worker yet: everything dispatched is still pending.
        assert cell(page, 'tr[data-type="echo"] [data-count="queued"]') == "3"
        assert cell(page, 'tr[data-type="echo"] [data-count="scheduled"]') == "1"
        assert cell(page, 'tr[data-type="slow"] [data-count="queued"]') == "1"
        assert page.locator(".wch-warning", has_text="No worker").count() == 1

        fragments = []
        page.on("request", lambda request: fragments.append(1) if "/admin/fragment" in request.url else None)
        # A hidden tab does not refresh.
        page.evaluate("Object.defineProperty(document, 'hidden', {value: true, configurable: true})")
        page.clock.fast_forward(61_000)
        assert not fragments
        page.evaluate("Object.defineProperty(document, 'hidden', {value: false, configurable: true});"
                      "window.notReloaded = true")

        spawn_worker()
        marker = tmp_path / "runs"
        failing = dispatcher.dispatch("fail_then_succeed", {"marker": str(marker), "failures": 4})
        failing_id = failing.id
        db.session.commit()

        def refreshed():
            page.clock.fast_forward(31_000)  # the dashboard refreshes itself every 30 s
            return cell(page, 'tr[data-type="echo"] [data-count="queued"]') == "0"
        wait_for(refreshed, timeout=30, interval=0.5, what="the dashboard to refresh itself")
        assert fragments and page.evaluate("window.notReloaded === true")  # a fetch, not a reload
        assert cell(page, 'tr[data-type="echo"] [data-count="scheduled"]') == "1"
        assert page.locator(".wch-warning", has_text="No worker").count() == 0

        wait_for(lambda: status_of(failing_id) == "failed", timeout=60, interval=0.2, what="the job to fail for good")
        page.goto(f"{served.url}/admin/jobs/?status=failed")
        page.click(f'a[href="/admin/jobs/{failing_id}"]')
        assert cell(page, "#job-status") == "failed"
        assert page.locator(".wch-attempt").count() == 4
        page.screenshot(path=str(ARTIFACTS / "failed-job.png"), full_page=True)
        with page.expect_navigation():  # the POST and its redirect back to the job
            page.click("#retry-job")
        until_shown(page, "#job-status", "succeeded")
        assert cell(page, "#job-result") == "5"

        page.goto(f"{served.url}/admin/")
        assert cell(page, '[data-cart="expired"]') == "3"
        with page.expect_navigation():
            page.click("#run-cleanup")
        assert page.locator(".alert", has_text="Cart cleanup queued").count() == 1
        until_shown(page, '[data-cart="expired"]', "0")
        assert cell(page, '[data-cart="abandoned"]') == "0" and cell(page, '[data-cart="active"]') == "1"
        assert "(panel), deleted 3" in cell(page, "#last-cleanup")
        page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)

        phone = browser.new_page(viewport={"width": 390, "height": 844})
        log_in(phone, served.url, "admin@example.com")
        phone.screenshot(path=str(ARTIFACTS / "dashboard-phone.png"), full_page=True)

        viewer = browser.new_context().new_page()
        log_in(viewer, served.url, "viewer@example.com")
        assert viewer.locator("#run-cleanup").count() == 0
        viewer.goto(f"{served.url}/admin/jobs/{failing_id}")
        assert viewer.locator("#retry-job").count() == 0 and viewer.locator("#cancel-job").count() == 0
        token = re.search(r'name="csrf_token" value="([^"]+)"', viewer.content()).group(1)
        refused = viewer.request.post(f"{served.url}/admin/jobs/{failing_id}/retry", form={"csrf_token": token})
        assert refused.status == 403
        refused = viewer.request.post(f"{served.url}/admin/cleanup", form={"csrf_token": token})
        assert refused.status == 403
