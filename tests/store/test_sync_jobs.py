"""Sync jobs on the in-process StubBroker against the fake Graph API: the catalog and order logic, fast."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from tests.support import woo
from tests.support.apps import run_jobs, stub_worker_for, with_env
from wch.db import db, utcnow
from wch.jobs import dispatch, retry
from wch.messaging import contacts
from wch.models import Job, Message, Product
from wch.store.catalog import SYNC_PRODUCT

# Meta's verdict on each batch is checked 0.1 s after the push (the folder's env turns the check off).
CHECKING = with_env(WCH_CATALOG_CHECK_DELAY="0.1")


def run(broker, worker) -> None:
    run_jobs(broker, worker)
    db.session.expire_all()


def last_job(type_: str) -> Job:
    db.session.rollback()
    return db.session.scalars(select(Job).where(Job.type == type_).order_by(Job.enqueued_at.desc())).first()


def test_every_product_is_pushed_in_batches_of_at_most_1000(app, broker, stub_worker, fake_graph):
    db.session.add_all(Product(store_id=n, retailer_id=f"SKU-{n}", name=f"P{n}", currency="EUR", price=n,
                               availability="in stock", store_status="publish") for n in range(1, 2501))
    db.session.commit()
    result = app.test_cli_runner().invoke(args=["sync", "products", "--all"])
    assert result.exit_code == 0, result.output
    run(broker, stub_worker)

    sizes = [len(batch.json["requests"]) for batch in fake_graph.batches()]
    assert sizes == [1000, 1000, 500]
    ids = [item["data"]["id"] for item in fake_graph.batch_items()]
    assert ids == [f"SKU-{n}" for n in range(1, 2501)]
    assert db.session.scalar(select(Product).where(Product.store_id == 2500)).synced_retailer_id == "SKU-2500"
    assert [job.status for job in db.session.scalars(select(Job).where(Job.type == "sync_all_products"))] == [
        "succeeded"] * 4  # three pages and the one that found nothing left


def test_a_changed_sku_deletes_the_old_catalog_item(client, broker, stub_worker, fake_graph):
    woo.post(client, "product.updated", woo.product(41))
    run(broker, stub_worker)
    woo.post(client, "product.updated", woo.product(41, sku="NEW-41", date_modified_gmt="2026-11-02T00:00:00"))
    run(broker, stub_worker)

    second = fake_graph.batches()[1].json["requests"]
    assert [(r["method"], r["data"]["id"]) for r in second] == [("DELETE", "SHIRT-41"), ("UPDATE", "NEW-41")]


def test_a_deleted_product_is_deleted_from_the_catalog(client, broker, stub_worker, fake_graph):
    woo.post(client, "product.updated", woo.product(41))
    run(broker, stub_worker)
    woo.post(client, "product.deleted", {"id": 41})
    run(broker, stub_worker)
    assert fake_graph.batches()[1].json["requests"] == [{"method": "DELETE", "data": {"id": "SHIRT-41"}}]
    # A product wch never pushed has nothing to delete.
    woo.post(client, "product.deleted", {"id": 99})
    run(broker, stub_worker)
    assert len(fake_graph.batches()) == 2 and last_job("sync_product").result["skipped"] == "not in the catalog"


def test_a_draft_product_stays_out_of_the_catalog(client, broker, stub_worker, fake_graph):
    woo.post(client, "product.created", woo.product(41, status="draft"))
    run(broker, stub_worker)
    assert fake_graph.batches() == []


def test_the_full_item_carries_price_currency_and_stock(client, broker, stub_worker, fake_graph):
    woo.post(client, "product.updated", woo.product(41, sale_price="29.90", stock_quantity=-2))
    run(broker, stub_worker)
    [item] = fake_graph.batch_items()
    assert item == {"method": "UPDATE", "data": {
        "id": "SHIRT-41", "title": "Linen shirt 41", "description": "Soft linen & cotton.",
        "availability": "in stock", "condition": "new", "price": "39.90 EUR", "sale_price": "29.90 EUR",
        "quantity_to_sell_on_facebook": 0, "link": "https://shop.example/product/linen-shirt-41/",
        "image_link": "https://shop.example/img/41.jpg"}}


def test_an_explicit_sync_pushes_even_an_unchanged_product(app, client, broker, stub_worker, fake_graph):
    woo.post(client, "product.updated", woo.product(41))
    run(broker, stub_worker)
    dispatch(SYNC_PRODUCT, {"store_id": 41}, unique="41")
    run(broker, stub_worker)
    assert len(fake_graph.batches()) == 1 and last_job("sync_product").result["skipped"] == "catalog already up to date"

    result = app.test_cli_runner().invoke(args=["sync", "product", "41", "--json"])
    assert result.exit_code == 0, result.output
    assert not db.session().in_transaction()  # reporting the job began no new (write-locking) transaction
    run(broker, stub_worker)
    assert len(fake_graph.batches()) == 2


def test_sync_commands_refuse_what_they_cannot_do(app):
    runner = app.test_cli_runner()
    assert "no product 5" in runner.invoke(args=["sync", "product", "5"]).output
    assert "no order 5" in runner.invoke(args=["sync", "order", "5"]).output
    assert "--all" in runner.invoke(args=["sync", "products"]).output
    assert runner.invoke(args=["sync", "product", "abc"]).exit_code == 2
    assert db.session.scalars(select(Job)).first() is None


def test_order_message_is_a_template_outside_the_window(client, broker, stub_worker, fake_graph):
    woo.post(client, "order.updated", woo.order(900, "completed"))
    run(broker, stub_worker)
    [message] = fake_graph.messages()
    assert message.json["to"] == "+351912345678" and message.json["type"] == "template"
    assert message.json["template"]["name"] == "order_update"
    assert [p["text"] for p in message.json["template"]["components"][0]["parameters"]] == ["Ana", "900", "completed"]
    assert message.json["biz_opaque_callback_data"] == "order:900:completed"
    record = db.session.scalars(select(Message)).one()
    assert (record.kind, record.subject, record.state, record.form, record.wamid) == (
        "order", "order:900:completed", "sent", "template", message.answer["messages"][0]["id"])


def test_order_message_is_text_inside_the_window_and_falls_back_to_a_template(client, broker, stub_worker,
                                                                                fake_graph):
    contact = contacts.get_or_create("+351912345678")
    contact.last_inbound_at = utcnow() - timedelta(hours=2)
    db.session.commit()
    woo.post(client, "order.updated", woo.order(900, "processing"))
    run(broker, stub_worker)
    assert fake_graph.messages()[0].json["text"]["body"] == "Hi Ana, your order #900 is now processing."

    fake_graph.fail(code=131047)  # the window closed meanwhile
    woo.post(client, "order.updated", woo.order(900, "completed", date_modified_gmt="2026-11-03T00:00:00"))
    run(broker, stub_worker)
    types = [m.json["type"] for m in fake_graph.messages()]
    assert types == ["text", "text", "template"]
    assert last_job("notify_order").status == "succeeded" and last_job("notify_order").result["sent"] == "template"


def test_an_opted_out_customer_gets_no_order_message(client, broker, stub_worker, fake_graph):
    contacts.opt_out("+351912345678")
    db.session.commit()
    woo.post(client, "order.updated", woo.order(900, "completed"))
    run(broker, stub_worker)
    assert fake_graph.messages() == []
    assert last_job("notify_order").result["skipped"] == "customer opted out"


@with_env(WCH_ORDER_TEMPLATE="")
def test_without_a_template_the_order_job_fails_at_once_naming_the_setting(client, broker, stub_worker, fake_graph):
    woo.post(client, "order.updated", woo.order(900, "completed"))
    run(broker, stub_worker)
    job = last_job("notify_order")
    assert job.status == "failed" and job.attempts == 1 and "WCH_ORDER_TEMPLATE" in job.last_error
    assert fake_graph.messages() == []


def test_an_order_job_without_an_access_token_fails_and_its_retry_sends_once_the_token_is_set(
        app, app_factory, sqlite_url, client, broker, fake_graph):
    # The same store and database, run by a worker whose app has no access token yet.
    without_token = app_factory(sqlite_url, WHATSAPP_ACCESS_TOKEN="")
    with stub_worker_for(without_token, broker) as worker:
        woo.post(client, "order.updated", woo.order(900, "completed"))
        run(broker, worker)
    job = last_job("notify_order")
    assert job.status == "failed" and "WHATSAPP_ACCESS_TOKEN" in job.last_error

    with stub_worker_for(app, broker) as worker:
        retry(job.id)
        run(broker, worker)
    assert [m.json["to"] for m in fake_graph.messages()] == ["+351912345678"]
    assert last_job("notify_order").status == "succeeded"
    assert db.session.scalars(select(Message)).one().state == "sent"


def test_an_order_message_cut_off_in_flight_is_not_sent_again(client, broker, stub_worker, fake_graph):
    fake_graph.timeout(seconds=3)  # past the 1 s read timeout of sync_env
    woo.post(client, "order.updated", woo.order(900, "completed"))
    run(broker, stub_worker)
    job = last_job("notify_order")
    assert job.status == "failed" and job.attempts == 1 and "not resending" in job.last_error
    assert db.session.scalars(select(Message)).one().state == "uncertain"

    retry(job.id)
    run(broker, stub_worker)
    assert len(fake_graph.messages()) == 1
    assert last_job("notify_order").result["skipped"] == "message already sent or being sent"


@CHECKING
def test_meta_accepting_the_batch_is_checked_after_the_push(client, broker, stub_worker, fake_graph):
    woo.post(client, "product.updated", woo.product(41))
    run(broker, stub_worker)
    check = last_job("check_catalog_batch")
    handle = fake_graph.batches()[0].answer["handles"][0]
    assert check.status == "succeeded" and check.args == {"handle": handle}
    assert fake_graph.received("batch_status")[0].query == {"handle": handle}


@CHECKING
def test_items_meta_rejects_show_up_as_a_failed_job(client, broker, stub_worker, fake_graph):
    fake_graph.batch_errors = [{"line": 0, "id": "SHIRT-41", "message": "price: a price is required"}]
    woo.post(client, "product.updated", woo.product(41, price="", regular_price=""))
    run(broker, stub_worker)
    check = last_job("check_catalog_batch")
    assert check.status == "failed" and check.attempts == 1
    assert "rejected 1 item(s): SHIRT-41: price: a price is required" in check.last_error


@CHECKING
def test_a_batch_still_processing_is_checked_again(client, broker, stub_worker, fake_graph):
    fake_graph.batch_status_value = "in_progress"
    woo.post(client, "product.updated", woo.product(41))
    run(broker, stub_worker)
    check = last_job("check_catalog_batch")
    assert check.status == "failed" and check.attempts == 4  # the 0.1 s test schedule ran out
    assert "is in_progress" in check.last_error
