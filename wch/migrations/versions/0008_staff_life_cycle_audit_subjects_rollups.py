"""staff life cycle, audit log, job subjects, dashboard rollups

Users get ``disabled_at`` and a ``session_version`` that every session
carries; ``audit_log`` records staff actions; jobs get a ``subject`` (what
they are about, e.g. ``order:1234``), filled here for the job types that have
one; store deliveries remember the job they dispatched; ``job_hour_counts``,
``rollup_marks`` and ``snapshots`` let the dashboard read a few rows instead
of counting millions.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 17:30:00

"""
from alembic import op
import sqlalchemy as sa

import wch.db


# revision identifiers, used by Alembic.
revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

# The job types with a subject when this migration was written, and the argument it names.
SUBJECTS = {
    "sync_product": ("product", "store_id"),
    "sync_inventory": ("product", "store_id"),
    "notify_order": ("order", "store_id"),
    "send_cart_reminder": ("cart", "cart_id"),
    "send_campaign_batch": ("campaign", "campaign_id"),
}

LIVE = "status IN ('queued', 'retrying', 'running')"
# The lookup screens: orders, products and contacts newest first, by number, SKU or phone.
PANEL_INDEXES = (
    ("orders", "ix_orders_updated_at", ["updated_at"]),
    ("orders", "ix_orders_number", ["number"]),
    ("orders", "ix_orders_customer_phone", ["customer_phone"]),
    ("products", "ix_products_updated_at", ["updated_at"]),
    ("products", "ix_products_retailer_id", ["retailer_id"]),
    ("contacts", "ix_contacts_created_at", ["created_at"]),
    ("campaign_recipients", "ix_campaign_recipients_phone", ["phone"]),
)


def upgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('disabled_at', wch.db.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('session_version', sa.Integer(), server_default='1', nullable=False))

    op.create_table('audit_log',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', wch.db.UTCDateTime(), nullable=False),
    sa.Column('actor', sa.String(length=254), nullable=False),
    sa.Column('action', sa.String(length=64), nullable=False),
    sa.Column('target', sa.String(length=200), nullable=True),
    sa.Column('details', sa.JSON(), nullable=False),
    sa.Column('address', sa.String(length=64), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_log'))
    )
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.create_index('ix_audit_log_at', ['at'], unique=False)
        batch_op.create_index('ix_audit_log_action_at', ['action', 'at'], unique=False)
        batch_op.create_index('ix_audit_log_actor_at', ['actor', 'at'], unique=False)

    op.create_table('job_hour_counts',
    sa.Column('hour', wch.db.UTCDateTime(), nullable=False),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('hour', 'outcome', name=op.f('pk_job_hour_counts'))
    )
    op.create_table('rollup_marks',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('upto', wch.db.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_rollup_marks'))
    )
    op.create_table('snapshots',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('taken_at', wch.db.UTCDateTime(), nullable=False),
    sa.Column('data', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_snapshots'))
    )

    with op.batch_alter_table('webhook_deliveries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('job_id', sa.String(length=36), nullable=True))
    for table, name, columns in PANEL_INDEXES:
        op.create_index(name, table, columns, unique=False)

    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('subject', sa.String(length=100), nullable=True))
    _fill_subjects()
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.create_index('ix_jobs_subject_enqueued_at', ['subject', 'enqueued_at'], unique=False)
        batch_op.create_index('ix_jobs_live_status_type_eta', ['status', 'type', 'eta', 'enqueued_at'], unique=False,
                              sqlite_where=sa.text(LIVE), postgresql_where=sa.text(LIVE))


def _fill_subjects():
    connection = op.get_bind()
    jobs = sa.table("jobs", sa.column("type", sa.String), sa.column("subject", sa.String))
    for type_, (kind, argument) in SUBJECTS.items():
        if connection.dialect.name == "postgresql":
            value = sa.text(f"'{kind}:' || (args ->> '{argument}')")
        else:
            value = sa.text(f"'{kind}:' || json_extract(args, '$.{argument}')")
        connection.execute(jobs.update().where(jobs.c.type == type_).values(subject=value))


def downgrade():
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_index('ix_jobs_live_status_type_eta')
        batch_op.drop_index('ix_jobs_subject_enqueued_at')
        batch_op.drop_column('subject')
    for table, name, _ in PANEL_INDEXES:
        op.drop_index(name, table_name=table)
    with op.batch_alter_table('webhook_deliveries', schema=None) as batch_op:
        batch_op.drop_column('job_id')
    op.drop_table('snapshots')
    op.drop_table('rollup_marks')
    op.drop_table('job_hour_counts')
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_log_actor_at')
        batch_op.drop_index('ix_audit_log_action_at')
        batch_op.drop_index('ix_audit_log_at')
    op.drop_table('audit_log')
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('session_version')
        batch_op.drop_column('disabled_at')
