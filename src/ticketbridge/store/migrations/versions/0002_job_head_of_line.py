"""Jobs: head-of-line flag and partial indexes, so that a claim is O(log n).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-05

``jobs.head`` marks the unfinished job with the lowest id of each key; it is filled in
here for existing rows. Two partial indexes serve the claim (see store/jobs.py):
heads by (state, not_before, id), and unfinished jobs by (key, id).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # A plain ALTER TABLE ... ADD COLUMN on both databases (no batch copy on SQLite).
    op.add_column(
        "jobs", sa.Column("head", sa.Boolean(), server_default=sa.false(), nullable=False)
    )
    op.create_index(
        "ix_jobs_unfinished_key_id",
        "jobs",
        ["key", "id"],
        sqlite_where=sa.text("state <> 'done'"),
        postgresql_where=sa.text("state <> 'done'"),
    )
    op.execute(
        sa.text(
            "UPDATE jobs SET head = :yes WHERE state <> 'done' AND NOT EXISTS ("
            "SELECT 1 FROM jobs AS earlier WHERE earlier.key = jobs.key"
            " AND earlier.id < jobs.id AND earlier.state <> 'done')"
        ).bindparams(sa.bindparam("yes", True, type_=sa.Boolean()))
    )
    op.create_index(
        "ix_jobs_head_state_not_before_id",
        "jobs",
        ["state", "not_before", "id"],
        sqlite_where=sa.text("head = 1"),
        postgresql_where=sa.text("head"),
    )


def downgrade() -> None:
    op.drop_index("ix_jobs_head_state_not_before_id", table_name="jobs")
    op.drop_index("ix_jobs_unfinished_key_id", table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("head")
