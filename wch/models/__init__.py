"""The tables of wch; importing this package registers every model."""

from wch.models.campaigns import Campaign, CampaignStatus, Recipient, RecipientStatus, SendRate
from wch.models.carts import Cart, CartStatus, CleanupRun
from wch.models.contacts import Contact
from wch.models.imports import StoreImport
from wch.models.jobs import Job, JobAttempt, JobStatus, ScheduleSlot
from wch.models.reminders import ReminderSettings
from wch.models.store import Order, OrderNotification, Product, WebhookDelivery
from wch.models.users import Role, User
from wch.models.workers import WorkerProcess

__all__ = [
    "Campaign",
    "CampaignStatus",
    "Cart",
    "CartStatus",
    "CleanupRun",
    "Contact",
    "Job",
    "JobAttempt",
    "JobStatus",
    "Order",
    "OrderNotification",
    "Product",
    "Recipient",
    "RecipientStatus",
    "ReminderSettings",
    "Role",
    "ScheduleSlot",
    "SendRate",
    "StoreImport",
    "WorkerProcess",
    "User",
    "WebhookDelivery",
]
