"""The tables of wch; importing this package registers every model."""

from wch.models.carts import Cart, CartStatus, CleanupRun
from wch.models.jobs import Job, JobAttempt, JobStatus, ScheduleSlot
from wch.models.workers import WorkerProcess

__all__ = [
    "Cart",
    "CartStatus",
    "CleanupRun",
    "Job",
    "JobAttempt",
    "JobStatus",
    "ScheduleSlot",
    "WorkerProcess",
]
