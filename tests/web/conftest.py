"""What machines call (``wch.web``): the store's and Meta's webhooks, ``/healthz`` and ``/metrics``.

Each webhook module configures its apps with the settings of its sender
(an ``env`` fixture of its own).
"""
