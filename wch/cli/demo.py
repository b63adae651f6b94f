"""``wch demo``: fill an empty database with a believable store, and start real work on it.

The store's history (a day of jobs, cleanups, a finished campaign) is made
up, for the panel's charts. The work it starts is real: a catalog sync per
product, a campaign to every opted-in contact, and the abandoned-cart scan.
With ``WHATSAPP_MODE=sandbox`` (what ``make run`` uses) it all succeeds
without a Meta account.
"""

from __future__ import annotations

import random
import secrets
import traceback
import uuid
from datetime import timedelta
from decimal import Decimal

import click
from flask.cli import with_appcontext
from sqlalchemy import func, select

from wch import runtime
from wch.carts.cleanup import CLEANUP_CARTS
from wch.carts.reminder_settings import save_settings
from wch.carts.reminders import SEND_CART_REMINDER, scan_later
from wch.db import db, read_only, transaction, utcnow
from wch.jobs.dispatcher import actor_of, job_types
from wch.jobs.messages import args_digest
from wch.jobs.upkeep import EXPIRE_RESULTS
from wch.messaging import campaigns
from wch.models import (
    Campaign,
    CampaignStatus,
    Cart,
    CartStatus,
    CleanupRun,
    Contact,
    Job,
    JobAttempt,
    JobStatus,
    Recipient,
    RecipientStatus,
    Role,
    User,
)
from wch.store.catalog import SYNC_INVENTORY, SYNC_PRODUCT, record_product, request_sync
from wch.store.orders import NOTIFY_ORDER
from wch.store.woocommerce import ProductSnapshot

DEMO_ADMIN = "admin@demo.store"
PRODUCTS = [("Linen shirt", Decimal("39.90")), ("Canvas tote", Decimal("18.00")), ("Espresso beans 1 kg",
            Decimal("24.50")), ("Ceramic mug", Decimal("12.00")), ("Wool scarf", Decimal("45.00")),
            ("Running socks (3)", Decimal("15.90")), ("Leather wallet", Decimal("59.00"))]
NAMES = ["Ana Souza", "Bruno Lima", "Carla Mendes", "Diego Rocha", "Elena Costa", "Felipe Alves", "Gabriela Dias",
         "Hugo Martins", "Isabel Nunes", "João Pereira", "Karina Lopes", "Lucas Ribeiro", None]
# Job types from every family, shown when their actors are declared.
PREFERRED_TYPES = [t.name for t in (SYNC_PRODUCT, SYNC_INVENTORY, NOTIFY_ORDER, SEND_CART_REMINDER, CLEANUP_CARTS,
                                    EXPIRE_RESULTS)]
TIMEOUT = ("ConnectionError", "HTTPSConnectionPool(host='graph.facebook.com', port=443): Read timed out. "
           "(read timeout=10)")
# What each kind of job plausibly fails with.
ERRORS = {
    SYNC_PRODUCT.name: [TIMEOUT, ("WhatsAppError", "(#100) Invalid parameter: price must be a positive amount")],
    SYNC_INVENTORY.name: [TIMEOUT, ("WhatsAppError", "(#100) Invalid parameter: retailer_id not found in the catalog")],
    NOTIFY_ORDER.name: [TIMEOUT, ("WhatsAppError", "(#131026) Message undeliverable: the number is not on WhatsApp")],
    SEND_CART_REMINDER.name: [TIMEOUT, ("WhatsAppError", "(#130429) Rate limit hit: too many messages sent")],
}
OTHER_ERRORS = [("OperationalError", "(psycopg.errors.QueryCanceled) canceling statement due to statement timeout")]
LIVE_CAMPAIGN = "Weekend flash sale"


@click.command()
@click.option("--seed", default=None, type=int, help="Random seed, for the same store every time.")
@click.option("--if-empty", is_flag=True, help="Do nothing, successfully, when the database already has data.")
@with_appcontext
def demo(seed: int | None, if_empty: bool) -> None:
    """Fill an EMPTY database with a demo store: contacts, carts, jobs, cleanups, a campaign, an admin."""
    tables = (User, Job, Cart, Contact, Campaign)
    with read_only():
        filled = any(db.session.scalar(select(func.count()).select_from(model)) for model in tables)
    if filled:
        if if_empty:
            click.echo("the database already has data; no demo store added (create a log-in with `wch users create`)")
            return
        raise click.ClickException("the database is not empty; wch demo only fills a fresh one "
                                   "(point WCH_DATABASE_URL at a new database and run `wch db upgrade` first)")
    rng = random.Random(seed)
    now = utcnow()
    password = secrets.token_urlsafe(12)
    with transaction():
        admin = User(email=DEMO_ADMIN, role=Role.ADMIN.value)
        admin.set_password(password)
        db.session.add(admin)
        contacts = _contacts(rng, now)
        carts = _carts(rng, now, runtime.settings().cart_expiry_hours, contacts)
        jobs = _jobs(rng, now)
        runs = _cleanup_runs(rng, now)
        _campaign(rng, now, contacts)
    with transaction():
        started = _start_work(now)
    click.echo(f"demo store: {len(contacts)} contacts, {carts} carts, {jobs} jobs, {runs} cleanup runs, 2 campaigns")
    click.echo(f"started: {started}")
    if not runtime.settings().whatsapp_sandbox:
        click.echo("(WhatsApp is live: without WHATSAPP_ACCESS_TOKEN these jobs fail; WHATSAPP_MODE=sandbox answers "
                   "them inside wch)")
    click.echo(f"log in at /admin/ as {DEMO_ADMIN} with password: {password}")


def _start_work(now) -> str:
    """Dispatch real jobs: the catalog sync of each product, a campaign, and the abandoned-cart scan."""
    settings = runtime.settings()
    for store_id, (name, price) in enumerate(PRODUCTS, start=1):
        product, change = record_product(ProductSnapshot(
            store_id=store_id, retailer_id=f"DEMO-{store_id}", name=name, description=f"{name}, from the demo store.",
            price=price, sale_price=None, currency=settings.store_currency or "BRL", stock_quantity=20,
            availability="in stock", store_status="publish", image_url=f"https://shop.example/img/{store_id}.jpg",
            product_url=f"https://shop.example/product/{store_id}/", modified_at=now))
        db.session.flush()
        request_sync(product, change)
    save_settings({"enabled": True, "delay_hours": 2, "template_name": "cart_reminder", "template_language": "en_US"},
                  cart_expiry_hours=settings.cart_expiry_hours)
    campaign = campaigns.create_campaign(name=LIVE_CAMPAIGN, template_name="flash_sale",
                                         template_parameters=["{name}"], all_contacts=True).campaign
    campaigns.start_campaign(campaign.id, max_broker_delay=settings.max_broker_delay)
    scan_later("demo")
    return (f"{len(PRODUCTS)} product syncs, the campaign {LIVE_CAMPAIGN!r} to {campaign.total} contacts, "
            "the abandoned-cart scan")


def _phone(rng: random.Random) -> str:
    return f"+55119{rng.randrange(10_000_000, 99_999_999)}"


def _contacts(rng: random.Random, now) -> list[Contact]:
    contacts = []
    phones = set()
    while len(phones) < 60:
        phones.add(_phone(rng))
    for index, phone in enumerate(sorted(phones)):
        contact = Contact(phone=phone, name=rng.choice(NAMES), created_at=now - timedelta(days=rng.uniform(1, 90)),
                          opted_out_at=now - timedelta(days=3) if index % 12 == 0 else None,
                          last_inbound_at=now - timedelta(hours=rng.uniform(1, 200)))
        contacts.append(contact)
    db.session.add_all(contacts)
    return contacts


def _carts(rng: random.Random, now, expiry_hours: int, contacts: list[Contact]) -> int:
    plan = (
        [(CartStatus.ACTIVE, rng.uniform(0.05, 20), False) for _ in range(18)]
        + [(CartStatus.ABANDONED, rng.uniform(25, 60), True) for _ in range(10)]
        + [(CartStatus.COMPLETED, rng.uniform(1, 150), bool(i % 3 == 0)) for i in range(14)]
        + [(rng.choice([CartStatus.ACTIVE, CartStatus.ABANDONED]), expiry_hours + rng.uniform(1, 200), False)
           for _ in range(9)]
    )
    for status, idle_hours, reminded in plan:
        contact = rng.choice(contacts)
        items = [{"product_id": str(rng.randrange(100, 999)), "name": name, "price": str(price),
                  "quantity": rng.randint(1, 3)} for name, price in rng.sample(PRODUCTS, rng.randint(1, 3))]
        total = sum(Decimal(item["price"]) * item["quantity"] for item in items)
        updated = now - timedelta(hours=idle_hours)
        cart = Cart(customer_phone=contact.phone, customer_name=contact.name, items=items, total=total,
                    currency="BRL", status=status.value, created_at=updated - timedelta(minutes=rng.uniform(2, 90)),
                    updated_at=updated)
        if reminded:
            cart.reminder_sent_at = updated + timedelta(hours=1) if status is CartStatus.ABANDONED else (
                updated - timedelta(hours=2))
            if status is CartStatus.COMPLETED:
                cart.recovered_at, cart.recovered_order_id, cart.recovered_revenue = updated, str(rng.randrange(
                    1000, 9999)), total
        db.session.add(cart)
    return len(plan)


def _jobs(rng: random.Random, now) -> int:
    declared = set(job_types())
    types = [t for t in PREFERRED_TYPES if t in declared] or sorted(declared)
    count = 0
    for _ in range(160):
        type_ = rng.choice(types)
        enqueued = now - timedelta(hours=rng.uniform(0.1, 23.9))
        outcome = JobStatus.FAILED if rng.random() < 0.12 else JobStatus.SUCCEEDED
        _add_job(rng, type_, outcome, enqueued)
        count += 1
    for status, eta in [(JobStatus.QUEUED, None)] * 4 + [(JobStatus.QUEUED, 600)] * 3 + [(JobStatus.RETRYING, 240)] * 2:
        _add_job(rng, rng.choice(types), status, now - timedelta(seconds=rng.uniform(5, 90)), eta=eta, now=now)
        count += 1
    return count


def _add_job(rng: random.Random, type_: str, status: JobStatus, enqueued, *, eta: float | None = None,
             now=None) -> None:
    args = _args(rng, type_, enqueued)
    job = Job(id=str(uuid.uuid4()), type=type_, queue="demo", args=args, status=status.value, attempts=0,
              enqueued_at=enqueued, digest=args_digest(type_, args), published_at=enqueued)
    if status in (JobStatus.SUCCEEDED, JobStatus.FAILED):
        attempts = 4 if status is JobStatus.FAILED else rng.choice([1, 1, 1, 2])
        started = enqueued + timedelta(seconds=rng.uniform(0.05, 2))
        for number in range(1, attempts + 1):
            finished = started + timedelta(seconds=rng.uniform(0.1, 3))
            last = number == attempts
            ok = last and status is JobStatus.SUCCEEDED
            name, message = rng.choice(ERRORS.get(type_, OTHER_ERRORS))
            error = None if ok else f"{name}: {message}"
            job.attempt_log.append(JobAttempt(
                number=number, worker="demo-host:4242", started_at=started, finished_at=finished,
                outcome="succeeded" if ok else ("failed" if last else "retrying"), error=error,
                traceback=None if ok else _fake_traceback(name, message)))
            job.started_at, job.finished_at = started, finished
            started = finished + timedelta(seconds=(60, 300, 900, 0)[number - 1])
        job.attempts, job.worker = attempts, "demo-host:4242"
        last_attempt = job.attempt_log[-1]
        job.last_error, job.traceback = last_attempt.error, last_attempt.traceback
        job.queue = _queue(type_)
        if status is JobStatus.SUCCEEDED:
            job.result = {"ok": True}
    else:
        job.queue = _queue(type_)
        job.published_at = None  # the outbox relay publishes it once a worker runs
        if eta:
            job.eta = now + timedelta(seconds=eta)
        if status is JobStatus.RETRYING:
            job.attempts, job.last_error = 1, "ConnectionError: Read timed out. (read timeout=10)"
    db.session.add(job)


def _args(rng: random.Random, type_: str, enqueued) -> dict:
    if type_ in (SYNC_PRODUCT.name, SYNC_INVENTORY.name, NOTIFY_ORDER.name):
        return {"store_id": rng.randrange(100, 999)}
    if type_ == SEND_CART_REMINDER.name:
        return {"cart_id": rng.randrange(1, 50), "updated_at": enqueued.isoformat()}
    return {"trigger": "schedule"} if type_ == CLEANUP_CARTS.name else {}


def _queue(type_: str) -> str:
    return actor_of(type_).queue_name


def _fake_traceback(name: str, message: str) -> str:
    frame = ("/srv/wch/wch/whatsapp/client.py", 88, "send", "response = self._post(path, body)")
    lines = traceback.format_list([frame])
    return "Traceback (most recent call last):\n" + "".join(lines) + f"{name}: {message}\n"


def _cleanup_runs(rng: random.Random, now) -> int:
    for hours_ago in range(24, 0, -1):
        started = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=hours_ago)
        deleted = rng.choice([0, 0, 1, 2, 3, 5])
        db.session.add(CleanupRun(trigger="schedule", cutoff=started - timedelta(hours=72), started_at=started,
                                  finished_at=started + timedelta(seconds=0.2), deleted=deleted,
                                  batches=1 if deleted else 0, duration_seconds=0.2, longest_batch_seconds=0.1))
    return 24


def _campaign(rng: random.Random, now, contacts: list[Contact]) -> None:
    audience = [c for c in contacts if c.opted_out_at is None]
    campaign = Campaign(name="Winter sale: 20% off scarves", template_name="winter_sale", template_language="en_US",
                        template_parameters=["{name}"], audience="all_contacts",
                        status=CampaignStatus.COMPLETED.value, created_at=now - timedelta(days=2, hours=3),
                        started_at=now - timedelta(days=2), finished_at=now - timedelta(days=2) + timedelta(minutes=4),
                        total=len(audience), sent=0, delivered=0, read=0, failed=0, skipped=0)
    db.session.add(campaign)
    db.session.flush()
    sent_at = campaign.started_at
    for contact in audience:
        sent_at += timedelta(seconds=rng.uniform(0.5, 4))
        roll = rng.random()
        recipient = Recipient(campaign_id=campaign.id, phone=contact.phone, name=contact.name, attempts=1)
        if roll < 0.08:
            recipient.status, recipient.error_code = RecipientStatus.FAILED.value, 131026
            recipient.error, recipient.failed_at = "Message undeliverable", sent_at
            campaign.failed += 1
        else:
            recipient.wamid, recipient.sent_at = f"wamid.DEMO{uuid.uuid4().hex[:16]}", sent_at
            campaign.sent += 1
            recipient.status = RecipientStatus.SENT.value
            if roll < 0.85:
                recipient.status, recipient.delivered_at = RecipientStatus.DELIVERED.value, sent_at
                campaign.delivered += 1
            if roll < 0.55:
                recipient.status, recipient.read_at = RecipientStatus.READ.value, sent_at + timedelta(minutes=9)
                campaign.read += 1
        db.session.add(recipient)
