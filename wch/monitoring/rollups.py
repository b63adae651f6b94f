"""Dashboard numbers kept ahead of time, so ``/admin/`` and ``/metrics`` cost the same at a million rows.

- Jobs finished per hour: a periodic job adds the jobs finished since its
  mark to ``job_hour_counts`` and moves the mark; the dashboard reads those
  few rows plus the short live tail after the mark (range counts on
  ``ix_jobs_status_finished``). Nothing is added to the worker's own
  transitions, so busy workers never queue on a shared counter row.
- Carts: the same periodic job (and every cleanup) stores the cart numbers
  in a snapshot; the dashboard shows it while it is fresh and counts live
  when there is none.

A job counted in an hour stays counted there: one that failed and was then
retried from the panel shows as failed in that hour and, later, succeeded.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError

from wch.carts.stats import cart_overview
from wch.db import db
from wch.models import Job, JobHourCount, JobStatus, RollupMark, Snapshot

FINISHED_JOBS = "finished_jobs"
CARTS = "carts"
OUTCOMES = (JobStatus.SUCCEEDED.value, JobStatus.FAILED.value)
HOURS = 24
# Jobs finished this recently are left to the live tail: their transactions may not have committed yet.
SETTLE = timedelta(minutes=1)
KEEP = timedelta(hours=HOURS * 2)
SNAPSHOT_MAX_AGE = timedelta(minutes=10)


def roll_up_finished_jobs(*, now: datetime) -> int:
    """Count the jobs finished between the mark and a minute ago into their hours; returns how many.

    The mark's row is locked first, so two runs one after the other never
    count a job twice. The caller commits.
    """
    mark = db.session.scalars(select(RollupMark).where(RollupMark.name == FINISHED_JOBS).with_for_update()).first()
    if mark is None:
        try:
            with db.session.begin_nested():
                mark = RollupMark(name=FINISHED_JOBS, upto=window_start(now))
                db.session.add(mark)
        except IntegrityError:
            return 0  # another run made the mark meanwhile; the next run carries on from it
    upto = now - SETTLE
    counted = 0
    for hour, outcome, count in _counts_by_hour(mark.upto, upto):
        counted += count
        added = db.session.execute(update(JobHourCount).where(JobHourCount.hour == hour,
                                                              JobHourCount.outcome == outcome)
                                   .values(count=JobHourCount.count + count))
        if added.rowcount == 0:
            db.session.add(JobHourCount(hour=hour, outcome=outcome, count=count))
    if upto > mark.upto:
        mark.upto = upto
    db.session.execute(delete(JobHourCount).where(JobHourCount.hour < now - KEEP))
    return counted


def finished_per_hour(*, now: datetime) -> tuple[dict[str, int], dict[str, Any]]:
    """Jobs succeeded and failed in each of the last 24 clock hours (UTC; the last still filling), and in total.

    The rolled-up hours, plus the jobs finished since the mark counted live.
    """
    start = window_start(now)
    hours = [start + timedelta(hours=i) for i in range(HOURS)]
    series = {outcome: dict.fromkeys(hours, 0) for outcome in OUTCOMES}
    mark = db.session.scalar(select(RollupMark.upto).where(RollupMark.name == FINISHED_JOBS))
    since = max(mark, start) if mark is not None else start
    if mark is not None:
        for row in db.session.scalars(select(JobHourCount).where(JobHourCount.hour >= start)):
            if row.outcome in series and row.hour in series[row.outcome]:
                series[row.outcome][row.hour] += row.count
    for hour, outcome, count in _counts_by_hour(since, now + timedelta(seconds=1)):
        if hour in series[outcome]:
            series[outcome][hour] += count
    totals = {outcome: sum(series[outcome].values()) for outcome in OUTCOMES}
    return totals, {"hours": [hour.isoformat() for hour in hours],
                    **{outcome: list(series[outcome].values()) for outcome in OUTCOMES}}


def window_start(now: datetime) -> datetime:
    return now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=HOURS - 1)


def _counts_by_hour(since: datetime, until: datetime) -> list[tuple[datetime, str, int]]:
    """(hour, outcome, count) of the jobs finished in [since, until), one index range count per hour."""
    found = []
    hour = since.replace(minute=0, second=0, microsecond=0)
    while hour < until:
        low, high = max(hour, since), min(hour + timedelta(hours=1), until)
        rows = db.session.execute(
            select(Job.status, func.count())
            .where(Job.status.in_(OUTCOMES), Job.finished_at >= low, Job.finished_at < high)
            .group_by(Job.status)
        )
        found += [(hour, status, count) for status, count in rows if count]
        hour += timedelta(hours=1)
    return found


def refresh_cart_snapshot(*, expiry_hours: int, now: datetime, only_if_kept: bool = False) -> None:
    """Count the carts and keep the numbers for the dashboard (``only_if_kept``: only if a snapshot exists).

    The caller commits.
    """
    snapshot = db.session.get(Snapshot, CARTS, with_for_update=True)
    if snapshot is None and only_if_kept:
        return
    numbers = cart_overview(expiry_hours=expiry_hours, now=now)
    if snapshot is None:
        try:
            with db.session.begin_nested():
                db.session.add(Snapshot(name=CARTS, taken_at=now, data=numbers))
        except IntegrityError:
            pass  # taken by another run at the same moment
        return
    snapshot.taken_at, snapshot.data = now, numbers


def cart_numbers(*, expiry_hours: int, now: datetime) -> dict[str, Any]:
    """The cart numbers of a fresh snapshot (``as_of`` says when), or counted now when there is none."""
    snapshot = db.session.get(Snapshot, CARTS)
    if snapshot is not None and now - SNAPSHOT_MAX_AGE <= snapshot.taken_at <= now + SETTLE:
        return {**snapshot.data, "as_of": snapshot.taken_at}
    return {**cart_overview(expiry_hours=expiry_hours, now=now), "as_of": now}
