"""Staff accounts of the admin panel: finding and creating them."""

from wch.staff.accounts import EMAIL, MIN_PASSWORD, AccountError, create_user, find_user

__all__ = ["EMAIL", "MIN_PASSWORD", "AccountError", "create_user", "find_user"]
