"""Staff accounts: found by e-mail whatever its case, created with a hashed password."""

from __future__ import annotations

import re

from sqlalchemy import func, select

from wch.db import db, utcnow
from wch.models import Role, User

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MIN_PASSWORD = 10


class AccountError(ValueError):
    """A refused account change; nothing was written."""


def find_user(email: str) -> User | None:
    return db.session.scalars(select(User).where(func.lower(User.email) == email.strip().lower())).first()


def create_user(email: str, password: str, *, role: Role | str) -> User:
    """Add a staff account. The caller commits."""
    email = email.strip()
    if not EMAIL.match(email):
        raise AccountError(f"{email!r} is not an e-mail address")
    if find_user(email) is not None:
        raise AccountError(f"a user with e-mail {email} already exists")
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"the password must be at least {MIN_PASSWORD} characters long")
    user = User(email=email, role=str(role), created_at=utcnow())
    user.set_password(password)
    db.session.add(user)
    return user
