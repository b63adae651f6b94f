"""The store (``wch.store``): catalog and order sync from WooCommerce webhooks to the fake Graph API.

This folder's apps (and worker processes) are configured for the store and
the fake Graph API (``tests.support.woo.sync_env``).
"""

from __future__ import annotations

import pytest

from tests.support import woo
from tests.support.apps import overrides


@pytest.fixture
def env(request, fake_graph):
    return woo.sync_env(fake_graph.url) | overrides(request)


@pytest.fixture
def rabbit_client(rabbit_app):
    """The test client of ``rabbit_app``: webhooks whose jobs go through the real RabbitMQ."""
    return rabbit_app.test_client()
