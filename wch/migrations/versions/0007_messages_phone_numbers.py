"""messages replace order notifications; phone number standing; recipients by send time

One ``messages`` row per order or reminder message a customer gets, its
subject (``order:<store id>:<status>``, ``cart:<id>:<idle since>``) doubling as
the callback data Meta echoes, so the status webhook settles every kind. The
order notifications move into it (their callback data was already the
subject). ``phone_numbers`` keeps what Meta said about the sending number.
Recipients get an index on ``sent_at`` for the rolling 24-hour count of
customers messaged.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 10:00:00

"""
from alembic import op
import sqlalchemy as sa

import wch.db


# revision identifiers, used by Alembic.
revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

OPEN = sa.text("state IN ('sending', 'uncertain')")


def upgrade():
    op.create_table('messages',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('subject', sa.String(length=200), nullable=False),
    sa.Column('phone', sa.String(length=32), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('form', sa.String(length=16), nullable=True),
    sa.Column('resend', sa.JSON(), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False, server_default='1'),
    sa.Column('wamid', sa.String(length=200), nullable=True),
    sa.Column('error_code', sa.Integer(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('created_at', wch.db.UTCDateTime(), nullable=False),
    sa.Column('sent_at', wch.db.UTCDateTime(), nullable=True),
    sa.Column('delivered_at', wch.db.UTCDateTime(), nullable=True),
    sa.Column('read_at', wch.db.UTCDateTime(), nullable=True),
    sa.Column('failed_at', wch.db.UTCDateTime(), nullable=True),
    sa.Column('settled_by', sa.String(length=200), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_messages')),
    sa.UniqueConstraint('subject', name=op.f('uq_messages_subject'))
    )
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.create_index('ix_messages_wamid', ['wamid'], unique=False)
        batch_op.create_index('ix_messages_phone_created_at', ['phone', 'created_at'], unique=False)
        batch_op.create_index('ix_messages_created_at', ['created_at'], unique=False)
        batch_op.create_index('ix_messages_open', ['created_at'], unique=False,
                              sqlite_where=OPEN, postgresql_where=OPEN)

    op.execute(
        "INSERT INTO messages (kind, subject, phone, state, form, resend, wamid, error, created_at, sent_at) "
        "SELECT 'order', 'order:' || CAST(o.store_id AS VARCHAR) || ':' || n.status, "
        "COALESCE(o.customer_phone, ''), n.state, n.kind, NULL, n.wamid, n.error, n.created_at, n.sent_at "
        "FROM order_notifications n JOIN orders o ON o.id = n.order_id"
    )
    op.drop_table('order_notifications')

    op.create_table('phone_numbers',
    sa.Column('sender', sa.String(length=64), nullable=False),
    sa.Column('display_phone_number', sa.String(length=32), nullable=True),
    sa.Column('messaging_limit', sa.String(length=32), nullable=True),
    sa.Column('limit_updated_at', wch.db.UTCDateTime(), nullable=True),
    sa.Column('quality_rating', sa.String(length=16), nullable=True),
    sa.Column('last_event', sa.String(length=64), nullable=True),
    sa.Column('last_event_detail', sa.Text(), nullable=True),
    sa.Column('flagged_at', wch.db.UTCDateTime(), nullable=True),
    sa.Column('updated_at', wch.db.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('sender', name=op.f('pk_phone_numbers'))
    )
    with op.batch_alter_table('campaign_recipients', schema=None) as batch_op:
        batch_op.create_index('ix_campaign_recipients_sent_at', ['sent_at'], unique=False)


def downgrade():
    with op.batch_alter_table('campaign_recipients', schema=None) as batch_op:
        batch_op.drop_index('ix_campaign_recipients_sent_at')
    op.drop_table('phone_numbers')

    op.create_table('order_notifications',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('order_id', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=32), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=True),
    sa.Column('wamid', sa.String(length=200), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('created_at', wch.db.UTCDateTime(), nullable=False),
    sa.Column('sent_at', wch.db.UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], name=op.f('fk_order_notifications_order_id_orders'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_order_notifications')),
    sa.UniqueConstraint('order_id', 'status', name='uq_order_notifications_order_status')
    )
    # Delivered and read were "sent" to the old table; the states it never had go back to what they meant.
    op.execute(
        "INSERT INTO order_notifications (order_id, status, state, kind, wamid, error, created_at, sent_at) "
        "SELECT o.id, SUBSTR(m.subject, LENGTH('order:' || CAST(o.store_id AS VARCHAR) || ':') + 1), "
        "CASE WHEN m.state IN ('delivered', 'read') THEN 'sent' ELSE m.state END, "
        "m.form, m.wamid, m.error, m.created_at, m.sent_at "
        "FROM messages m JOIN orders o ON m.subject LIKE 'order:' || CAST(o.store_id AS VARCHAR) || ':%' "
        "WHERE m.kind = 'order'"
    )
    op.drop_table('messages')
