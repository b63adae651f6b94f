"""Staff accounts: created with a hashed password, then disabled, enabled, deleted, given a role or a new password.

Every change that should end a staff member's sessions (disable, a new
password, a new role) bumps the account's session version; the panel's user
loader refuses a session carrying an older one. The last active admin cannot
be disabled, deleted or made a viewer: someone must be able to manage the
others. Refusals raise :class:`AccountError` and change nothing; the caller
commits.
"""

from __future__ import annotations

import re

from sqlalchemy import func, select

from wch.db import db, utcnow
from wch.models import Role, User

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MIN_PASSWORD = 10
MAX_PASSWORD = 1024


class AccountError(ValueError):
    """A refused account change; nothing was written."""


def find_user(email: str) -> User | None:
    return db.session.scalars(select(User).where(func.lower(User.email) == email.strip().lower())).first()


def get_user(email: str) -> User:
    user = find_user(email)
    if user is None:
        raise AccountError(f"no user with e-mail {email.strip()}")
    return user


def create_user(email: str, password: str, *, role: Role | str) -> User:
    """Add a staff account. The caller commits."""
    email = email.strip()
    if not EMAIL.match(email) or len(email) > 254:
        raise AccountError(f"{email!r} is not an e-mail address")
    if find_user(email) is not None:
        raise AccountError(f"a user with e-mail {email} already exists")
    check_password(password)
    user = User(email=email, role=_role(role), created_at=utcnow(), session_version=1)
    user.set_password(password)
    db.session.add(user)
    return user


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"the password must be at least {MIN_PASSWORD} characters long")
    if len(password) > MAX_PASSWORD:
        raise AccountError(f"the password must be at most {MAX_PASSWORD} characters long")


def disable_user(email: str) -> User:
    """Refuse the account's log-ins and end its sessions at their next request. The caller commits."""
    user = get_user(email)
    if user.disabled_at is not None:
        raise AccountError(f"{user.email} is already disabled")
    _keep_an_admin(user)
    user.disabled_at = utcnow()
    user.end_sessions()
    return user


def enable_user(email: str) -> User:
    """Let a disabled account log in again (with its password as it was). The caller commits."""
    user = get_user(email)
    if user.disabled_at is None:
        raise AccountError(f"{user.email} is not disabled")
    user.disabled_at = None
    return user


def delete_user(email: str) -> str:
    """Remove the account; its audit entries stay, naming it by e-mail. Returns the e-mail. The caller commits."""
    user = get_user(email)
    _keep_an_admin(user)
    db.session.delete(user)
    return user.email


def set_role(email: str, role: Role | str) -> User:
    """Give the account another role; its sessions end so the new rights apply at once. The caller commits."""
    user = get_user(email)
    role = _role(role)
    if user.role == role:
        raise AccountError(f"{user.email} is already {role}")
    if role != Role.ADMIN.value:
        _keep_an_admin(user)
    user.role = role
    user.end_sessions()
    return user


def reset_password(email: str, password: str) -> User:
    """Set a new password and end the account's sessions. The caller commits."""
    user = get_user(email)
    check_password(password)
    user.set_password(password)
    user.end_sessions()
    return user


def list_users() -> list[User]:
    return list(db.session.scalars(select(User).order_by(User.email)))


def _role(role: Role | str) -> str:
    try:
        return Role(str(role)).value
    except ValueError:
        raise AccountError(f"unknown role {role!r} (known: {', '.join(r.value for r in Role)})") from None


def _keep_an_admin(user: User) -> None:
    if not user.is_admin or user.disabled_at is not None:
        return
    others = db.session.scalar(
        select(func.count()).select_from(User)
        .where(User.role == Role.ADMIN.value, User.disabled_at.is_(None), User.id != user.id)
    )
    if not others:
        raise AccountError(f"{user.email} is the last active admin; make another admin first")
