"""The admin panel (``wch.admin``) and staff log-in, through Flask's test client and in headless Chromium."""

from __future__ import annotations

import pytest

from tests.support.panel import logged_in_admin


@pytest.fixture
def admin(app):
    """A test client logged in as a new admin."""
    return logged_in_admin(app)
