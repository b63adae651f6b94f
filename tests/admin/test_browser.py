"""The panel in headless Chromium, served over HTTP, with a real worker on RabbitMQ.

Screenshots of the dashboard and of a failed job's page go to ``tests/artifacts/``.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from tests.support import woo
from tests.support.apps import overrides, run_jobs
from tests.support.panel import PASSWORD, ServedApp, make_user
from tests.support.services import wait_for
from wch.db import db, utcnow
from wch.jobs import dispatcher
from wch.models import Cart, Contact, Job

pytestmark = [pytest.mark.browser, pytest.mark.rabbitmq]


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
def test_staff_sees_pending_work_retries_a_failed_job_and_runs_cleanup(rabbit_app, spawn_worker, browser, artifacts,
                                                                       tmp_path):
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
        page.screenshot(path=str(artifacts / "failed-job.png"), full_page=True)
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
        page.screenshot(path=str(artifacts / "dashboard.png"), full_page=True)

        phone = browser.new_page(viewport={"width": 390, "height": 844})
        log_in(phone, served.url, "admin@example.com")
        phone.screenshot(path=str(artifacts / "dashboard-phone.png"), full_page=True)

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


@pytest.fixture
def env(request, fake_graph):
    """Store webhooks signed and order messages sent to the fake Graph API (harmless to the tests without them)."""
    return woo.sync_env(fake_graph.url) | overrides(request)


def watch_csp(page) -> list[str]:
    """Every Content-Security-Policy violation the page reports, from the console and from the DOM event."""
    violations: list[str] = []
    page.on("console", lambda message: violations.append(message.text)
            if "Content Security Policy" in message.text else None)
    page.add_init_script("window.cspViolations = [];"
                         "document.addEventListener('securitypolicyviolation',"
                         " e => window.cspViolations.push(e.violatedDirective + ' ' + e.blockedURI));")
    return violations


def csp_violations(page, console: list[str]) -> list[str]:
    return console + page.evaluate("window.cspViolations")


def test_an_admin_disables_a_viewer_whose_session_then_ends_at_its_next_request(app, browser):
    make_user("admin@example.com", "admin")
    make_user("viewer@example.com", "viewer")
    with ServedApp(app) as served:
        viewer = browser.new_context().new_page()
        log_in(viewer, served.url, "viewer@example.com")
        viewer.goto(f"{served.url}/admin/jobs/")
        assert viewer.locator("#jobs-table").count() == 1

        admin = browser.new_context().new_page()
        log_in(admin, served.url, "admin@example.com")
        admin.goto(f"{served.url}/admin/users/")
        with admin.expect_navigation():
            admin.click('tr[data-user="viewer@example.com"] [data-action="disable"]')
        assert admin.locator(".alert", has_text="viewer@example.com is disabled.").count() == 1

        with viewer.expect_navigation():
            viewer.click("a#older-page, a.navbar-brand")  # the viewer's next request, whatever it is
        assert "/login" in viewer.url
        viewer.fill("#email", "viewer@example.com")
        viewer.fill("#password", PASSWORD)
        viewer.click("button[type=submit]")
        assert viewer.locator(".alert", has_text="disabled").count() == 1


def test_staff_find_order_1234_from_the_search_box_and_see_its_message_state(app, client, broker, stub_worker,
                                                                            browser):
    make_user("viewer@example.com", "viewer")
    assert woo.post(client, "order.created", woo.order(1234)).status_code == 200
    assert woo.post(client, "order.created", woo.order(1235)).status_code == 200
    run_jobs(broker, stub_worker)  # the worker tells both customers
    with ServedApp(app) as served:
        page = browser.new_page()
        console = watch_csp(page)
        log_in(page, served.url, "viewer@example.com")
        page.goto(f"{served.url}/admin/jobs/")
        page.fill("input[name=q]", "order 1234")
        with page.expect_navigation():
            page.press("input[name=q]", "Enter")
        assert cell(page, "#search-notice") == "Jobs about order 1234"
        assert page.locator("#jobs-table tbody tr[data-job-id]").count() == 1
        assert cell(page, '[data-subject="order:1234"]') == "order 1234"
        with page.expect_navigation():
            page.click('[data-subject="order:1234"] a')
        assert cell(page, "#order-status") == "processing"
        assert cell(page, '[data-message-status="processing"] .wch-message-state') == "sent"
        assert csp_violations(page, console) == []


def test_a_viewer_sees_every_new_screen_but_can_change_nothing_and_no_page_breaks_the_csp(app, client, browser):
    make_user("admin@example.com", "admin")
    make_user("viewer@example.com", "viewer")
    assert woo.post(client, "order.created", woo.order(1234)).status_code == 200
    assert woo.post(client, "product.updated", woo.product(42, sku="SKU-9")).status_code == 200
    db.session.add(Contact(phone="+4915112345678", name="Ana"))
    db.session.commit()
    contact_id = db.session.scalar(select(Contact.id))
    db.session.rollback()  # SQLite: never hold the write lock the served app needs
    screens = ["/admin/orders/", "/admin/orders/1234", "/admin/products/", "/admin/products/42",
               "/admin/contacts/", f"/admin/contacts/{contact_id}", "/admin/deliveries/", "/admin/jobs/?q=sku+SKU-9"]
    with ServedApp(app) as served:
        viewer = browser.new_context().new_page()
        console = watch_csp(viewer)
        log_in(viewer, served.url, "viewer@example.com")
        for screen in screens:
            response = viewer.goto(f"{served.url}{screen}")
            assert response.status == 200, screen
            buttons = viewer.locator("form[method=post]:not([action='/logout']) button")
            assert buttons.count() == 0, screen  # nothing to press
        viewer.goto(f"{served.url}/admin/contacts/{contact_id}")
        assert cell(viewer, "#opt-state") == "opted in" and viewer.locator("#opt-out").count() == 0
        assert viewer.locator("text=Users").count() == 0  # not in the viewer's menu
        token = re.search(r'name="csrf_token" value="([^"]+)"', viewer.content()).group(1)
        for admin_only in ("/admin/users/", "/admin/audit/"):
            assert viewer.goto(f"{served.url}{admin_only}").status == 403
        assert viewer.request.post(f"{served.url}/admin/contacts/{contact_id}/opt-out",
                                   form={"csrf_token": token}).status == 403
        assert csp_violations(viewer, console) == []

        admin = browser.new_context().new_page()
        admin_console = watch_csp(admin)
        log_in(admin, served.url, "admin@example.com")  # the dashboard and its chart
        admin.wait_for_function("document.querySelector('#hourly-chart').width > 0")
        for screen in (*screens, "/admin/users/", "/admin/audit/", "/admin/settings/", "/admin/campaigns/new"):
            assert admin.goto(f"{served.url}{screen}").status == 200, screen
        admin.goto(f"{served.url}/admin/campaigns/new")  # a CSV goes up with a progress bar
        admin.fill("#name", "Spring")
        admin.check("#kind-text")
        admin.fill("#text", "Hi {name}")
        admin.check("#audience-csv")
        admin.set_input_files("#csv_file", files=[{"name": "audience.csv", "mimeType": "text/csv",
                                                   "buffer": b"phone,name\n+4915112345678,Ana\nnope,Bob\n"}])
        admin.click("#create-campaign")
        admin.wait_for_selector("#open-campaign")
        assert admin.locator(".alert", has_text="Campaign created with 1 recipient(s).").count() == 1
        assert cell(admin, "#bad-rows tbody tr td:nth-child(2)") == "nope"
        admin.goto(f"{served.url}/admin/settings/")
        admin.fill("#message", "Hi {name}, {nope}")
        assert "Unknown placeholder" in cell(admin, "#preview-problem")  # wch.js runs under the policy
        assert csp_violations(admin, admin_console) == []
        # The policy is in force: an inline script (what an injected <script> would be) does not run.
        admin.evaluate("() => { const s = document.createElement('script');"
                       " s.textContent = 'window.inlineRan = true'; document.head.appendChild(s); }")
        wait_for(lambda: admin.evaluate("window.cspViolations.length") > 0, timeout=5, what="the violation report")
        assert admin.evaluate("window.inlineRan === undefined")
