"""Leases (one Telegram notifier at a time), and change ids that are never reused on SQLite.

On SQLite an INTEGER PRIMARY KEY without AUTOINCREMENT takes max(id) + 1, so once retention emptied `changes`
the ids would start again from 1 and every saved cursor (the notifier's, a page's) would skip the new changes.
The table is rebuilt with AUTOINCREMENT (its rows kept); PostgreSQL's sequence never goes back and is untouched.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TS = sa.Double  # cloud.api.db.schema.Timestamp stores epoch seconds in a double column


def upgrade() -> None:
    op.create_table(
        "leases",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("holder", sa.String(64), nullable=False),
        sa.Column("expires_at", TS(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_leases"),
    )
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table("changes", recreate="always",
                                  table_kwargs={"sqlite_autoincrement": True}) as batch:
            batch.alter_column("id", existing_type=sa.Integer, autoincrement=True)


def downgrade() -> None:
    op.drop_table("leases")
