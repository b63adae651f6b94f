"""Log-in throttling: failed attempts per account and attempts per client address, and few password checks at once.

The counts live in ``WCH_RATELIMIT_STORAGE_URL``: ``memory://`` (the default)
counts in each web process, so with N gunicorn workers an attacker gets up to
N times the limit; ``redis://`` shares the counts between every process and
machine. A password check (scrypt: tens of milliseconds and ~32 MiB) runs at
most ``WCH_LOGIN_CONCURRENCY`` at a time per process, so a burst of log-ins
cannot take the threads that answer the store's webhooks.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from limits import parse_many
from limits.storage import storage_from_string
from limits.strategies import SlidingWindowCounterRateLimiter

from wch.config import Settings

log = logging.getLogger(__name__)
# How long a log-in waits for a free password check before being told to try again.
CHECK_WAIT_SECONDS = 3.0


class Busy(Exception):
    """Every password check slot stayed taken for :data:`CHECK_WAIT_SECONDS`."""


class LoginThrottle:
    """The log-in's limits, for one app.

    Parameters:
      per_account: failed log-ins allowed per e-mail (``10 per 15 minutes``).
      per_address: log-in attempts allowed per client address.
      storage_url: where the counts live (``memory://``, ``redis://host``).
      concurrency: password checks run at once in this process.
    """

    def __init__(self, *, per_account: str, per_address: str, storage_url: str, concurrency: int) -> None:
        self.per_account = parse_many(per_account)
        self.per_address = parse_many(per_address)
        self.limiter = SlidingWindowCounterRateLimiter(storage_from_string(storage_url))
        self.checks = threading.BoundedSemaphore(concurrency)

    @classmethod
    def from_settings(cls, settings: Settings) -> LoginThrottle:
        return cls(per_account=settings.login_limit_per_account, per_address=settings.login_limit_per_address,
                   storage_url=settings.ratelimit_storage_url, concurrency=settings.login_concurrency)

    def wait_seconds(self, *, email: str, address: str | None) -> int:
        """Seconds before this e-mail may try again from this address (None: any address); 0 when it may now."""
        waits = [self._wait(limit, "address", address) for limit in self.per_address] if address else []
        if email:
            waits += [self._wait(limit, "account", email.lower()) for limit in self.per_account]
        return max(waits, default=0)

    def attempted(self, *, address: str) -> None:
        """Count a log-in attempt from ``address``, whatever its outcome."""
        for limit in self.per_address:
            self._hit(limit, "address", address)

    def failed(self, *, email: str) -> None:
        """Count a failed log-in of ``email`` (known or not: an attacker must not learn which)."""
        for limit in self.per_account:
            self._hit(limit, "account", email.lower())

    @contextmanager
    def password_check(self) -> Iterator[None]:
        """Hold one of the password check slots; :class:`Busy` when none frees up in time."""
        if not self.checks.acquire(timeout=CHECK_WAIT_SECONDS):
            raise Busy
        try:
            yield
        finally:
            self.checks.release()

    def _wait(self, limit, scope: str, key: str) -> int:
        try:
            if self.limiter.test(limit, "login", scope, key):
                return 0
            reset = self.limiter.get_window_stats(limit, "login", scope, key).reset_time
        except Exception:  # noqa: BLE001  (a storage outage must not lock every staff member out)
            log.warning("log-in throttle storage failed; letting the attempt through", exc_info=True)
            return 0
        return max(1, math.ceil(reset - time.time()))

    def _hit(self, limit, scope: str, key: str) -> None:
        try:
            self.limiter.hit(limit, "login", scope, key)
        except Exception:  # noqa: BLE001
            log.warning("log-in throttle storage failed; the attempt was not counted", exc_info=True)
