"""Messaging customers on WhatsApp: contacts and opt-outs, the record of every message, the shared send
budget, WhatsApp's limits, Meta's status and inbound events, campaigns."""
