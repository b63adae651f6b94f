"""The tables of wch; importing this package registers every model."""

from wch.models.audit import AuditEntry
from wch.models.campaigns import Campaign, CampaignStatus, Recipient, RecipientStatus, SendRate
from wch.models.carts import Cart, CartStatus, CleanupRun
from wch.models.contacts import Contact
from wch.models.imports import StoreImport
from wch.models.jobs import Job, JobAttempt, JobStatus, ScheduleSlot
from wch.models.messages import Message, MessageState
from wch.models.phone_numbers import PhoneNumber
from wch.models.reminders import ReminderSettings
from wch.models.rollups import JobHourCount, RollupMark, Snapshot
from wch.models.store import Order, Product, WebhookDelivery
from wch.models.users import Role, User
from wch.models.workers import WorkerProcess

__all__ = [
    "AuditEntry",
    "Campaign",
    "CampaignStatus",
    "Cart",
    "CartStatus",
    "CleanupRun",
    "Contact",
    "Job",
    "JobAttempt",
    "JobHourCount",
    "JobStatus",
    "Order",
    "PhoneNumber",
    "Message",
    "MessageState",
    "Product",
    "Recipient",
    "RecipientStatus",
    "ReminderSettings",
    "Role",
    "RollupMark",
    "ScheduleSlot",
    "SendRate",
    "Snapshot",
    "StoreImport",
    "WorkerProcess",
    "User",
    "WebhookDelivery",
]
