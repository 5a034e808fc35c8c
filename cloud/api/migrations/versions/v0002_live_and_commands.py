"""Live changes and the hub's command channel: the `changes` outbox (live page, notifier), `event_starts` (the
alert before the clip), `hub_commands` (Telegram buttons act on the hub), and the state a hub reports of itself
(armed, cameras online).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

ID = sa.String(36)
TS = sa.Double  # cloud.api.db.schema.Timestamp stores epoch seconds in a double column


def upgrade() -> None:
    # Nullable columns: a plain ADD COLUMN on both engines (no table rebuild on SQLite).
    op.add_column("hubs", sa.Column("armed", sa.Boolean))
    op.add_column("hubs", sa.Column("disarmed_until", TS()))
    op.add_column("hubs", sa.Column("state_at", TS()))
    op.add_column("cameras", sa.Column("online", sa.Boolean))
    op.add_column("cameras", sa.Column("online_at", TS()))
    op.create_table(
        "event_starts",
        sa.Column("id", ID, nullable=False),
        sa.Column("account_id", ID, nullable=False),
        sa.Column("hub_id", ID, nullable=False),
        sa.Column("camera_id", ID, nullable=False),
        sa.Column("hub_event_id", sa.String(64), nullable=False),
        sa.Column("started_at", TS(), nullable=False),
        sa.Column("reported_at", TS(), nullable=False),
        sa.Column("trigger", sa.String(32), nullable=False),
        sa.Column("snapshot_blob", sa.String(200)),
        sa.Column("late", sa.Boolean, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_event_starts"),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name="fk_event_starts_account_id_accounts",
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["hub_id"], ["hubs.id"], name="fk_event_starts_hub_id_hubs", ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["camera_id"], ["cameras.id"], name="fk_event_starts_camera_id_cameras",
                                ondelete="CASCADE"),
        sa.UniqueConstraint("hub_id", "hub_event_id", name="uq_event_starts_hub_id_hub_event_id"),
    )
    op.create_index("ix_event_starts_account_started", "event_starts", ["account_id", "started_at"])
    op.create_table(
        "changes",
        sa.Column("id", sa.Integer, nullable=False, autoincrement=True),
        sa.Column("account_id", ID, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("subject_id", ID),
        sa.Column("at", TS(), nullable=False),
        sa.Column("data", sa.JSON),
        sa.PrimaryKeyConstraint("id", name="pk_changes"),
    )
    op.create_index("ix_changes_account_id", "changes", ["account_id", "id"])
    op.create_index("ix_changes_at", "changes", ["at"])
    op.create_table(
        "hub_commands",
        sa.Column("id", ID, nullable=False),
        sa.Column("account_id", ID, nullable=False),
        sa.Column("hub_id", ID, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("args", sa.JSON, nullable=False),
        sa.Column("origin", sa.String(120)),
        sa.Column("created_at", TS(), nullable=False),
        sa.Column("expires_at", TS(), nullable=False),
        sa.Column("delivered_at", TS()),
        sa.Column("done_at", TS()),
        sa.Column("ok", sa.Boolean),
        sa.Column("message", sa.String(300)),
        sa.Column("result", sa.JSON),
        sa.PrimaryKeyConstraint("id", name="pk_hub_commands"),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name="fk_hub_commands_account_id_accounts",
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["hub_id"], ["hubs.id"], name="fk_hub_commands_hub_id_hubs", ondelete="CASCADE"),
    )
    op.create_index("ix_hub_commands_hub_pending", "hub_commands", ["hub_id", "done_at", "created_at"])


def downgrade() -> None:
    for table in ("hub_commands", "changes", "event_starts"):
        op.drop_table(table)
    with op.batch_alter_table("cameras") as batch:  # SQLite drops columns by rebuilding the table
        batch.drop_column("online_at")
        batch.drop_column("online")
    with op.batch_alter_table("hubs") as batch:
        batch.drop_column("state_at")
        batch.drop_column("disarmed_until")
        batch.drop_column("armed")
