"""The admin panel (``wch.admin``) and staff log-in, through Flask's test client and in headless Chromium."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from tests.support.panel import logged_in_admin

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


@pytest.fixture
def admin(app):
    """A test client logged in as a new admin."""
    return logged_in_admin(app)


@pytest.fixture
def browser():
    """Headless Chromium (Debian's: ``make test`` installs it; a missing browser fails the test, never skips it)."""
    assert Path(CHROMIUM).exists(), "Debian's chromium is not installed: run `make browser`"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def artifacts() -> Path:
    """``tests/artifacts/``, where browser tests leave their screenshots."""
    path = Path(__file__).resolve().parents[1] / "artifacts"
    path.mkdir(exist_ok=True)
    return path
