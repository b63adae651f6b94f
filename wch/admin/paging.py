"""Keyset paging for the panel's long lists: newest first, no OFFSET and no COUNT over millions of rows."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, NamedTuple

from flask import request, url_for
from sqlalchemy import Select, and_, or_
from sqlalchemy.orm import InstrumentedAttribute

from wch.db import db

PAGE_SIZE = 50
# Larger keys cannot be in a 64-bit column (and overflow SQLite's integers).
MAX_KEY = 2**63 - 1


class Page(NamedTuple):
    """Rows, the cursor of the next (older) page or None on the last, and whether this is the first page."""

    rows: list[Any]
    older: str | None
    first: bool

    def older_url(self, filters: dict[str, str]) -> str | None:
        """The link to the next (older) page of the current list with ``filters``, or None on the last page."""
        return url_for(".index", **filters, before=self.older) if self.older else None


def requested_page(query: Select, *, at: InstrumentedAttribute, key: InstrumentedAttribute) -> Page:
    """The page of ``query`` that the request's ``before`` cursor asks for (see :func:`newest_first`)."""
    return newest_first(query, at=at, key=key, before=request.args.get("before", ""))


def newest_first(query: Select, *, at: InstrumentedAttribute, key: InstrumentedAttribute, before: str) -> Page:
    """One page of ``query`` ordered by ``at`` then ``key``, both descending, after the ``before`` cursor."""
    cursor = _parse(before, int if key.type.python_type is int else str)
    if cursor is not None:
        at_value, key_value = cursor
        # The <= bound lets the database walk the index; the OR breaks ties on the same instant.
        query = query.where(at <= at_value, or_(at < at_value, and_(at == at_value, key < key_value)))
    rows = list(db.session.scalars(query.order_by(at.desc(), key.desc()).limit(PAGE_SIZE + 1)))
    if len(rows) <= PAGE_SIZE:
        return Page(rows, None, cursor is None)
    rows = rows[:PAGE_SIZE]
    last = rows[-1]
    return Page(rows, f"{getattr(last, at.key).isoformat()}~{getattr(last, key.key)}", cursor is None)


def _parse(raw: str, key_type: type) -> tuple[datetime, Any] | None:
    """The cursor ``<timestamp>~<key>``, or None (the first page) for anything malformed."""
    at, _, key = raw.partition("~")
    try:
        given = datetime.fromisoformat(at)
        parsed = given.astimezone(UTC)
    except (ValueError, OverflowError):
        return None
    if given.tzinfo is None or not key or len(key) > 100:
        return None
    if key_type is int:
        if not (key.isascii() and key.isdigit()) or int(key) > MAX_KEY:
            return None
        return parsed, int(key)
    return parsed, key
