"""Store import over the REST API (``wch.store.importer``, ``wch store import``), against a local fake store."""

from __future__ import annotations

import os
import signal
import subprocess
from datetime import UTC

import pytest
from sqlalchemy import func, select

from tests.support import woo
from tests.support.apps import on_both_databases, run_jobs, settings_of, with_env
from tests.support.fake_store import FakeStore
from tests.support.panel import client_for, csrf_token, log_in, make_user
from tests.support.services import BIN, wait_for
from wch import runtime
from wch.db import db
from wch.models import Job, Order, Product, StoreImport
from wch.store import importer


@pytest.fixture
def store():
    fake = FakeStore(products=250, orders=150).start()
    yield fake
    fake.stop()


@pytest.fixture
def env(request, fake_graph, store):
    return woo.sync_env(fake_graph.url) | store.env() | dict(getattr(request, "param", {}))


def sync_ranges() -> list[tuple[int, int]]:
    jobs = db.session.scalars(select(Job).where(Job.type == "sync_products")).all()
    return sorted((job.args["after"], job.args["through"]) for job in jobs)


def count(model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


def import_now(kind: str, **options):
    return importer.run_import(importer.StoreApi.from_settings(runtime.settings()), kind,
                               settings=runtime.settings(), **options)


def wch(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "wch"), *args], env=os.environ | env, capture_output=True, text=True, timeout=300)


@on_both_databases
def test_a_store_failing_mid_import_resumes_at_the_failed_page_and_pushes_each_product_once(
        app, broker, stub_worker, store, fake_graph):
    store.fail_page("products", 2, status=503)
    with pytest.raises(importer.StoreUnavailable, match="HTTP 503"):
        import_now("products")
    stopped = db.session.scalars(select(StoreImport)).one()
    assert (stopped.status, stopped.next_page, stopped.imported) == ("failed", 2, 100)
    assert "HTTP 503" in stopped.error
    db.session.rollback()

    done = import_now("products")
    assert (done.id, done.status, done.imported, done.total_pages, done.sync_jobs) == (stopped.id, "finished", 250,
                                                                                      3, 3)
    assert store.pages_served("products") == [1, 2, 3]
    assert count(Product) == 250 and count(StoreImport) == 1
    assert sync_ranges() == [(0, 100), (100, 200), (200, 250)], "one catalog push per page, none twice"

    run_jobs(broker, stub_worker)
    pushed = [item["data"]["id"] for item in fake_graph.batch_items()]
    assert sorted(pushed) == sorted(f"SHIRT-{n}" for n in range(1, 251)), "every product pushed exactly once"
    assert len(fake_graph.batches()) == 3


def test_ten_thousand_products_interrupted_then_resumed_import_each_page_once(app, env, store):
    store.counts["products"] = 10_000
    store.delay = 0.03  # a slow store, so the import can be interrupted in the middle
    cli_env = env | {"WCH_DATABASE_URL": settings_of(app).database_url, "WCH_BROKER_URL": "stub://"}
    db.session.commit()
    first = subprocess.Popen([str(BIN / "wch"), "store", "import", "products"], env=os.environ | cli_env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    wait_for(lambda: len(store.pages_served("products")) >= 30, timeout=120, what="30 pages to be read")
    os.killpg(first.pid, signal.SIGKILL)  # as a crash or Ctrl-\ would
    first.wait()
    store.delay = 0
    db.session.rollback()
    cut = db.session.scalars(select(StoreImport)).one()
    cut_id, cut_page = cut.id, cut.next_page
    assert cut.status == "running" and 30 <= cut_page < 100
    db.session.rollback()

    resumed = wch(["store", "import", "products"], cli_env)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming products import #{cut_id} at page {cut_page} of 100" in resumed.stdout
    assert "imported 10000 products in 100 page(s), 100 catalog sync job(s) dispatched" in resumed.stdout

    row = db.session.scalars(select(StoreImport)).one()
    assert (row.status, row.imported, row.sync_jobs, row.skipped) == ("finished", 10_000, 100, 0)
    assert count(Product) == 10_000
    assert sync_ranges() == [(n, n + 100) for n in range(0, 10_000, 100)], "a sync job per page, none twice"
    served = store.pages_served("products")
    assert sorted(set(served)) == list(range(1, 101))
    twice = {page for page in served if served.count(page) > 1}
    assert twice <= {cut_page}, "only the page in flight when the import was killed was read again"


def test_a_wrong_key_or_address_is_one_clear_error_and_changes_nothing(app, env, store):
    cli_env = env | {"WCH_DATABASE_URL": settings_of(app).database_url, "WCH_BROKER_URL": "stub://"}
    db.session.commit()
    refused = wch(["store", "import", "products"], cli_env | {"WOOCOMMERCE_CONSUMER_SECRET": "cs_wrong"})
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr.splitlines() == [
        "Error: the store refused the consumer key (HTTP 401 woocommerce_rest_cannot_view): check "
        "WOOCOMMERCE_CONSUMER_KEY and WOOCOMMERCE_CONSUMER_SECRET and that the key may read"]
    assert "cs_wrong" not in refused.stderr

    unreachable = wch(["store", "import", "orders"], cli_env | {"WOOCOMMERCE_URL": "http://127.0.0.1:1"})
    assert unreachable.returncode == 1
    assert unreachable.stderr.splitlines() == [
        "Error: cannot reach the store at http://127.0.0.1:1/wp-json/wc/v3: ConnectionError (check WOOCOMMERCE_URL)"]

    not_woo = wch(["store", "import", "orders"], cli_env | {"WOOCOMMERCE_URL": store.url + "/shop"})
    assert len(not_woo.stderr.splitlines()) == 1 and "no WooCommerce REST API" in not_woo.stderr

    unset = wch(["store", "import", "products"], cli_env | {"WOOCOMMERCE_URL": ""})
    assert unset.stderr.splitlines() == ["Error: WOOCOMMERCE_URL is not set: the import reads the store's REST API "
                                         "with a consumer key and secret"]
    db.session.rollback()
    assert count(StoreImport) == count(Product) == count(Order) == count(Job) == 0


@on_both_databases
def test_orders_are_imported_without_messaging_anyone_and_since_selects_the_recent_ones(app, store):
    since = store.modified_at(100).replace(tzinfo=UTC)
    recent = import_now("orders", since=since)
    assert (recent.imported, recent.total_items) == (50, 50)
    assert sorted(db.session.scalars(select(Order.store_id))) == list(range(101, 151))

    everything = import_now("orders")
    assert everything.imported == 150 and everything.id != recent.id
    assert count(Order) == 150
    assert count(Job) == 0, "past orders are not news: no notification job"
    assert set(db.session.scalars(select(Order.notified_status))) == {"completed"}


@with_env(WCH_STORE_CURRENCY="")
def test_products_need_the_store_currency(app):
    with pytest.raises(importer.StoreRefused, match="WCH_STORE_CURRENCY is not set"):
        import_now("products")


def test_the_panel_button_imports_and_shows_the_progress(app, broker, stub_worker, store):
    make_user("admin@example.com", "admin")
    admin = client_for(app)
    log_in(admin)
    page = admin.get("/admin/store-import/").get_data(as_text=True)
    assert store.url in page and "No products import yet" in page
    assert woo.SECRET not in page and "cs_fakestore" not in page

    token = csrf_token(admin, "/admin/store-import/")
    response = admin.post("/admin/store-import/products", data={"csrf_token": token})
    assert response.status_code == 302
    run_jobs(broker, stub_worker)
    page = admin.get("/admin/store-import/").get_data(as_text=True)
    assert 'data-import="products" data-status="finished"' in page
    assert "250 of 250" in page and "3 catalog sync jobs" in page
    assert count(Product) == 250

    make_user("viewer@example.com", "viewer")
    viewer = client_for(app)
    log_in(viewer, "viewer@example.com")
    assert 'id="import-orders"' not in viewer.get("/admin/store-import/").get_data(as_text=True)
    assert viewer.post("/admin/store-import/orders", data={
        "csrf_token": csrf_token(viewer, "/admin/store-import/")}).status_code == 403
    db.session.rollback()
    assert count(Order) == 0


@pytest.mark.parametrize("app", ["sqlite", "postgresql"], indirect=True)
def test_the_migration_goes_down_and_up_again(app):
    from flask_migrate import downgrade, upgrade

    db.session.remove()
    downgrade(revision="0005")
    assert "store_imports" not in db.inspect(db.engine).get_table_names()
    upgrade()
    assert "store_imports" in db.inspect(db.engine).get_table_names()



def test_two_processes_resuming_one_import_never_write_a_page_twice(app, store):
    store.fail_page("products", 2, status=502)
    with pytest.raises(importer.StoreUnavailable):
        import_now("products")
    db.session.rollback()
    api = importer.StoreApi.from_settings(runtime.settings())
    read_page = api.page

    def page_while_another_process_finishes(kind, number, *, since=None):
        answer = read_page(kind, number, since=since)
        if number == 2 and store.pages_served("products").count(2) == 1:
            import_now("products")  # the other process: resumes at page 2 too, and gets there first
        return answer

    api.page = page_while_another_process_finishes
    with pytest.raises(importer.ImportBusy, match="another one is running it"):
        importer.run_import(api, "products", settings=runtime.settings())
    db.session.rollback()
    row = db.session.scalars(select(StoreImport)).one()
    assert (row.status, row.imported, row.sync_jobs) == ("finished", 250, 3)
    assert sync_ranges() == [(0, 100), (100, 200), (200, 250)]


def test_the_import_job_goes_on_in_a_chain_of_short_jobs(app, broker, stub_worker, store, monkeypatch):
    from wch.actors import sync as sync_actors

    monkeypatch.setattr(sync_actors, "IMPORT_SLICE_SECONDS", 0)  # one page per job
    importer.import_later("products")
    run_jobs(broker, stub_worker)
    jobs = db.session.scalars(select(Job).where(Job.type == "import_store").order_by(Job.enqueued_at)).all()
    assert [(job.status, job.result["next_page"]) for job in jobs] == [("succeeded", 2), ("succeeded", 3),
                                                                      ("succeeded", 4)]
    row = db.session.scalars(select(StoreImport)).one()
    assert (row.status, row.imported) == ("finished", 250)
    assert store.pages_served("products") == [1, 2, 3]
