"""store imports: the resumable cursor of a catalog or order import

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 17:20:00

"""
from alembic import op
import sqlalchemy as sa

import wch.db


# revision identifiers, used by Alembic.
revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('store_imports',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('since', wch.db.UTCDateTime(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('next_page', sa.Integer(), nullable=False),
    sa.Column('total_pages', sa.Integer(), nullable=True),
    sa.Column('total_items', sa.Integer(), nullable=True),
    sa.Column('imported', sa.Integer(), nullable=False),
    sa.Column('skipped', sa.Integer(), nullable=False),
    sa.Column('sync_jobs', sa.Integer(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('started_at', wch.db.UTCDateTime(), nullable=False),
    sa.Column('updated_at', wch.db.UTCDateTime(), nullable=False),
    sa.Column('finished_at', wch.db.UTCDateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_store_imports'))
    )
    with op.batch_alter_table('store_imports', schema=None) as batch_op:
        batch_op.create_index('ix_store_imports_kind_status', ['kind', 'status'], unique=False)


def downgrade():
    with op.batch_alter_table('store_imports', schema=None) as batch_op:
        batch_op.drop_index('ix_store_imports_kind_status')

    op.drop_table('store_imports')
