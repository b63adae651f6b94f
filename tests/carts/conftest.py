"""Carts (``wch.carts``): the cleanup, abandoned-cart reminders and their recovery.

Reminders are sent through the fake Graph API, so this folder's apps get the
WhatsApp settings pointing at it.
"""

from __future__ import annotations

import pytest

from tests.support.apps import overrides
from tests.support.whatsapp import broadcast_env


@pytest.fixture
def env(request, fake_graph):
    return broadcast_env(fake_graph.url) | overrides(request)
