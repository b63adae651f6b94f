"""running jobs hold their dedupe key; attempts are written when they end

A partial unique index on ``dedupe_key`` where the job is running, beside the
one on pending jobs: a job with the key of a running one waits until that one
has finished. Two running rows with one key (possible before this release)
would block the index: all but the latest started lose their key, which only
served to dedupe them.

An attempt's log row is now written once, when the attempt ends (the job's
row says who runs it and since when). Open log rows of running jobs are
deleted, since their outcome will write them whole; open rows of jobs that are
no longer running were interrupted and are closed as such.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 18:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

RUNNING = sa.text("status = 'running'")

jobs = sa.table(
    "jobs",
    sa.column("id", sa.String),
    sa.column("status", sa.String),
    sa.column("dedupe_key", sa.String),
    sa.column("started_at", sa.DateTime),
    sa.column("finished_at", sa.DateTime),
)
attempts = sa.table(
    "job_attempts",
    sa.column("job_id", sa.String),
    sa.column("finished_at", sa.DateTime),
    sa.column("outcome", sa.String),
)


def _free_duplicate_running_keys(connection):
    duplicated = connection.execute(
        sa.select(jobs.c.dedupe_key)
        .where(jobs.c.status == "running", jobs.c.dedupe_key.is_not(None))
        .group_by(jobs.c.dedupe_key)
        .having(sa.func.count() > 1)
    ).scalars().all()
    for key in duplicated:
        rows = connection.execute(
            sa.select(jobs.c.id)
            .where(jobs.c.status == "running", jobs.c.dedupe_key == key)
            .order_by(jobs.c.started_at.desc(), jobs.c.id)
        ).scalars().all()
        connection.execute(jobs.update().where(jobs.c.id.in_(rows[1:])).values(dedupe_key=None))


def _settle_open_attempts(connection):
    running = sa.select(jobs.c.id).where(jobs.c.status == "running")
    connection.execute(attempts.delete().where(attempts.c.outcome.is_(None), attempts.c.job_id.in_(running)))
    finished = sa.select(jobs.c.finished_at).where(jobs.c.id == attempts.c.job_id).scalar_subquery()
    connection.execute(
        attempts.update()
        .where(attempts.c.outcome.is_(None))
        .values(outcome="interrupted", finished_at=sa.func.coalesce(attempts.c.finished_at, finished))
    )


def upgrade():
    connection = op.get_bind()
    _free_duplicate_running_keys(connection)
    _settle_open_attempts(connection)
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.create_index('uq_jobs_running_dedupe_key', ['dedupe_key'], unique=True,
                              sqlite_where=RUNNING, postgresql_where=RUNNING)


def downgrade():
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_index('uq_jobs_running_dedupe_key', sqlite_where=RUNNING, postgresql_where=RUNNING)
