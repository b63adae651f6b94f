"""The abandoned-cart reminder settings staff edit in the panel: enabled, delay, message, template, cart link."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from wch.db import db, utcnow
from wch.messaging.placeholders import PlaceholderError, check
from wch.models import ReminderSettings
from wch.models.reminders import DEFAULT_MESSAGE

PLACEHOLDERS = ("name", "items", "total", "cart_link")
MIN_DELAY_HOURS, MAX_DELAY_HOURS = 1, 720


class ReminderSettingsError(ValueError):
    """Reminder settings that were refused; ``errors`` maps each bad field to why. Nothing was saved."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{field}: {message}" for field, message in errors.items()))
        self.errors = errors


def get_settings() -> ReminderSettings:
    """The saved reminder settings, or the defaults (unsaved) until staff first save some."""
    return db.session.get(ReminderSettings, 1) or _defaults()


def _defaults() -> ReminderSettings:
    return ReminderSettings(id=1, enabled=False, delay_hours=24, message=DEFAULT_MESSAGE, template_name=None,
                            template_language="en_US", cart_url=None, updated_at=utcnow())


def check_delay(delay_hours: int, *, cart_expiry_hours: int) -> None:
    """Refuse a reminder delay the cleanup would beat: carts idle ``cart_expiry_hours`` are deleted unreminded."""
    if delay_hours >= cart_expiry_hours:
        raise ReminderSettingsError({"delay_hours": (
            f"must be shorter than the cart expiry (WCH_CART_EXPIRY_HOURS, {cart_expiry_hours} h), got "
            f"{delay_hours} h: idle carts are deleted before they would be reminded")})


def validate_settings(data: Mapping[str, Any], *, cart_expiry_hours: int) -> dict[str, Any]:
    """Check edited reminder settings (the panel's form, the CLI); returns the cleaned values.

    Fields: ``enabled`` (bool), ``delay_hours`` (1–720, and shorter than
    ``cart_expiry_hours``), ``message`` (only the placeholders {name} {items}
    {total} {cart_link}), ``template_name`` (the approved template used
    outside the 24-hour window; required when enabled), ``template_language``
    (e.g. en_US), ``cart_url`` (may use {cart_id}). Missing fields keep their
    current value. Raises :class:`ReminderSettingsError`.
    """
    current = get_settings().to_dict()
    values = {**current, **{k: v for k, v in data.items() if k in current}}
    errors: dict[str, str] = {}

    enabled = values["enabled"]
    if isinstance(enabled, str):
        enabled = enabled.strip().lower() in ("1", "true", "yes", "on", "y")
    values["enabled"] = bool(enabled)

    try:
        delay = int(str(values["delay_hours"]).strip())
    except (TypeError, ValueError):
        errors["delay_hours"] = f"{values['delay_hours']!r} is not a whole number of hours"
    else:
        if not MIN_DELAY_HOURS <= delay <= MAX_DELAY_HOURS:
            errors["delay_hours"] = f"must be between {MIN_DELAY_HOURS} and {MAX_DELAY_HOURS} hours, got {delay}"
        else:
            try:
                check_delay(delay, cart_expiry_hours=cart_expiry_hours)
            except ReminderSettingsError as error:
                errors |= error.errors
        values["delay_hours"] = delay

    message = str(values["message"] or "").strip()
    if not message:
        errors["message"] = "the message cannot be empty"
    elif problem := _placeholder_problem(message, PLACEHOLDERS):
        errors["message"] = problem
    values["message"] = message

    values["template_name"] = str(values["template_name"] or "").strip() or None
    values["template_language"] = str(values["template_language"] or "").strip() or "en_US"
    if values["enabled"] and not values["template_name"]:
        errors["template_name"] = "an approved template is needed for customers outside the 24-hour window"

    cart_url = str(values["cart_url"] or "").strip() or None
    if cart_url is not None:
        if not cart_url.startswith(("https://", "http://")):
            errors["cart_url"] = "must be a web address starting with https://"
        elif problem := _placeholder_problem(cart_url, ("cart_id",)):
            errors["cart_url"] = problem
    values["cart_url"] = cart_url

    if errors:
        raise ReminderSettingsError(errors)
    return values


def save_settings(data: Mapping[str, Any], *, cart_expiry_hours: int) -> ReminderSettings:
    """Validate and store reminder settings (see :func:`validate_settings`). The caller commits."""
    values = validate_settings(data, cart_expiry_hours=cart_expiry_hours)
    row = db.session.get(ReminderSettings, 1)
    if row is None:
        row = _defaults()
        db.session.add(row)
    for name, value in values.items():
        setattr(row, name, value)
    return row


def _placeholder_problem(text: str, allowed: tuple[str, ...]) -> str | None:
    try:
        check(text, allowed)
    except PlaceholderError as error:
        return str(error)
    return None
