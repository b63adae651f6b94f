"""Settings from the environment: defaults, and one clear line naming the variable for every bad value."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.support.services import BIN, ROOT
from wch.config import DEFAULT_BROKER_URL, ConfigError, Settings


def test_defaults(tmp_path):
    settings = Settings.from_env({}, instance_path=tmp_path)
    assert settings.database_url == f"sqlite:///{tmp_path.resolve() / 'wch.sqlite3'}"
    assert settings.broker_url == DEFAULT_BROKER_URL == "amqp://guest:guest@127.0.0.1:5672/%2F"
    assert settings.retry_delays == (60, 300, 900)
    assert settings.cart_expiry_hours == 72
    assert settings.result_ttl == 3600
    assert settings.secret_key is None
    assert (settings.worker_heartbeat, settings.worker_lost_after, settings.rescue_after) == (10, 60, 600)
    assert (settings.db_pool_size, settings.db_pool_timeout) == (None, 3.0)
    assert settings.messaging_limit == 250  # a new business portfolio's limit, until Meta says more
    assert settings.order_notify_statuses == ("processing", "completed", "refunded")
    assert (settings.order_messages_per_day, settings.uncertain_after, settings.recovery_window_hours) == (5, 900, 168)
    assert (settings.log_level, settings.log_format, settings.whatsapp_mode) == ("INFO", "text", "live")
    assert not settings.whatsapp_sandbox and settings.metrics_port == 9191


@pytest.mark.parametrize(("raw", "limit"), [("2000", 2000), ("2K", 2000), ("TIER_10K", 10_000), ("100,000", 100_000),
                                            ("unlimited", None), ("TIER_UNLIMITED", None)])
def test_the_messaging_limit_is_read_as_staff_and_meta_write_it(raw, limit):
    assert Settings.from_env({"WCH_MESSAGING_LIMIT": raw}).messaging_limit == limit


def test_values_are_read_and_postgres_urls_use_psycopg():
    settings = Settings.from_env({
        "WCH_DATABASE_URL": "postgres://u@db/wch",
        "WCH_BROKER_URL": "stub://",
        "WCH_RETRY_DELAYS": " 1, 2.5 ,3",
        "WCH_CART_EXPIRY_HOURS": "48",
        "WCH_RESULT_TTL": "60",
        "WCH_WORKER_HEARTBEAT": "30",
        "WCH_RESCUE_AFTER": "120",
        "WCH_DB_POOL_SIZE": "34",
        "WCH_DB_POOL_TIMEOUT": "0.5",
    })
    assert settings.database_url == "postgresql+psycopg://u@db/wch"
    assert settings.broker_is_stub
    assert settings.retry_delays == (1, 2.5, 3)
    assert (settings.cart_expiry_hours, settings.result_ttl) == (48, 60)
    # Three missed heartbeats, when that is longer than the default minute.
    assert (settings.worker_lost_after, settings.rescue_after) == (90, 120)
    assert (settings.db_pool_size, settings.db_pool_timeout) == (34, 0.5)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("WCH_RETRY_DELAYS", "x", "'x' is not a number of seconds"),
        ("WCH_RETRY_DELAYS", "60,,900", "'' is not a number of seconds"),
        ("WCH_RETRY_DELAYS", "60,-5", "cannot be negative"),
        ("WCH_RETRY_DELAYS", "nan", "is not a number of seconds"),
        ("WCH_RETRY_DELAYS", "inf", "is not a number of seconds"),
        ("WCH_CART_EXPIRY_HOURS", "three", "'three' is not a whole number"),
        ("WCH_CART_EXPIRY_HOURS", "1.5", "is not a whole number"),
        ("WCH_CART_EXPIRY_HOURS", "-1", "must be greater than 0"),
        ("WCH_CART_EXPIRY_HOURS", "0", "must be greater than 0"),
        ("WCH_RESULT_TTL", "-3600", "must be greater than 0"),
        ("WCH_CLEANUP_BATCH_SIZE", "lots", "is not a whole number"),
        ("WCH_LEDGER_RETENTION_DAYS", "-1", "must be greater than 0"),
        ("WCH_WORKER_HEARTBEAT", "0", "must be greater than 0"),
        ("WCH_WORKER_LOST_AFTER", "15", "must be at least two heartbeats (2 x WCH_WORKER_HEARTBEAT = 20 s)"),
        ("WCH_WORKER_LOST_AFTER", "a minute", "is not a whole number"),
        ("WCH_RESCUE_AFTER", "0", "must be greater than 0"),
        ("WCH_DB_POOL_SIZE", "0", "must be greater than 0"),
        ("WCH_DB_POOL_SIZE", "many", "is not a whole number"),
        ("WCH_DB_POOL_TIMEOUT", "0", "must be greater than 0"),
        ("WCH_MESSAGING_LIMIT", "lots", "'lots' is not a messaging limit"),
        ("WCH_MESSAGING_LIMIT", "-250", "is not a messaging limit"),
        ("WCH_UNCERTAIN_AFTER", "0", "must be greater than 0"),
        ("WCH_ORDER_MESSAGES_PER_DAY", "many", "is not a whole number"),
        ("WCH_RECOVERY_WINDOW_HOURS", "0", "must be greater than 0"),
        ("WCH_BROKER_URL", "redis://127.0.0.1:6379/0", "unknown scheme 'redis'"),
        ("WCH_BROKER_URL", "127.0.0.1:5672", "unknown scheme"),
        ("WCH_DATABASE_URL", "mysql://root@db/wch", "unknown scheme 'mysql'"),
        ("WCH_LOG_LEVEL", "loud", "'loud' is not one of DEBUG, INFO, WARNING, ERROR"),
        ("WCH_LOG_FORMAT", "xml", "'xml' is not one of text, json"),
        ("WHATSAPP_MODE", "test", "'test' is not one of live, sandbox"),
        ("WCH_METRICS_PORT", "70000", "is not a port number"),
        ("WCH_METRICS_PORT", "-1", "is not a port number"),
        ("WOOCOMMERCE_URL", "shop.example", "unknown scheme"),
    ],
)
def test_a_bad_value_raises_a_config_error_naming_the_variable(name, value, message):
    with pytest.raises(ConfigError) as error:
        Settings.from_env({name: value})
    assert str(error.value).startswith(f"{name}: ")
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def run(argv: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    environment = os.environ | {"WCH_DATABASE_URL": f"sqlite:///{tmp_path / 'wch.sqlite3'}", "WCH_BROKER_URL": "stub://"}
    return subprocess.run(argv, env=environment | env, cwd=tmp_path, capture_output=True, text=True, timeout=60)


def test_wch_command_with_a_bad_value_prints_one_line_and_fails(tmp_path):
    result = run([str(BIN / "wch"), "jobs", "counts"], tmp_path, WCH_RETRY_DELAYS="x")
    assert result.returncode != 0
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "wch: WCH_RETRY_DELAYS: 'x' is not a number of seconds (expected e.g. 60,300,900)"
    ]


def test_wch_command_with_an_unknown_broker_scheme_prints_one_line(tmp_path):
    result = run([str(BIN / "wch"), "jobs", "counts", "--json"], tmp_path, WCH_BROKER_URL="redis://localhost")
    assert result.returncode != 0
    assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith("wch: WCH_BROKER_URL: unknown scheme")


BAD_SETTING = "wch: WCH_CART_EXPIRY_HOURS: must be greater than 0, got -3"


@pytest.mark.parametrize("command", ["web", "worker", "scheduler"])
def test_wch_web_worker_and_scheduler_with_a_bad_value_print_one_line_and_start_nothing(command, tmp_path):
    result = run([str(BIN / "wch"), command, "--processes", "1"], tmp_path, WCH_CART_EXPIRY_HOURS="-3")
    assert result.returncode == 2
    assert result.stdout == "" and result.stderr.splitlines() == [BAD_SETTING]


@pytest.mark.parametrize("program", ["dramatiq", "periodiq"])
def test_dramatiq_and_periodiq_with_a_bad_value_exit_with_wch_s_line_and_status(program, tmp_path):
    argv = [str(BIN / program), "wch.actors"]
    if program == "dramatiq":
        argv += ["--processes", "1", "--threads", "1"]
    result = subprocess.run(argv, env=os.environ | {"WCH_CART_EXPIRY_HOURS": "-3"}, cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    output = (result.stdout + result.stderr).splitlines()
    # The programs log their own start (and Dramatiq its shutdown) before wch is loaded; wch adds one line.
    ours = [line for line in output if not line.startswith("[")]
    assert ours == [BAD_SETTING], output
    assert "Traceback" not in result.stdout + result.stderr


def test_configured_secrets_are_masked_wherever_they_appear(app_factory, sqlite_url):
    from wch.redact import redact_text

    text = "store answered with woo-secret-4c1d9 in its body"
    assert redact_text(text) == text
    app_factory(sqlite_url, WOOCOMMERCE_WEBHOOK_SECRET="woo-secret-4c1d9")
    assert redact_text(text) == "store answered with [redacted] in its body"
