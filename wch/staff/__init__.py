"""Staff of the admin panel: their accounts and the audit trail of what they change."""

from wch.staff import accounts, audit
from wch.staff.accounts import (
    EMAIL,
    MIN_PASSWORD,
    AccountError,
    create_user,
    delete_user,
    disable_user,
    enable_user,
    find_user,
    list_users,
    reset_password,
    set_role,
)

__all__ = [
    "EMAIL",
    "accounts",
    "audit",
    "MIN_PASSWORD",
    "AccountError",
    "create_user",
    "delete_user",
    "disable_user",
    "enable_user",
    "find_user",
    "list_users",
    "reset_password",
    "set_role",
]
