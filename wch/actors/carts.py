"""Cart jobs (queue ``carts``)."""

from __future__ import annotations

from typing import Any

import dramatiq
from flask import current_app

from wch.carts import cleanup_expired_carts


@dramatiq.actor(queue_name="carts", time_limit=60 * 60 * 1000)
def cleanup_carts(trigger: str = "schedule") -> dict[str, Any]:
    """Delete carts that never converted and have been idle past ``WCH_CART_EXPIRY_HOURS``."""
    settings = current_app.extensions["wch"].settings
    run = cleanup_expired_carts(
        expiry_hours=settings.cart_expiry_hours,
        batch_size=settings.cleanup_batch_size,
        trigger=trigger,
    )
    return run.to_dict()
