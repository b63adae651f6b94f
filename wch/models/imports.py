"""Imports of the store's catalog and orders over its REST API, with the cursor that lets them resume."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from wch.db import UTCDateTime, db, utcnow


class StoreImport(db.Model):
    """One import of the store's ``products`` or ``orders`` (those modified after ``since``, or all).

    ``next_page`` is the cursor: the page to fetch next, advanced in the same
    transaction as the snapshots of the page before it, so an import stopped
    anywhere resumes exactly where its last page ended. ``status`` is
    ``running``, ``finished`` or ``failed`` (with ``error``).
    """

    __tablename__ = "store_imports"
    __table_args__ = (Index("ix_store_imports_kind_status", "kind", "status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16), default="running")
    next_page: Mapped[int] = mapped_column(Integer, default=1)
    total_pages: Mapped[int | None] = mapped_column(Integer)
    total_items: Mapped[int | None] = mapped_column(Integer)
    imported: Mapped[int] = mapped_column(Integer, default=0)
    skipped: Mapped[int] = mapped_column(Integer, default=0)
    sync_jobs: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    @property
    def percent(self) -> int:
        if self.status == "finished":
            return 100
        if not self.total_pages:
            return 0
        return min(100, int(100 * (self.next_page - 1) / self.total_pages))

    def to_dict(self) -> dict[str, Any]:
        return self.values("id", "kind", "since", "status", "next_page", "total_pages", "total_items", "imported",
                           "skipped", "sync_jobs", "error", "started_at", "updated_at", "finished_at") | {
            "percent": self.percent}
