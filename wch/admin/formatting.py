"""How the panel shows things: times in the store's zone (``WCH_TIMEZONE``), ages, short error lines.

Times are stored in UTC; staff read and enter them in the store's zone. A
time typed without an offset (what a ``datetime-local`` input sends) is
read in the store's zone.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from wch.monitoring.humanize import duration


class StoreTime:
    """The store's time zone for the panel.

    Parameters:
      zone: an IANA zone name (``Europe/Berlin``); ``UTC`` by default.
    """

    def __init__(self, zone: str = "UTC") -> None:
        self.name = zone
        self.zone = ZoneInfo(zone)

    def when(self, value: datetime | None) -> str:
        if value is None:
            return "—"
        local = value.astimezone(self.zone)
        return local.strftime("%Y-%m-%d %H:%M:%S ") + (local.tzname() or self.name)

    def iso_when(self, value: str | None) -> str:
        return self.when(datetime.fromisoformat(value)) if value else "—"

    def hour_label(self, value: datetime) -> str:
        return value.astimezone(self.zone).strftime("%H:%M")

    def parse(self, raw: str) -> datetime:
        """``raw`` (``2031-05-01T12:00``, or with an offset) as a UTC time; ValueError saying what is wrong."""
        try:
            given = datetime.fromisoformat(raw.strip())
            local = given if given.tzinfo is not None else given.replace(tzinfo=self.zone)
            return local.astimezone(UTC)
        except (ValueError, OverflowError):
            raise ValueError(f"{raw!r} is not a date and time (YYYY-MM-DD HH:MM, {self.name})") from None


def ago(value: datetime | None, now: datetime) -> str:
    if value is None:
        return "—"
    seconds = (now - value).total_seconds()
    return f"in {duration(-seconds)}" if seconds < 0 else f"{duration(seconds)} ago"


def short(text: str | None, length: int = 120) -> str:
    """The last line of ``text`` (an error's message, after its traceback), cut to ``length``."""
    if not text or not text.strip():
        return ""
    line = text.strip().splitlines()[-1]
    return line if len(line) <= length else line[: length - 1] + "…"
