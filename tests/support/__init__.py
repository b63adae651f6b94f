"""Helpers the tests share: apps and in-process workers, services, worker processes, fakes and signed deliveries.

No fixtures live here; the conftest files build theirs from these.
"""
