"""``POST /webhooks/woocommerce`` in one process: status codes, what is recorded, what is dispatched."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from tests.support import woo
from tests.support.apps import overrides, with_env
from tests.support.services import wait_for
from wch.db import db
from wch.models import Job, Order, Product, WebhookDelivery
from wch.store.signature import sign
from wch.store.woocommerce import TOPICS

URL = "/webhooks/woocommerce"


@pytest.fixture
def env(request):
    """The store's webhook secret and currency; no sync job runs here, so Meta is nowhere (port 9)."""
    return woo.sync_env("http://127.0.0.1:9/v24.0") | overrides(request)


def counts() -> dict[str, int]:
    db.session.rollback()
    return {model.__tablename__: db.session.scalar(select(func.count()).select_from(model))
            for model in (Job, Product, Order, WebhookDelivery)}


NOTHING = {"jobs": 0, "products": 0, "orders": 0, "webhook_deliveries": 0}


def jobs() -> list[Job]:
    db.session.rollback()
    return list(db.session.scalars(select(Job).order_by(Job.enqueued_at)))


def test_product_update_records_the_snapshot_and_dispatches_one_sync(client, broker):
    response = woo.post(client, "product.updated", woo.product(41, sale_price="29.90"))

    assert response.status_code == 200 and response.json["outcome"] == "recorded"
    product = db.session.scalars(select(Product)).one()
    assert (product.store_id, product.retailer_id, str(product.price), str(product.sale_price), product.currency,
            product.stock_quantity, product.availability) == (41, "SHIRT-41", "39.90", "29.90", "EUR", 12, "in stock")
    assert product.description == "Soft linen & cotton."
    [job] = jobs()
    assert (job.type, job.args, job.queue, job.id) == ("sync_product", {"store_id": 41}, "sync", response.json["job"])
    assert broker.queues["sync"].qsize() == 1  # published after commit


def test_the_ping_sent_when_a_webhook_is_created_gets_200_and_writes_nothing(client):
    response = client.post(URL, data=b"webhook_id=17", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 200
    assert counts() == NOTHING


def test_a_repeated_delivery_id_gets_200_and_changes_nothing(client):
    body, headers = woo.delivery("product.updated", woo.product(41), delivery_id="abc-1")
    assert client.post(URL, data=body, headers=headers).json["outcome"] == "recorded"
    before = counts()
    again = woo.product(41, name="Renamed", date_modified_gmt="2026-11-02T00:00:00")
    body, headers = woo.delivery("product.updated", again, delivery_id="abc-1")
    response = client.post(URL, data=body, headers=headers)

    assert response.status_code == 200 and response.json["outcome"] == "duplicate"
    assert counts() == before
    assert db.session.scalars(select(Product)).one().name == "Linen shirt 41"


def test_a_burst_of_updates_to_one_product_makes_one_job(client):
    for price in range(10, 20):
        assert woo.post(client, "product.updated", woo.product(41, regular_price=f"{price}.00")).status_code == 200
    [job] = jobs()
    assert job.type == "sync_product"
    assert str(db.session.scalars(select(Product)).one().price) == "19.00"


def test_a_stock_change_alone_dispatches_an_inventory_sync(client):
    woo.post(client, "product.updated", woo.product(41))
    _finish_jobs()
    response = woo.post(client, "product.updated", woo.product(41, stock_quantity=0, stock_status="outofstock"))

    [job] = [j for j in jobs() if j.status == "queued"]
    assert job.type == "sync_inventory" and job.args == {"store_id": 41} and response.json["job"] == job.id
    # An update that changes nothing the catalog shows dispatches nothing.
    woo.post(client, "product.updated", woo.product(41, stock_quantity=0, stock_status="outofstock",
                                                    categories=[]))
    assert len(jobs()) == 2


def test_an_update_older_than_the_snapshot_is_ignored(client):
    woo.post(client, "product.updated", woo.product(41, name="New", date_modified_gmt="2026-11-05T00:00:00"))
    _finish_jobs()
    response = woo.post(client, "product.updated", woo.product(41, name="Old", date_modified_gmt="2026-11-04T00:00:00"))
    assert response.status_code == 200 and response.json["job"] is None
    assert db.session.scalars(select(Product)).one().name == "New"


def test_product_deleted_dispatches_a_catalog_sync(client):
    woo.post(client, "product.created", woo.product(41))
    _finish_jobs()
    response = woo.post(client, "product.deleted", {"id": 41})
    assert response.status_code == 200
    product = db.session.scalars(select(Product)).one()
    assert product.deleted_at is not None and not product.in_catalog
    assert jobs()[-1].type == "sync_product" and jobs()[-1].status == "queued"


TRASHED = woo.product(41, status="trash", date_modified_gmt="2026-11-03T00:00:00")


@pytest.mark.parametrize("deleted", [{"id": 41}, TRASHED], ids=["deleted", "trashed"])
def test_a_late_update_does_not_bring_a_deleted_product_back(client, deleted):
    woo.post(client, "product.updated", woo.product(41, date_modified_gmt="2026-11-02T00:00:00"))
    _finish_jobs()
    woo.post(client, "product.deleted", deleted)
    _finish_jobs()
    # Older than the delete, or with no modification time at all: delivered late, it changes nothing.
    for late in (woo.product(41, name="Late", date_modified_gmt="2026-11-02T12:00:00"),
                 woo.product(41, name="Late", date_modified_gmt=None)):
        response = woo.post(client, "product.updated", late)
        assert response.status_code == 200 and response.json["job"] is None
    product = db.session.scalars(select(Product)).one()
    assert product.deleted_at is not None and product.name != "Late"


@pytest.mark.parametrize("topic, modified", [("product.restored", "2026-11-04T00:00:00"),
                                             ("product.updated", "2099-01-01T00:00:00")],
                         ids=["restored", "modified-after-the-delete"])
def test_a_restore_or_a_newer_modification_brings_a_deleted_product_back(client, topic, modified):
    woo.post(client, "product.updated", woo.product(41, date_modified_gmt="2026-11-02T00:00:00"))
    woo.post(client, "product.deleted", TRASHED)
    _finish_jobs()
    response = woo.post(client, topic, woo.product(41, name="Back", date_modified_gmt=modified))
    assert response.status_code == 200 and response.json["job"] is not None
    product = db.session.scalars(select(Product)).one()
    assert product.deleted_at is None and product.name == "Back" and product.in_catalog


def test_order_update_dispatches_a_notification_and_a_replay_adds_none(client):
    first = woo.post(client, "order.updated", woo.order(900, "completed"))
    replay = woo.post(client, "order.updated", woo.order(900, "completed"))

    order = db.session.scalars(select(Order)).one()
    assert (order.status, order.customer_phone, order.customer_name, str(order.total)) == (
        "completed", "+351912345678", "Ana Silva", "79.80")
    [job] = jobs()
    assert (job.type, job.args) == ("notify_order", {"store_id": 900})
    assert first.json["job"] == replay.json["job"] == job.id


def test_an_order_status_customers_do_not_hear_about_dispatches_nothing(client):
    response = woo.post(client, "order.created", woo.order(900, "pending"))
    assert response.status_code == 200 and response.json["job"] is None
    assert db.session.scalars(select(Order)).one().status == "pending"


@pytest.mark.parametrize(
    ("topic", "body", "status"),
    [
        ("product.updated", b"{not json", 400),
        ("product.updated", b"", 400),
        ("product.updated", b"\xff\xfe\x00", 400),
        ("product.updated", b"[1, 2]", 400),
        ("product.updated", b"[" * 100_000, 400),
        ("product.updated", json.dumps({"name": "no id"}).encode(), 400),
        ("product.updated", json.dumps({"id": "abc"}).encode(), 400),
        ("product.updated", json.dumps({"id": True}).encode(), 400),
        ("product.updated", json.dumps({"id": -4}).encode(), 400),
        ("product.updated", json.dumps({"id": 2**40}).encode(), 400),
        ("product.updated", json.dumps(woo.product(5, regular_price="cheap")).encode(), 400),
        ("product.updated", json.dumps(woo.product(5, price="1e9")).encode(), 400),
        ("product.updated", json.dumps(woo.product(5, stock_quantity="lots")).encode(), 400),
        ("product.updated", json.dumps(woo.product(5, name=["x"])).encode(), 400),
        ("order.updated", json.dumps(woo.order(5, status=None)).encode(), 400),
        ("order.updated", json.dumps(woo.order(5, total="NaN")).encode(), 400),
        ("product.deleted", json.dumps({}).encode(), 400),
        ("coupon.created", json.dumps({"id": 5}).encode(), 200),
        ("action.woocommerce_x", b"not even json", 200),
        ("", json.dumps(woo.product(5)).encode(), 200),
    ],
)
def test_bad_input_gets_its_status_and_writes_nothing(client, broker, topic, body, status):
    response = client.post(URL, data=body, headers=woo.delivery(topic, body)[1])
    assert response.status_code == status
    assert counts() == NOTHING
    assert broker.queues["sync"].qsize() == 0


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-WC-Webhook-Signature": ""},
        {"X-WC-Webhook-Signature": "not-base64-at-all"},
        {"X-WC-Webhook-Signature": sign(json.dumps(woo.product(5)).encode(), "another secret")},
        {"X-WC-Webhook-Signature": sign(b"a different body", woo.SECRET)},
        {"X-WC-Webhook-Signature": "ünicode"},
    ],
)
def test_a_missing_or_wrong_signature_gets_401_and_writes_nothing(client, headers):
    body = json.dumps(woo.product(5)).encode()
    headers = {"X-WC-Webhook-Topic": "product.updated", "X-WC-Webhook-Delivery-ID": "d-1"} | headers
    response = client.post(URL, data=body, headers=headers)
    assert response.status_code == 401
    assert counts() == NOTHING


def test_an_unsigned_form_post_that_is_not_the_ping_gets_401(client):
    response = client.post(URL, data=b"webhook_id=17&x=1", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 401
    assert counts() == NOTHING


@with_env(WOOCOMMERCE_WEBHOOK_SECRET="")
def test_without_a_secret_configured_the_webhook_says_so(client):
    response = woo.post(client, "product.updated", woo.product(5))
    assert response.status_code == 503 and "WOOCOMMERCE_WEBHOOK_SECRET" in response.json["outcome"]
    assert counts() == NOTHING


def test_rabbitmq_down_still_answers_200_and_keeps_the_job_for_the_relay(app_factory, sqlite_url):
    app = app_factory(sqlite_url, "amqp://guest:guest@127.0.0.1:1/%2F")
    with app.app_context():
        response = woo.post(app.test_client(), "order.updated", woo.order(900, "completed"))
        assert response.status_code == 200
        [job] = jobs()
        assert job.type == "notify_order" and job.status == "queued"
        # The publisher, off the request's path, could not reach RabbitMQ: the job goes back to the outbox.
        def back_in_the_outbox() -> bool:
            db.session.expire_all()
            return db.session.get(Job, job.id).published_at is None

        wait_for(back_in_the_outbox, what="the job back in the outbox")
        db.session.remove()


def test_csrf_protection_does_not_apply_to_the_webhook(app, client):
    # The panel's CSRFProtect would answer 400 to a POST without a token.
    assert "csrf" in app.extensions
    assert woo.post(client, "product.updated", woo.product(41)).status_code == 200


SIGNATURES = st.one_of(st.none(), st.just("valid"), st.text(st.characters(min_codepoint=32, max_codepoint=126),
                                                                max_size=60))


def _json_containers(inner):
    return st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5)


BODIES = st.one_of(
    st.binary(max_size=300),
    st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                 _json_containers, max_leaves=20).map(lambda value: json.dumps(value).encode()),
    st.builds(lambda pid, fields: json.dumps(woo.product(pid, **fields)).encode(),
              st.integers(min_value=-5, max_value=2**33),
              st.dictionaries(st.sampled_from(["price", "regular_price", "sale_price", "stock_quantity", "sku",
                                               "status", "stock_status", "images", "name", "date_modified_gmt",
                                               "manage_stock", "description"]),
                              st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)
                              | st.lists(st.integers(), max_size=2), max_size=4)),
    st.builds(lambda oid, fields: json.dumps(woo.order(oid, **fields)).encode(),
              st.integers(min_value=-5, max_value=2**33),
              st.dictionaries(st.sampled_from(["status", "total", "currency", "billing", "number",
                                               "date_modified_gmt"]),
                              st.none() | st.integers() | st.text(max_size=30)
                              | st.dictionaries(st.sampled_from(["phone", "first_name", "country"]),
                                                st.text(max_size=20) | st.integers(), max_size=3), max_size=3)),
)
TOPIC_NAMES = st.one_of(st.sampled_from(sorted(TOPICS)), st.text(st.characters(min_codepoint=32, max_codepoint=126),
                                                                  max_size=30))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=BODIES, topic=TOPIC_NAMES, signature=SIGNATURES)
def test_no_input_makes_the_webhook_fail_or_dispatch_without_a_valid_signature(client, body, topic, signature):
    before = counts()
    headers = {"X-WC-Webhook-Topic": topic, "X-WC-Webhook-Delivery-ID": f"h-{hash((body, topic, signature))}"}
    if signature == "valid":
        headers["X-WC-Webhook-Signature"] = sign(body, woo.SECRET)
    elif signature is not None:
        headers["X-WC-Webhook-Signature"] = signature
    response = client.post(URL, data=body, headers=headers)

    assert response.status_code in (200, 400, 401)
    event(f"{response.status_code} {response.json['outcome'] if response.status_code == 200 else ''}")
    if signature != "valid":
        assert counts() == before
    if response.status_code != 200 or response.json["outcome"] != "recorded":
        assert counts() == before


def _finish_jobs() -> None:
    """Mark every pending job done, as if a worker had run it (these tests look at dispatching only)."""
    db.session.rollback()
    db.session.query(Job).update({"status": "succeeded"})
    db.session.commit()


def test_old_delivery_ids_are_forgotten(client):
    from datetime import timedelta

    from wch.db import utcnow
    from wch.store.deliveries import forget_old_deliveries

    woo.post(client, "product.updated", woo.product(41), delivery_id="old")
    woo.post(client, "product.updated", woo.product(42), delivery_id="new")
    db.session.rollback()
    db.session.query(WebhookDelivery).filter_by(delivery_id="old").update({"received_at": utcnow() - timedelta(days=8)})
    db.session.commit()

    assert forget_old_deliveries(days=7) == 1
    assert [d.delivery_id for d in db.session.scalars(select(WebhookDelivery))] == ["new"]


@pytest.mark.parametrize(
    ("phone", "country", "expected"),
    [
        ("+351 912 345 678", "PT", "+351912345678"),
        ("00351912345678", "PT", "+351912345678"),
        ("912 345 678", "PT", "+351912345678"),  # a local number, read in the billing country
        ("351912345678", "", "+351912345678"),
        ("201 555 0123", "US", "+12015550123"),  # not Egypt's +20 15550123: local numbers are read locally first
        ("not a phone", "PT", None),
        ("", "PT", None),
    ],
)
def test_the_billing_phone_is_stored_in_international_form(client, phone, country, expected):
    billing = {"first_name": "Ana", "last_name": "", "phone": phone, "country": country}
    assert woo.post(client, "order.created", woo.order(900, "processing", billing=billing)).status_code == 200
    order = db.session.scalars(select(Order)).one()
    assert order.customer_phone == expected and order.customer_name == "Ana"


def test_a_new_order_recovers_the_customers_reminded_cart_once(client):
    from datetime import timedelta
    from decimal import Decimal

    from wch.carts.stats import recovery_stats
    from wch.db import utcnow
    from wch.models import Cart

    now = utcnow()
    carts = [Cart(customer_phone="+351912345678", customer_name="Ana", items=[{"name": "Mug", "quantity": 1}],
                  total=Decimal("70.00"), currency="EUR", status="abandoned", created_at=now - timedelta(days=3),
                  updated_at=now - timedelta(days=2), reminder_sent_at=now - timedelta(hours=hours))
             for hours in (30, 20)]
    db.session.add_all(carts)
    db.session.commit()

    assert woo.post(client, "order.created", woo.order(900, "processing")).status_code == 200
    db.session.expire_all()
    newest = carts[1]
    assert (newest.status, newest.recovered_order_id, newest.recovered_revenue) == ("completed", "900",
                                                                                    Decimal("79.80"))
    # Later deliveries of the same order (an update, a redelivery) count nothing more.
    woo.post(client, "order.updated", woo.order(900, "completed", date_modified_gmt="2026-11-02T00:00:00"))
    woo.post(client, "order.created", woo.order(900, "processing"))
    db.session.expire_all()
    assert carts[0].recovered_at is None
    assert recovery_stats() == {"reminded": 2, "recovered": 1, "recovered_revenue": "79.80"}
