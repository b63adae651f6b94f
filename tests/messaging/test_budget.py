"""The send budget of a number, shared through the database: spacing, priorities, and Meta's "too fast"."""

from __future__ import annotations

import threading
import time

from sqlalchemy import select

from tests.support.apps import on_both_databases, run_jobs, with_env
from tests.support.whatsapp import SENDER, add_contacts, max_in_any_second, phone
from wch import runtime
from wch.db import db, transaction
from wch.messaging import campaigns
from wch.messaging.budget import HORIZON, SPACING_ALLOWANCE, Priority, SendBudget, Slots, sleep_until
from wch.models import Recipient

RATE = 40


def book_in_thread(app, results: list[float], priority: Priority, count: int) -> threading.Thread:
    """Book ``count`` slots at ``priority`` from another thread with its own session, as another process would."""
    def run():
        with app.app_context():
            budget = SendBudget(sender=SENDER, rate=RATE)
            if priority is Priority.CAMPAIGN:
                slots = Slots(budget, count)
                for _ in range(count):
                    slot = slots.take()
                    sleep_until(slot)
                    results.append(slot)
                    slots.need_one_less()
            else:
                for _ in range(count):
                    [slot] = budget.book(1, priority)
                    results.append(slot)
            db.session.remove()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


@on_both_databases
def test_slots_of_every_priority_are_spaced_so_no_second_holds_more_than_the_rate(app):
    db.session.commit()
    booked: list[float] = []
    threads = [book_in_thread(app, booked, priority, count)
               for priority, count in ((Priority.CAMPAIGN, 60), (Priority.REMINDER, 15), (Priority.TRANSACTIONAL, 15))]
    for thread in threads:
        thread.join(timeout=30)
    booked.sort()
    assert len(booked) == len(set(booked)) == 90
    gaps = [b - a for a, b in zip(booked, booked[1:], strict=False)]
    assert min(gaps) >= (1 + SPACING_ALLOWANCE) / RATE - 1e-6  # 1 µs: the slots' float seconds
    assert max_in_any_second(booked) <= RATE - 1  # the allowance leaves room for sends a little late


@on_both_databases
def test_an_order_books_ahead_of_the_campaigns_and_reminders_that_fill_the_budget(app):
    db.session.commit()
    budget = SendBudget(sender=SENDER, rate=RATE)
    while budget.book(RATE, Priority.CAMPAIGN, wait=False):
        pass  # the campaign books as far as it may
    while budget.book(1, Priority.REMINDER, wait=False):
        pass  # then reminders, further
    assert budget.book(1, Priority.CAMPAIGN, wait=False) == []  # a campaign may not book that far ahead
    [order] = budget.book(1, Priority.TRANSACTIONAL)
    assert order - time.time() <= HORIZON[Priority.REMINDER] + 2 / RATE


@on_both_databases
def test_meta_saying_too_fast_holds_every_sender_of_the_number(app):
    db.session.commit()
    budget = SendBudget(sender=SENDER, rate=RATE)
    budget.hold(1.5)
    held_from = time.time()
    assert budget.book(1, Priority.CAMPAIGN, wait=False) == []
    [order] = budget.book(1, Priority.TRANSACTIONAL)
    assert order >= held_from + 1.4


# A slot every 200 ms: the refusal is back well before the next send is due, even on a loaded machine (a send
# already on its way when Meta's answer arrives cannot be called back, at any rate).
@with_env(WCH_SEND_RATE_LIMIT="5")
def test_a_throughput_error_backs_the_whole_campaign_off(app, broker, stub_worker, fake_graph):
    add_contacts(12)
    fake_graph.rate_limit(recipient=phone(3), retry_after=1)
    campaign_id = campaigns.create_campaign(name="c", template_name="promo", all_contacts=True).campaign.id
    with transaction():
        campaigns.start_campaign(campaign_id, max_broker_delay=runtime.settings().max_broker_delay)
    run_jobs(broker, stub_worker)

    sends = fake_graph.messages()
    [refused] = [m for m in sends if m.status == 429]
    later = [m.time for m in sends if m.time > refused.time]
    assert later and min(later) >= refused.time + 0.9  # nobody sent during the second Meta asked for
    assert sorted(m.recipient for m in sends if m.status == 200) == sorted(phone(n) for n in range(12))


def test_the_pair_rate_limit_skips_that_customer_for_now_and_the_batch_goes_on(app, broker, stub_worker, fake_graph):
    add_contacts(6)
    fake_graph.fail(code=131056, recipient=phone(2), message="(#131056) Pair rate limit hit")
    campaign_id = campaigns.create_campaign(name="c", template_name="promo", all_contacts=True).campaign.id
    with transaction():
        campaigns.start_campaign(campaign_id, max_broker_delay=runtime.settings().max_broker_delay)
    run_jobs(broker, stub_worker)

    sends = fake_graph.messages()
    [refused] = [m for m in sends if m.status != 200]
    [retried] = [m for m in sends if m.recipient == phone(2) and m.status == 200]
    others = [m.time for m in sends if m.recipient != phone(2)]
    assert max(others) < retried.time and retried.time - refused.time >= 5.9  # the others did not wait for it
    db.session.rollback()
    assert {r.status for r in db.session.scalars(select(Recipient))} == {"sent"}
    assert campaigns.progress(campaign_id)["status"] == "completed"
