"""The WhatsApp Cloud API client (``wch.whatsapp``) against the fake Graph API (the root ``fake_graph`` fixture).

The client under test is the ``whatsapp`` fixture of ``test_client.py``.
"""
