"""What a refused campaign request raises."""


class CampaignError(ValueError):
    """A campaign request that is refused; nothing was changed."""


class CampaignNotFound(CampaignError):
    pass
