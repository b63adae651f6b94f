"""job types named by what they do

Renames the job types whose names were nouns (``product``, ``order``…) or
triggers named after their schedule, in every ledger row, so history and
pending counts stay continuous. Pending jobs of a renamed type get their
digest recomputed under the new name and go back to the outbox: the relay
publishes them under the new name, and a worker skips any copy still in
RabbitMQ under the old one (its type no longer matches the row).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 16:00:00

"""
import hashlib
import json

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

RENAMED = {
    "product": "sync_product",
    "inventory": "sync_inventory",
    "order": "notify_order",
    "hourly": "trigger_hourly_work",
    "broadcast_sweep_trigger": "trigger_broadcast_sweep",
    "reminder_scan_trigger": "trigger_reminder_scan",
}
PENDING = ("queued", "retrying")

jobs = sa.table(
    "jobs",
    sa.column("id", sa.String),
    sa.column("type", sa.String),
    sa.column("args", sa.JSON),
    sa.column("status", sa.String),
    sa.column("digest", sa.String),
    sa.column("dedupe_key", sa.String),
    sa.column("published_at", sa.DateTime),
)


def _digest(type_, args):
    # As wch.jobs.messages.args_digest computed it when this migration was written.
    canonical = json.dumps([type_, args], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _rename(renames):
    connection = op.get_bind()
    for old, new in renames.items():
        pending = connection.execute(
            sa.select(jobs.c.id, jobs.c.args, jobs.c.dedupe_key)
            .where(jobs.c.type == old, jobs.c.status.in_(PENDING))
        ).all()
        for job_id, args, dedupe_key in pending:
            digest = _digest(new, args or {})
            if dedupe_key == _digest(old, args or {}):
                dedupe_key = digest
            elif dedupe_key is not None and dedupe_key.startswith(old + ":"):
                dedupe_key = new + dedupe_key[len(old):]
            connection.execute(
                jobs.update().where(jobs.c.id == job_id)
                .values(type=new, digest=digest, dedupe_key=dedupe_key, published_at=None)
            )
        # Finished rows keep their digest (only pending ones are looked up by it); their keys follow the name.
        connection.execute(
            jobs.update()
            .where(jobs.c.type == old, jobs.c.dedupe_key.like(old + ":%"))
            .values(dedupe_key=sa.literal(new) + sa.func.substr(jobs.c.dedupe_key, len(old) + 1))
        )
        connection.execute(jobs.update().where(jobs.c.type == old).values(type=new))


def upgrade():
    _rename(RENAMED)


def downgrade():
    _rename({new: old for old, new in RENAMED.items()})
