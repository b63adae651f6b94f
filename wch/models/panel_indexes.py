"""Indexes the admin panel's lists need on tables defined elsewhere.

The jobs list shows the newest jobs first, filtered by status or type; without
these, a filtered page at a million rows sorts every matching row. Declared
here (on the existing tables) so autogenerate sees them; created by migration 0004.
"""

from sqlalchemy import Index

from wch.models.carts import Cart
from wch.models.jobs import Job

JOBS_BY_STATUS_NEWEST = Index("ix_jobs_status_enqueued_at", Job.status, Job.enqueued_at)
JOBS_BY_TYPE_NEWEST = Index("ix_jobs_type_enqueued_at", Job.type, Job.enqueued_at)
# "Reminders sent and carts recovered in the last 7 days" on the dashboard read
# this range only, without visiting the table (recovered_at comes from migration 0003).
CARTS_BY_REMINDER = Index("ix_carts_reminder_sent_recovered", Cart.reminder_sent_at, Cart.recovered_at)
