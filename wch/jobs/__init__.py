"""The job core: the jobs ledger, dispatch through the outbox, and the worker middleware that keeps it true.

Domain code creates jobs with :func:`dispatch` (or :func:`dispatch_many`, for
bulk work) and declares job types with
:class:`JobType`; everything else here is for the panel, the command line and
the workers.
"""

from wch.jobs.dispatcher import (
    DispatchError,
    JobNotFound,
    UnknownJobType,
    cancel,
    dispatch,
    dispatch_many,
    end_stuck,
    find_pending,
    release_key,
    retry,
    retry_failed,
    retry_many,
)
from wch.jobs.types import JobType, job_actor

__all__ = [
    "DispatchError",
    "JobNotFound",
    "JobType",
    "UnknownJobType",
    "cancel",
    "dispatch",
    "dispatch_many",
    "end_stuck",
    "find_pending",
    "job_actor",
    "release_key",
    "retry",
    "retry_failed",
    "retry_many",
]
