"""Cart numbers for the panel, the dashboard and ``wch carts stats``."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import case, func, select

from wch.carts.cleanup import UNCONVERTED, count_expired, expiry_cutoff
from wch.db import db
from wch.models import Cart, CartStatus, CleanupRun

RECOVERY_WINDOW = timedelta(days=7)


def cart_stats(expiry_hours: int, recovery_window_hours: int) -> dict[str, Any]:
    """Carts by status, expired ones awaiting cleanup, reminders and recoveries, and the last cleanup run."""
    counts = dict(db.session.execute(select(Cart.status, func.count()).group_by(Cart.status)).all())
    return {
        **{status.value: counts.get(status.value, 0) for status in CartStatus},
        "expired_awaiting_cleanup": count_expired(expiry_hours, recovery_window_hours),
        **recovery_stats(),
        "last_cleanup": last_cleanup(),
    }


def last_cleanup() -> dict[str, Any] | None:
    last = db.session.scalars(select(CleanupRun).order_by(CleanupRun.started_at.desc()).limit(1)).first()
    return last.to_dict() if last else None


def cart_overview(*, expiry_hours: int, now: datetime) -> dict[str, Any]:
    """Carts for the dashboard, every count an index range rather than a whole-table scan.

    Completed carts are kept for good, so their all-time total grows without
    bound (and counting it reads every row); the dashboard shows those
    completed in the last 7 days instead. Active and abandoned carts stay few
    because the cleanup deletes them once expired. Reminders sent and carts
    recovered are over the same 7 days; the rate is recovered / reminded.
    """
    since = now - RECOVERY_WINDOW
    cutoff = expiry_cutoff(expiry_hours, now=now)
    # One pass over ix_carts_status_updated_at counts both the unconverted carts and the expired among them.
    counts, expired = {}, 0
    for status, count, stale in db.session.execute(
        select(Cart.status, func.count(), func.sum(case((Cart.updated_at < cutoff, 1), else_=0)))
        .where(Cart.status.in_(UNCONVERTED)).group_by(Cart.status)
    ):
        counts[status], expired = count, expired + (stale or 0)
    completed = db.session.scalar(select(func.count()).select_from(Cart).where(
        Cart.status == CartStatus.COMPLETED.value, Cart.updated_at >= since))
    reminded = db.session.scalar(select(func.count()).select_from(Cart).where(Cart.reminder_sent_at >= since))
    # Of the carts reminded in the window, those whose customer then ordered
    # (wch.carts.recovery stamps recovered_at): covered by ix_carts_reminder_sent_recovered.
    recovered = db.session.scalar(select(func.count()).select_from(Cart).where(
        Cart.reminder_sent_at >= since, Cart.recovered_at.is_not(None)))
    return {
        CartStatus.ACTIVE.value: counts.get(CartStatus.ACTIVE.value, 0),
        CartStatus.ABANDONED.value: counts.get(CartStatus.ABANDONED.value, 0),
        "completed_7d": completed,
        "expired_awaiting_cleanup": expired,
        "reminders_sent_7d": reminded,
        "recovered_7d": recovered,
        "recovery_rate": recovered / reminded if reminded else None,
        "last_cleanup": last_cleanup(),
    }


def recovery_stats() -> dict[str, Any]:
    """How many carts were reminded and recovered, and the recovered revenue."""
    reminded = db.session.scalar(select(func.count()).select_from(Cart).where(Cart.reminder_sent_at.is_not(None)))
    recovered, revenue = db.session.execute(
        select(func.count(), func.coalesce(func.sum(Cart.recovered_revenue), 0)).where(Cart.recovered_at.is_not(None))
    ).one()
    # Quantized here: the databases sum a Numeric(10, 2) to different scales.
    return {"reminded": reminded, "recovered": recovered,
            "recovered_revenue": str(Decimal(revenue).quantize(Decimal("0.01")))}
