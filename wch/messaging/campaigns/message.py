"""What a campaign sends: a template or a text, with each recipient's {name} and {phone} filled in."""

from __future__ import annotations

from dataclasses import dataclass

from wch.messaging.campaigns.errors import CampaignError
from wch.messaging.campaigns.recipients import callback_data
from wch.messaging.placeholders import PlaceholderError, check, fill
from wch.models import Campaign
from wch.whatsapp import WhatsAppClient

# Placeholders a campaign's text or template parameters may use, filled per recipient.
RECIPIENT_FIELDS = ("name", "phone")


@dataclass(frozen=True)
class Target:
    """A claimed recipient as plain values, safe to hand to the sending threads."""

    id: int
    phone: str
    name: str | None


def check_placeholders(value: str) -> None:
    """Refuse a text or parameter whose placeholders are not plain {name} and {phone}."""
    try:
        check(value, RECIPIENT_FIELDS)
    except PlaceholderError as error:
        raise CampaignError(f"{value!r}: {error}") from None


def render(value: str, recipient: Target) -> str:
    """A campaign text or parameter with the recipient's {name} and {phone} filled in."""
    return fill(value, {"name": recipient.name or "", "phone": recipient.phone})


class CampaignMessage:
    """A campaign's message, detached from the session so pool threads can send it.

    Parameters:
      campaign: the campaign whose text or template this is.
    """

    def __init__(self, campaign: Campaign) -> None:
        self.text = campaign.text
        self.template_name = campaign.template_name
        self.template_language = campaign.template_language
        self.parameters = list(campaign.template_parameters or [])

    def send(self, client: WhatsAppClient, recipient: Target) -> str:
        """Send it to ``recipient``; returns the wamid."""
        data = callback_data(recipient.id)
        if self.text is not None:
            return client.send_text(recipient.phone, render(self.text, recipient), callback_data=data)
        parameters = [render(p, recipient) for p in self.parameters]
        return client.send_template(recipient.phone, self.template_name, self.template_language, parameters,
                                    callback_data=data)
