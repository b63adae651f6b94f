"""Every setting wch reads, from the environment, in one place.

A bad value stops start-up with a :class:`ConfigError` naming the variable, so
operators see ``WCH_RETRY_DELAYS: 'x' is not a number`` rather than a traceback
from deep inside a worker.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping
from urllib.parse import urlsplit

DEFAULT_BROKER_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
BROKER_SCHEMES = {"amqp", "amqps", "stub"}
DATABASE_SCHEMES = {"sqlite", "postgresql", "postgresql+psycopg", "postgres"}


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    """wch's settings; build them with :meth:`from_env`."""

    database_url: str
    broker_url: str
    secret_key: str | None
    retry_delays: tuple[float, ...] = (60, 300, 900)
    cart_expiry_hours: int = 72
    cleanup_batch_size: int = 1000
    result_ttl: int = 3600
    ledger_retention_days: int = 14
    max_broker_delay: int = 600
    worker_heartbeat: int = 10

    @property
    def broker_is_stub(self) -> bool:
        return self.broker_url.startswith("stub:")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, instance_path: str | Path = "instance") -> Settings:
        env = os.environ if environ is None else environ
        default_db = "sqlite:///" + str(Path(instance_path).resolve() / "wch.sqlite3")
        return cls(
            database_url=_url(env, "WCH_DATABASE_URL", default_db, DATABASE_SCHEMES),
            broker_url=_url(env, "WCH_BROKER_URL", DEFAULT_BROKER_URL, BROKER_SCHEMES),
            secret_key=env.get("WCH_SECRET_KEY") or None,
            retry_delays=_delays(env, "WCH_RETRY_DELAYS", "60,300,900"),
            cart_expiry_hours=_positive_int(env, "WCH_CART_EXPIRY_HOURS", 72),
            cleanup_batch_size=_positive_int(env, "WCH_CLEANUP_BATCH_SIZE", 1000),
            result_ttl=_positive_int(env, "WCH_RESULT_TTL", 3600),
            ledger_retention_days=_positive_int(env, "WCH_LEDGER_RETENTION_DAYS", 14),
            max_broker_delay=_positive_int(env, "WCH_MAX_BROKER_DELAY", 600),
            worker_heartbeat=_positive_int(env, "WCH_WORKER_HEARTBEAT", 10),
        )


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}: {raw!r} is not a whole number") from None
    if value <= 0:
        raise ConfigError(f"{name}: must be greater than 0, got {value}")
    return value


def _delays(env: Mapping[str, str], name: str, default: str) -> tuple[float, ...]:
    raw = env.get(name) or default
    delays = []
    for part in raw.split(","):
        part = part.strip()
        try:
            seconds = float(part)
        except ValueError:
            raise ConfigError(f"{name}: {part!r} is not a number of seconds (expected e.g. 60,300,900)") from None
        if seconds < 0:
            raise ConfigError(f"{name}: delays cannot be negative, got {part}")
        delays.append(seconds)
    return tuple(delays)


def _url(env: Mapping[str, str], name: str, default: str, schemes: set[str]) -> str:
    raw = env.get(name) or default
    scheme = urlsplit(raw).scheme
    if scheme not in schemes:
        known = ", ".join(sorted(schemes))
        raise ConfigError(f"{name}: unknown scheme {scheme or '(none)'!r} in the URL (expected one of {known})")
    if scheme == "postgres":
        raw = "postgresql" + raw[len("postgres"):]
    if raw.startswith("postgresql://"):
        raw = "postgresql+psycopg://" + raw[len("postgresql://"):]
    return raw


def dev_secret_key(instance_path: str | Path) -> str:
    """A random key kept in the instance folder, so sessions survive restarts on one machine."""
    path = Path(instance_path) / "secret_key"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        key = secrets.token_hex(32)
        path.write_text(key)
        path.chmod(0o600)
        return key
