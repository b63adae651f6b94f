"""Messaging customers on WhatsApp: contacts and opt-outs, the shared send rate, inbound events, campaigns."""
