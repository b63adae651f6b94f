"""The job core (``wch.jobs``): dispatch, the ledger middleware, the outbox, upkeep; on the StubBroker and RabbitMQ.

The jobs these tests run are the test-only actors of ``tests/support/jobs.py``;
the root conftest's ``app``, ``stub_worker``, ``rabbit_app`` and ``spawn_worker`` run them.
"""
