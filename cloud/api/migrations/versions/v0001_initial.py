"""The first cloud schema: accounts, tokens, hubs and link codes, cameras, monitoring prompts, events, labels,
the credit ledger and log-in failures.

Revision ID: 0001
Revises:
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ID = sa.String(36)
HASH = sa.String(64)
TS = sa.Double  # cloud.api.db.schema.Timestamp stores epoch seconds in a double column


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", ID, nullable=False),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("plan", sa.String(32), nullable=False),
        sa.Column("created_at", TS(), nullable=False),
        sa.Column("disabled_at", TS()),
        sa.PrimaryKeyConstraint("id", name="pk_accounts"),
        sa.UniqueConstraint("email", name="uq_accounts_email"),
    )
    op.create_table(
        "api_tokens",
        sa.Column("id", ID, nullable=False),
        sa.Column("account_id", ID, nullable=False),
        sa.Column("token_hash", HASH, nullable=False),
        sa.Column("created_at", TS(), nullable=False),
        sa.Column("expires_at", TS(), nullable=False),
        sa.Column("revoked_at", TS()),
        sa.PrimaryKeyConstraint("id", name="pk_api_tokens"),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name="fk_api_tokens_account_id_accounts",
                                ondelete="CASCADE"),
        sa.UniqueConstraint("token_hash", name="uq_api_tokens_token_hash"),
    )
    op.create_index("ix_api_tokens_account_id", "api_tokens", ["account_id"])
    op.create_table(
        "login_failures",
        sa.Column("id", sa.Integer, nullable=False, autoincrement=True),
        sa.Column("key", sa.String(300), nullable=False),
        sa.Column("at", TS(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_login_failures"),
    )
    op.create_index("ix_login_failures_key_at", "login_failures", ["key", "at"])
    op.create_table(
        "hubs",
        sa.Column("id", ID, nullable=False),
        sa.Column("account_id", ID, nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("token_hash", HASH),
        sa.Column("created_at", TS(), nullable=False),
        sa.Column("claimed_at", TS()),
        sa.Column("unlinked_at", TS()),
        sa.Column("last_seen_at", TS()),
        sa.PrimaryKeyConstraint("id", name="pk_hubs"),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name="fk_hubs_account_id_accounts",
                                ondelete="CASCADE"),
        sa.UniqueConstraint("token_hash", name="uq_hubs_token_hash"),
    )
    op.create_index("ix_hubs_account_id", "hubs", ["account_id"])
    op.create_table(
        "hub_link_codes",
        sa.Column("id", ID, nullable=False),
        sa.Column("code_hash", HASH, nullable=False),
        sa.Column("poll_token_hash", HASH, nullable=False),
        sa.Column("hub_name", sa.String(100)),
        sa.Column("created_at", TS(), nullable=False),
        sa.Column("expires_at", TS(), nullable=False),
        sa.Column("hub_id", ID),
        sa.Column("claimed_at", TS()),
        sa.PrimaryKeyConstraint("id", name="pk_hub_link_codes"),
        sa.ForeignKeyConstraint(["hub_id"], ["hubs.id"], name="fk_hub_link_codes_hub_id_hubs", ondelete="CASCADE"),
        sa.UniqueConstraint("code_hash", name="uq_hub_link_codes_code_hash"),
        sa.UniqueConstraint("poll_token_hash", name="uq_hub_link_codes_poll_token_hash"),
    )
    op.create_table(
        "cameras",
        sa.Column("id", ID, nullable=False),
        sa.Column("account_id", ID, nullable=False),
        sa.Column("hub_id", ID, nullable=False),
        sa.Column("hub_camera_id", sa.String(40), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("created_at", TS(), nullable=False),
        sa.Column("updated_at", TS(), nullable=False),
        sa.Column("removed_at", TS()),
        sa.PrimaryKeyConstraint("id", name="pk_cameras"),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name="fk_cameras_account_id_accounts",
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["hub_id"], ["hubs.id"], name="fk_cameras_hub_id_hubs", ondelete="CASCADE"),
        sa.UniqueConstraint("hub_id", "hub_camera_id", name="uq_cameras_hub_id_hub_camera_id"),
    )
    op.create_index("ix_cameras_account_id", "cameras", ["account_id"])
    op.create_table(
        "monitoring",
        sa.Column("id", ID, nullable=False),
        sa.Column("account_id", ID, nullable=False),
        sa.Column("hub_id", ID, nullable=False),
        sa.Column("camera_id", ID),
        sa.Column("scope", sa.String(80), nullable=False),
        sa.Column("prompt", sa.Text, nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("updated_at", TS(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_monitoring"),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name="fk_monitoring_account_id_accounts",
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["hub_id"], ["hubs.id"], name="fk_monitoring_hub_id_hubs", ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["camera_id"], ["cameras.id"], name="fk_monitoring_camera_id_cameras",
                                ondelete="CASCADE"),
        sa.UniqueConstraint("scope", name="uq_monitoring_scope"),
    )
    op.create_index("ix_monitoring_account_id", "monitoring", ["account_id"])
    op.create_table(
        "events",
        sa.Column("id", ID, nullable=False),
        sa.Column("account_id", ID, nullable=False),
        sa.Column("hub_id", ID, nullable=False),
        sa.Column("camera_id", ID, nullable=False),
        sa.Column("hub_event_id", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("mime", sa.String(32), nullable=False),
        sa.Column("size_bytes", sa.BigInteger, nullable=False),
        sa.Column("md5", sa.String(24), nullable=False),
        sa.Column("declared_duration_s", sa.Double, nullable=False),
        sa.Column("probed_duration_s", sa.Double),
        sa.Column("started_at", TS(), nullable=False),
        sa.Column("ended_at", TS(), nullable=False),
        sa.Column("trigger", sa.String(32), nullable=False),
        sa.Column("motion", sa.JSON),
        sa.Column("blob_name", sa.String(200), nullable=False),
        sa.Column("snapshot_blob", sa.String(200)),
        sa.Column("created_at", TS(), nullable=False),
        sa.Column("finalized_at", TS()),
        sa.Column("credits", sa.Integer),
        sa.Column("enqueue_claimed_at", TS()),
        sa.Column("enqueued_at", TS()),
        sa.Column("processing_started_at", TS()),
        sa.Column("completed_at", TS()),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("reason", sa.String(300)),
        sa.Column("summary", sa.JSON),
        sa.PrimaryKeyConstraint("id", name="pk_events"),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name="fk_events_account_id_accounts",
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["hub_id"], ["hubs.id"], name="fk_events_hub_id_hubs", ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["camera_id"], ["cameras.id"], name="fk_events_camera_id_cameras",
                                ondelete="CASCADE"),
        sa.UniqueConstraint("hub_id", "hub_event_id", name="uq_events_hub_id_hub_event_id"),
    )
    op.create_index("ix_events_account_started", "events", ["account_id", "started_at", "id"])
    op.create_index("ix_events_state_enqueued", "events", ["state", "enqueued_at"])
    op.create_index("ix_events_account_created", "events", ["account_id", "created_at"])
    op.create_table(
        "event_labels",
        sa.Column("event_id", ID, nullable=False),
        sa.Column("label", sa.String(64), nullable=False),
        sa.Column("confidence", sa.Double),
        sa.PrimaryKeyConstraint("event_id", "label", name="pk_event_labels"),
        sa.ForeignKeyConstraint(["event_id"], ["events.id"], name="fk_event_labels_event_id_events",
                                ondelete="CASCADE"),
    )
    op.create_index("ix_event_labels_label", "event_labels", ["label"])
    op.create_table(
        "credit_ledger",
        sa.Column("id", sa.Integer, nullable=False, autoincrement=True),
        sa.Column("account_id", ID, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("amount", sa.Integer, nullable=False),
        sa.Column("period", sa.String(7), nullable=False),
        sa.Column("idempotency_key", sa.String(120), nullable=False),
        sa.Column("event_id", ID),
        sa.Column("created_at", TS(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_credit_ledger"),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name="fk_credit_ledger_account_id_accounts",
                                ondelete="CASCADE"),
        sa.UniqueConstraint("idempotency_key", name="uq_credit_ledger_idempotency_key"),
    )
    op.create_index("ix_credit_ledger_account_period", "credit_ledger", ["account_id", "period"])


def downgrade() -> None:
    for table in ("credit_ledger", "event_labels", "events", "monitoring", "cameras", "hub_link_codes", "hubs",
                  "login_failures", "api_tokens", "accounts"):
        op.drop_table(table)
