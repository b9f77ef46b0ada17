"""Initial schema: inbox, jobs, links, copied, quarantine, audit, receiver_state.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

# Frozen copies of the column types of schema.py as they were at this revision.
TIMESTAMP = sa.DateTime(timezone=True)
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "inbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=200), nullable=False),
        sa.Column("message_id", sa.String(length=998), nullable=True),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("raw", sa.LargeBinary(), nullable=False),
        sa.Column("received_at", TIMESTAMP, nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("helpdesk", sa.String(length=200), nullable=True),
        sa.Column("ticket_id", sa.String(length=200), nullable=True),
        sa.Column("processed_at", TIMESTAMP, nullable=True),
        sa.CheckConstraint(
            "state IN ('received', 'applied', 'skipped', 'ignored', 'quarantined', 'dead')",
            name=op.f("ck_inbox_state_valid"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inbox")),
        sa.UniqueConstraint("digest", name=op.f("uq_inbox_digest")),
        sa.UniqueConstraint("message_id", name=op.f("uq_inbox_message_id")),
    )
    op.create_index(op.f("ix_inbox_helpdesk_ticket_id"), "inbox", ["helpdesk", "ticket_id"])
    op.create_index(op.f("ix_inbox_state_id"), "inbox", ["state", "id"])

    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("inbox_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("key", sa.String(length=400), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("not_before", TIMESTAMP, nullable=True),
        sa.Column("lease_owner", sa.String(length=200), nullable=True),
        sa.Column("lease_until", TIMESTAMP, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.CheckConstraint(
            "state IN ('pending', 'running', 'retrying', 'done', 'dead')",
            name=op.f("ck_jobs_state_valid"),
        ),
        sa.ForeignKeyConstraint(["inbox_id"], ["inbox.id"], name=op.f("fk_jobs_inbox_id_inbox")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
    )
    op.create_index(op.f("ix_jobs_inbox_id"), "jobs", ["inbox_id"])
    op.create_index(op.f("ix_jobs_key_id"), "jobs", ["key", "id"])
    op.create_index(op.f("ix_jobs_state_id"), "jobs", ["state", "id"])

    op.create_table(
        "links",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("exchange", sa.String(length=200), nullable=False),
        sa.Column("a_helpdesk", sa.String(length=200), nullable=False),
        sa.Column("a_id", sa.String(length=200), nullable=False),
        sa.Column("b_helpdesk", sa.String(length=200), nullable=False),
        sa.Column("b_id", sa.String(length=200), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("a_modified", TIMESTAMP, nullable=True),
        sa.Column("a_digest", sa.String(length=128), nullable=True),
        sa.Column("b_version", sa.String(length=200), nullable=True),
        sa.Column("b_digest", sa.String(length=128), nullable=True),
        sa.Column("data", JSON, nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.CheckConstraint(
            "state IN ('pending', 'active', 'closed')", name=op.f("ck_links_state_valid")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_links")),
        sa.UniqueConstraint("b_helpdesk", "b_id", name=op.f("uq_links_b_helpdesk_b_id")),
        sa.UniqueConstraint(
            "exchange", "a_helpdesk", "a_id", name=op.f("uq_links_exchange_a_helpdesk_a_id")
        ),
    )
    op.create_index(op.f("ix_links_a_helpdesk_a_id"), "links", ["a_helpdesk", "a_id"])

    op.create_table(
        "copied",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("link_id", sa.Integer(), nullable=False),
        sa.Column("direction", sa.String(length=2), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("source_key", sa.String(length=400), nullable=False),
        sa.Column("dest_key", sa.String(length=400), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.CheckConstraint("direction IN ('ab', 'ba')", name=op.f("ck_copied_direction_valid")),
        sa.CheckConstraint("kind IN ('comment', 'attachment')", name=op.f("ck_copied_kind_valid")),
        sa.ForeignKeyConstraint(
            ["link_id"], ["links.id"], name=op.f("fk_copied_link_id_links"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_copied")),
        sa.UniqueConstraint(
            "link_id",
            "direction",
            "kind",
            "source_key",
            name=op.f("uq_copied_link_id_direction_kind_source_key"),
        ),
    )

    op.create_table(
        "quarantine",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("inbox_id", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("released_at", TIMESTAMP, nullable=True),
        sa.ForeignKeyConstraint(
            ["inbox_id"], ["inbox.id"], name=op.f("fk_quarantine_inbox_id_inbox")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quarantine")),
    )
    op.create_index(op.f("ix_quarantine_inbox_id"), "quarantine", ["inbox_id"])

    op.create_table(
        "audit",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", TIMESTAMP, nullable=False),
        sa.Column("helpdesk", sa.String(length=200), nullable=True),
        sa.Column("ticket_id", sa.String(length=200), nullable=True),
        sa.Column("link_id", sa.Integer(), nullable=True),
        sa.Column("inbox_id", sa.Integer(), nullable=True),
        sa.Column("job_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("detail", JSON, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit")),
    )
    op.create_index(
        op.f("ix_audit_helpdesk_ticket_id_at"), "audit", ["helpdesk", "ticket_id", "at"]
    )
    op.create_index(op.f("ix_audit_link_id"), "audit", ["link_id"])

    op.create_table(
        "receiver_state",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("data", JSON, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_receiver_state")),
    )


def downgrade() -> None:
    for table in ("receiver_state", "audit", "quarantine", "copied", "links", "jobs", "inbox"):
        op.drop_table(table)
