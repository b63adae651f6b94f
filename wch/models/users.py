"""Staff accounts of the admin panel."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column
from werkzeug.security import check_password_hash, generate_password_hash

from wch.db import UTCDateTime, db, utcnow


class Role(enum.StrEnum):
    ADMIN = "admin"  # can act: retry, cancel, run cleanup, edit campaigns and settings
    VIEWER = "viewer"  # can only look


class User(db.Model):
    """A staff member who logs in to ``/admin/``; the password is kept only as a salted hash."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16), default=Role.VIEWER.value)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Part of every session's user id: bumping it (disable, password or role
    # change, log-out) ends every session issued before, at its next request.
    session_version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")

    # Flask-Login's user protocol.
    is_anonymous = False

    @property
    def is_active(self) -> bool:
        return self.disabled_at is None

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN.value

    def get_id(self) -> str:
        return f"{self.id}.{self.session_version}"

    def end_sessions(self) -> None:
        """Invalidate every session of this user, wherever it is."""
        self.session_version = (self.session_version or 1) + 1

    def set_password(self, password: str) -> None:
        self.password_hash = generate_password_hash(password)

    def to_dict(self) -> dict[str, Any]:
        return self.values("id", "email", "role", "created_at", "last_login_at", "disabled_at")

    def check_password(self, password: str) -> bool:
        return check_password_hash(self.password_hash, password)
