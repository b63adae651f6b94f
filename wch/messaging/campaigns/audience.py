"""Who a campaign goes to: every opted-in contact, or the phones of a CSV file."""

from __future__ import annotations

import csv
import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import IO, Any

from sqlalchemy import insert, literal, select

from wch.db import db
from wch.messaging.campaigns.errors import CampaignError
from wch.messaging.contacts import InvalidPhone, normalize_phone
from wch.models import Contact, Recipient, RecipientStatus

INSERT_CHUNK = 1000
MAX_BAD_ROWS_REPORTED = 100
NAME_LENGTH = 200  # Recipient.name
SHOWN_VALUE_LENGTH = 100


@dataclass
class BadRow:
    """A CSV row that was left out, and why (``line`` counts from 1, the header included)."""

    line: int
    value: str
    reason: str


@dataclass
class LeftOut:
    """The CSV rows left out of an audience: the first 100 in ``rows``, all of them in ``count``."""

    rows: list[BadRow] = field(default_factory=list)
    count: int = 0

    def add(self, line: int, value: str, reason: str) -> None:
        self.count += 1
        if len(self.rows) < MAX_BAD_ROWS_REPORTED:
            self.rows.append(BadRow(line, value[:SHOWN_VALUE_LENGTH], reason))


def add_all_contacts(campaign_id: int) -> None:
    """Make every contact who has not opted out a recipient. The caller commits."""
    opted_in = select(
        literal(campaign_id), Contact.phone, Contact.name, literal(RecipientStatus.PENDING.value), literal(0)
    ).where(Contact.opted_out_at.is_(None))
    db.session.execute(
        insert(Recipient).from_select(["campaign_id", "phone", "name", "status", "attempts"], opted_in)
    )


def add_csv(campaign_id: int, file: IO[str], *, on_chunk: Callable[[int], None] | None = None) -> LeftOut:
    """Make the phones of ``file`` recipients; invalid and repeated ones are left out. The caller commits.

    The CSV has a ``phone`` column and optionally ``name`` (or, with no
    header, phone then name); it is read as a stream, :data:`INSERT_CHUNK`
    rows at a time, and ``on_chunk`` is called with the number added so far
    after each chunk (to commit it and report progress). A file that is not
    CSV text (a NUL byte, say) raises :class:`CampaignError`.
    """
    left_out = LeftOut()
    seen: set[str] = set()
    chunk: list[dict[str, Any]] = []
    added = 0
    for line, raw_phone, name in _csv_rows(file):
        try:
            phone = normalize_phone(raw_phone)
        except InvalidPhone as error:
            left_out.add(line, raw_phone, str(error))
            continue
        if phone in seen:
            left_out.add(line, raw_phone, f"{phone} appears earlier in the file")
            continue
        seen.add(phone)
        chunk.append({"campaign_id": campaign_id, "phone": phone, "name": name[:NAME_LENGTH] or None,
                      "status": RecipientStatus.PENDING.value, "attempts": 0})
        if len(chunk) >= INSERT_CHUNK:
            added += _insert(chunk, on_chunk, added)
            chunk = []
    if chunk:
        _insert(chunk, on_chunk, added)
    return left_out


def _insert(chunk: list[dict[str, Any]], on_chunk: Callable[[int], None] | None, before: int) -> int:
    db.session.execute(insert(Recipient), chunk)
    if on_chunk is not None:
        on_chunk(before + len(chunk))
    return len(chunk)


def _csv_rows(file: IO[str]) -> Iterable[tuple[int, str, str]]:
    reader = csv.reader(file)
    try:
        yield from _rows(reader)
    except csv.Error as error:
        raise CampaignError(f"the file is not CSV text (line {reader.line_num}: {error})") from None


def _rows(reader) -> Iterable[tuple[int, str, str]]:
    first = next(reader, None)
    if first is None:
        return
    header = [cell.strip().lower() for cell in first]
    if "phone" in header and not any("\x00" in cell for cell in first):
        phone_at, name_at, line = header.index("phone"), (header.index("name") if "name" in header else None), 1
    else:
        phone_at, name_at, line = 0, 1, 0
        reader = itertools.chain([first], reader)
    for row in reader:
        line += 1
        if any("\x00" in cell for cell in row):
            # Python's csv reads NUL bytes; no database text column may hold one.
            raise csv.Error("a NUL byte: is this a spreadsheet rather than CSV?")
        if not any(cell.strip() for cell in row):
            continue
        phone = row[phone_at].strip() if phone_at < len(row) else ""
        name = row[name_at].strip() if name_at is not None and name_at < len(row) else ""
        yield line, phone, name
