"""Messaging (``wch.messaging``): campaigns, contacts, the shared send rate, Meta's status and inbound events.

This folder's apps send through the fake Graph API, fast (``tests.support.whatsapp.broadcast_env``).
"""

from __future__ import annotations

import pytest

from tests.support.apps import overrides
from tests.support.whatsapp import broadcast_env


@pytest.fixture
def env(request, fake_graph):
    return broadcast_env(fake_graph.url) | overrides(request)
