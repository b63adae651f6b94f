"""Broadcast campaigns: a message sent to an audience in rate-limited batches.

``lifecycle`` creates and controls them, ``audience`` builds their recipient
lists, ``sending`` sends one batch, ``sweep`` is the once-a-minute safety net,
``recipients`` moves recipients between statuses with the counters, and
``progress`` reads them. What the panel and the command line use is here.
"""

from wch.messaging.campaigns.errors import CampaignError, CampaignNotFound
from wch.messaging.campaigns.lifecycle import (
    SEND_CAMPAIGN_BATCH,
    CreateResult,
    cancel_campaign,
    create_campaign,
    get_campaign,
    pause_campaign,
    resume_campaign,
    retry_failed,
    start_campaign,
)
from wch.messaging.campaigns.progress import campaigns_in_progress, list_campaigns, list_recipients, progress

__all__ = [
    "SEND_CAMPAIGN_BATCH",
    "CampaignError",
    "CampaignNotFound",
    "CreateResult",
    "campaigns_in_progress",
    "cancel_campaign",
    "create_campaign",
    "get_campaign",
    "list_campaigns",
    "list_recipients",
    "pause_campaign",
    "progress",
    "resume_campaign",
    "retry_failed",
    "start_campaign",
]
