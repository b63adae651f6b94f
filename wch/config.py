"""Every setting wch reads, from the environment, in one place.

A bad value stops start-up with a :class:`ConfigError` naming the variable, so
operators see ``WCH_RETRY_DELAYS: 'x' is not a number`` rather than a traceback
from deep inside a worker.
"""

from __future__ import annotations

import math
import os
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from limits import parse_many

DEFAULT_BROKER_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
BROKER_SCHEMES = {"amqp", "amqps", "stub"}
DATABASE_SCHEMES = {"sqlite", "postgresql", "postgresql+psycopg", "postgres"}
DEFAULT_WHATSAPP_API_URL = "https://graph.facebook.com/v24.0"
RATELIMIT_STORAGE_SCHEMES = {"memory", "redis", "rediss", "redis+unix", "memcached"}
# Paid and fulfilment statuses only: a guest checkout can create unpaid orders (on-hold, pending, failed,
# cancelled) for any phone number, which would make the store's number message strangers.
DEFAULT_ORDER_NOTIFY_STATUSES = ("processing", "completed", "refunded")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMATS = ("text", "json")
WHATSAPP_MODES = ("live", "sandbox")
SECRET_KEY_FILE = "secret_key"
SECRET_KEY_WAIT = 5.0  # seconds a process waits for another one to finish writing the key file


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
    worker_lost_after: int = 60
    rescue_after: int = 600
    db_pool_size: int | None = None
    db_pool_timeout: float = 3.0
    sqlite_busy_timeout: float = 30.0
    session_cookie_secure: bool = False
    rabbitmq_management_url: str | None = None
    pending_warn_seconds: int = 300
    panel_retry_cap: int = 500
    whatsapp_api_url: str = DEFAULT_WHATSAPP_API_URL
    whatsapp_access_token: str | None = None
    whatsapp_phone_number_id: str | None = None
    whatsapp_catalog_id: str | None = None
    whatsapp_connect_timeout: float = 3.05
    whatsapp_read_timeout: float = 10.0
    woocommerce_webhook_secret: str | None = None
    store_currency: str | None = None
    order_template: str | None = None
    order_template_language: str = "en_US"
    order_notify_statuses: tuple[str, ...] = DEFAULT_ORDER_NOTIFY_STATUSES
    catalog_batch_size: int = 1000
    webhook_dedupe_days: int = 7
    catalog_check_delay: float = 60.0
    whatsapp_app_secret: str | None = None
    whatsapp_verify_token: str | None = None
    broadcast_batch_size: int = 50
    broadcast_batch_interval: float = 1.0
    send_rate_limit: int = 50
    broadcast_retry_delays: tuple[float, ...] = (5, 30, 120, 300)
    broadcast_stale_claim: int = 600
    reminder_scan_minutes: int = 15
    recovery_window_hours: int = 168
    messaging_limit: int | None = 250
    uncertain_after: float = 900.0
    order_messages_per_day: int = 5
    timezone: str = "UTC"
    session_idle_minutes: int = 120
    login_limit_per_account: str = "10 per 15 minutes"
    login_limit_per_address: str = "30 per 15 minutes"
    ratelimit_storage_url: str = "memory://"
    login_concurrency: int = 2
    trusted_proxies: int = 0
    max_upload_mb: int = 16
    rabbitmq_management_allow_http: bool = False
    broker_stats_ttl: float = 5.0
    log_level: str = "INFO"
    log_format: str = "text"
    whatsapp_mode: str = "live"
    woocommerce_url: str | None = None
    woocommerce_consumer_key: str | None = None
    woocommerce_consumer_secret: str | None = None
    metrics_host: str = "0.0.0.0"
    metrics_port: int = 9191

    @property
    def whatsapp_sandbox(self) -> bool:
        return self.whatsapp_mode == "sandbox"

    @property
    def production_like(self) -> bool:
        """Settings that only a deployment uses: a server database or HTTPS-only cookies."""
        return not self.database_url.startswith("sqlite") or self.session_cookie_secure

    @property
    def broker_is_stub(self) -> bool:
        return self.broker_url.startswith("stub:")

    def secrets(self) -> tuple[str, ...]:
        """Configured values that must never be logged, stored or shown."""
        values = (self.secret_key, self.whatsapp_access_token, self.whatsapp_app_secret,
                  self.whatsapp_verify_token, self.woocommerce_webhook_secret, self.woocommerce_consumer_key,
                  self.woocommerce_consumer_secret, urlsplit(self.broker_url).password)
        return tuple(value for value in values if value)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, instance_path: str | Path = "instance") -> Settings:
        env = os.environ if environ is None else environ
        default_db = "sqlite:///" + str(Path(instance_path).resolve() / "wch.sqlite3")
        heartbeat = _positive_int(env, "WCH_WORKER_HEARTBEAT", 10)
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
            worker_heartbeat=heartbeat,
            worker_lost_after=_worker_lost_after(env, heartbeat),
            rescue_after=_positive_int(env, "WCH_RESCUE_AFTER", 600),
            db_pool_size=_positive_int(env, "WCH_DB_POOL_SIZE", 0) or None,
            db_pool_timeout=_positive_seconds(env, "WCH_DB_POOL_TIMEOUT", 3.0),
            sqlite_busy_timeout=_positive_seconds(env, "WCH_SQLITE_BUSY_TIMEOUT", 30.0),
            session_cookie_secure=_flag(env, "WCH_SESSION_COOKIE_SECURE", False),
            rabbitmq_management_url=_optional_url(env, "WCH_RABBITMQ_MANAGEMENT_URL", {"http", "https"}),
            pending_warn_seconds=_positive_int(env, "WCH_PENDING_WARN_SECONDS", 300),
            panel_retry_cap=_positive_int(env, "WCH_PANEL_RETRY_CAP", 500),
            whatsapp_api_url=_url(env, "WHATSAPP_API_URL", DEFAULT_WHATSAPP_API_URL, {"http", "https"}),
            whatsapp_access_token=_optional_text(env, "WHATSAPP_ACCESS_TOKEN"),
            whatsapp_phone_number_id=_optional_text(env, "WHATSAPP_PHONE_NUMBER_ID"),
            whatsapp_catalog_id=_optional_text(env, "WHATSAPP_CATALOG_ID"),
            whatsapp_connect_timeout=_positive_seconds(env, "WHATSAPP_CONNECT_TIMEOUT", 3.05),
            whatsapp_read_timeout=_positive_seconds(env, "WHATSAPP_READ_TIMEOUT", 10.0),
            woocommerce_webhook_secret=_optional_text(env, "WOOCOMMERCE_WEBHOOK_SECRET"),
            store_currency=_currency_code(env, "WCH_STORE_CURRENCY"),
            order_template=_optional_text(env, "WCH_ORDER_TEMPLATE"),
            order_template_language=_optional_text(env, "WCH_ORDER_TEMPLATE_LANGUAGE") or "en_US",
            order_notify_statuses=_word_list(env, "WCH_ORDER_NOTIFY_STATUSES", DEFAULT_ORDER_NOTIFY_STATUSES),
            catalog_batch_size=_at_most(env, "WCH_CATALOG_BATCH_SIZE", 1000, 5000),
            webhook_dedupe_days=_positive_int(env, "WCH_WEBHOOK_DEDUPE_DAYS", 7),
            catalog_check_delay=_seconds(env, "WCH_CATALOG_CHECK_DELAY", 60.0),
            whatsapp_app_secret=_optional_text(env, "WHATSAPP_APP_SECRET"),
            whatsapp_verify_token=_optional_text(env, "WHATSAPP_VERIFY_TOKEN"),
            broadcast_batch_size=_positive_int(env, "WCH_BROADCAST_BATCH_SIZE", 50),
            broadcast_batch_interval=_positive_seconds(env, "WCH_BROADCAST_BATCH_INTERVAL", 1.0),
            send_rate_limit=_positive_int(env, "WCH_SEND_RATE_LIMIT", 50),
            broadcast_retry_delays=_delays(env, "WCH_BROADCAST_RETRY_DELAYS", "5,30,120,300"),
            broadcast_stale_claim=_positive_int(env, "WCH_BROADCAST_STALE_CLAIM", 600),
            reminder_scan_minutes=_positive_int(env, "WCH_REMINDER_SCAN_MINUTES", 15),
            recovery_window_hours=_positive_int(env, "WCH_RECOVERY_WINDOW_HOURS", 168),
            messaging_limit=_messaging_limit(env, "WCH_MESSAGING_LIMIT", 250),
            uncertain_after=_positive_seconds(env, "WCH_UNCERTAIN_AFTER", 900.0),
            order_messages_per_day=_positive_int(env, "WCH_ORDER_MESSAGES_PER_DAY", 5),
            timezone=_timezone(env, "WCH_TIMEZONE"),
            session_idle_minutes=_positive_int(env, "WCH_SESSION_IDLE_MINUTES", 120),
            login_limit_per_account=_rate_limit(env, "WCH_LOGIN_LIMIT_PER_ACCOUNT", "10 per 15 minutes"),
            login_limit_per_address=_rate_limit(env, "WCH_LOGIN_LIMIT_PER_ADDRESS", "30 per 15 minutes"),
            ratelimit_storage_url=_url(env, "WCH_RATELIMIT_STORAGE_URL", "memory://", RATELIMIT_STORAGE_SCHEMES),
            login_concurrency=_positive_int(env, "WCH_LOGIN_CONCURRENCY", 2),
            trusted_proxies=_whole_number(env, "WCH_TRUSTED_PROXIES", 0),
            max_upload_mb=_positive_int(env, "WCH_MAX_UPLOAD_MB", 16),
            rabbitmq_management_allow_http=_flag(env, "WCH_RABBITMQ_MANAGEMENT_ALLOW_HTTP", False),
            broker_stats_ttl=_seconds(env, "WCH_BROKER_STATS_TTL", 5.0),
            log_level=_choice(env, "WCH_LOG_LEVEL", LOG_LEVELS, "INFO"),
            log_format=_choice(env, "WCH_LOG_FORMAT", LOG_FORMATS, "text"),
            whatsapp_mode=_choice(env, "WHATSAPP_MODE", WHATSAPP_MODES, "live"),
            woocommerce_url=_optional_url(env, "WOOCOMMERCE_URL", {"http", "https"}),
            woocommerce_consumer_key=_optional_text(env, "WOOCOMMERCE_CONSUMER_KEY"),
            woocommerce_consumer_secret=_optional_text(env, "WOOCOMMERCE_CONSUMER_SECRET"),
            metrics_host=_optional_text(env, "WCH_METRICS_HOST") or "0.0.0.0",
            metrics_port=_port(env, "WCH_METRICS_PORT", 9191),
        )


def parse_messaging_limit(raw: str) -> int | None:
    """Customers per 24 hours for ``raw`` (``2000``, ``2K``, Meta's ``TIER_10K``, ``unlimited``); None: unlimited.

    Raises :class:`ValueError` for anything else.
    """
    text = str(raw).strip().upper().replace(",", "").removeprefix("TIER_")
    if text == "UNLIMITED":
        return None
    digits, multiplier = (text[:-1], 1000) if text.endswith("K") else (text, 1)
    if not digits.isdigit() or int(digits) <= 0:
        raise ValueError(f"{raw!r} is not a messaging limit (expected 250, 2000, 10000, 100000 or unlimited)")
    return int(digits) * multiplier


def _messaging_limit(env: Mapping[str, str], name: str, default: int | None) -> int | None:
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    try:
        return parse_messaging_limit(raw)
    except ValueError as error:
        raise ConfigError(f"{name}: {error}") from None


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


def _worker_lost_after(env: Mapping[str, str], heartbeat: int) -> int:
    value = _positive_int(env, "WCH_WORKER_LOST_AFTER", max(60, 3 * heartbeat))
    if value < 2 * heartbeat:
        raise ConfigError(f"WCH_WORKER_LOST_AFTER: must be at least two heartbeats "
                          f"(2 x WCH_WORKER_HEARTBEAT = {2 * heartbeat} s), got {value}")
    return value


def _whole_number(env: Mapping[str, str], name: str, default: int) -> int:
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    if not (raw.isascii() and raw.isdigit()):
        raise ConfigError(f"{name}: {raw!r} is not a whole number, 0 or more")
    return int(raw)


def _timezone(env: Mapping[str, str], name: str) -> str:
    raw = (env.get(name) or "").strip() or "UTC"
    try:
        ZoneInfo(raw)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"{name}: {raw!r} is not a time zone (expected e.g. Europe/Berlin)") from None
    return raw


def _rate_limit(env: Mapping[str, str], name: str, default: str) -> str:
    raw = (env.get(name) or "").strip() or default
    try:
        parse_many(raw)
    except ValueError:
        raise ConfigError(f"{name}: {raw!r} is not a rate (expected e.g. 10 per 15 minutes)") from None
    return raw


def _delays(env: Mapping[str, str], name: str, default: str) -> tuple[float, ...]:
    raw = env.get(name) or default
    return tuple(_parse_seconds(name, part.strip(), hint=" (expected e.g. 60,300,900)") for part in raw.split(","))


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = (env.get(name) or "").strip()
    return _parse_seconds(name, raw) if raw else default


def _parse_seconds(name: str, raw: str, *, hint: str = "") -> float:
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ConfigError(f"{name}: {raw!r} is not a number of seconds{hint}")
    if value < 0:
        raise ConfigError(f"{name}: cannot be negative, got {raw}")
    return value


def _optional_text(env: Mapping[str, str], name: str) -> str | None:
    return (env.get(name) or "").strip() or None


def _positive_seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}: {raw!r} is not a number of seconds") from None
    if not value > 0:
        raise ConfigError(f"{name}: must be greater than 0, got {raw}")
    return value


def _currency_code(env: Mapping[str, str], name: str) -> str | None:
    raw = (env.get(name) or "").strip()
    if not raw:
        return None
    if len(raw) != 3 or not raw.isalpha() or not raw.isascii():
        raise ConfigError(f"{name}: {raw!r} is not an ISO 4217 currency code (expected e.g. USD, EUR)")
    return raw.upper()


def _at_most(env: Mapping[str, str], name: str, default: int, highest: int) -> int:
    value = _positive_int(env, name, default)
    if value > highest:
        raise ConfigError(f"{name}: at most {highest}, got {value}")
    return value


def _word_list(env: Mapping[str, str], name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    raw = env.get(name)
    if raw is None:
        return default
    return tuple(word.strip().lower() for word in raw.split(",") if word.strip())


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...], default: str) -> str:
    """One of ``choices``, whatever its case."""
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    value = next((choice for choice in choices if choice.lower() == raw.lower()), None)
    if value is None:
        raise ConfigError(f"{name}: {raw!r} is not one of {', '.join(choices)}")
    return value


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) > 65535:
        raise ConfigError(f"{name}: {raw!r} is not a port number (0 to 65535; 0 turns it off)")
    return int(raw)


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name}: {raw!r} is not a yes/no value (expected true or false)")


def _optional_url(env: Mapping[str, str], name: str, schemes: set[str]) -> str | None:
    return _url(env, name, "", schemes) if (env.get(name) or "").strip() else None


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


def instance_secret_key(instance_path: str | Path, *, wait: float = SECRET_KEY_WAIT) -> str:
    """A random key kept in the instance folder, so sessions survive restarts on one machine.

    The first process to start creates the file, readable by its owner only
    from the first byte; processes starting at the same moment find it there
    and wait until it is complete, so they all sign with the same key.
    """
    path = Path(instance_path) / SECRET_KEY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_key(path, wait)
    key = secrets.token_hex(32)
    with os.fdopen(fd, "w") as file:
        file.write(key + "\n")
    return key


def _read_key(path: Path, wait: float) -> str:
    deadline = time.monotonic() + wait
    while True:
        key = path.read_text().strip()
        # Another process created the file and has not written the key yet.
        if len(key) >= 32:
            return key
        if time.monotonic() > deadline:
            raise ConfigError(f"WCH_SECRET_KEY: {path} holds no key (delete it, or set WCH_SECRET_KEY)")
        time.sleep(0.01)
