"""Telegram alerts from the cloud: link tokens, linked chats with per-camera subscriptions and mutes, the
per-account alert mode, delivery attempt rows, received updates (de-duplicated by update_id), and the notifier's
cursor in `changes`.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

ID = sa.String(36)
HASH = sa.String(64)
TS = sa.Double  # cloud.api.db.schema.Timestamp stores epoch seconds in a double column


def _account_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=f"fk_{table}_account_id_accounts",
                                   ondelete="CASCADE")


def upgrade() -> None:
    op.create_table(
        "telegram_links",
        sa.Column("id", ID, nullable=False),
        sa.Column("account_id", ID, nullable=False),
        sa.Column("token_hash", HASH, nullable=False),
        sa.Column("created_at", TS(), nullable=False),
        sa.Column("expires_at", TS(), nullable=False),
        sa.Column("used_at", TS()),
        sa.Column("chat_id", sa.BigInteger),
        sa.PrimaryKeyConstraint("id", name="pk_telegram_links"),
        _account_fk("telegram_links"),
        sa.UniqueConstraint("token_hash", name="uq_telegram_links_token_hash"),
    )
    op.create_index("ix_telegram_links_account_id", "telegram_links", ["account_id"])
    op.create_table(
        "telegram_chats",
        sa.Column("id", ID, nullable=False),
        sa.Column("account_id", ID, nullable=False),
        sa.Column("chat_id", sa.BigInteger, nullable=False),
        sa.Column("title", sa.String(200)),
        sa.Column("linked_at", TS(), nullable=False),
        sa.Column("cameras", sa.JSON),
        sa.PrimaryKeyConstraint("id", name="pk_telegram_chats"),
        _account_fk("telegram_chats"),
        sa.UniqueConstraint("chat_id", name="uq_telegram_chats_chat_id"),
    )
    op.create_index("ix_telegram_chats_account_id", "telegram_chats", ["account_id"])
    op.create_table(
        "telegram_mutes",
        sa.Column("id", ID, nullable=False),
        sa.Column("chat_row_id", ID, nullable=False),
        sa.Column("camera_id", ID, nullable=False),
        sa.Column("until", TS(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_telegram_mutes"),
        sa.ForeignKeyConstraint(["chat_row_id"], ["telegram_chats.id"],
                                name="fk_telegram_mutes_chat_row_id_telegram_chats", ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["camera_id"], ["cameras.id"], name="fk_telegram_mutes_camera_id_cameras",
                                ondelete="CASCADE"),
        sa.UniqueConstraint("chat_row_id", "camera_id", name="uq_telegram_mutes_chat_row_id_camera_id"),
    )
    op.create_table(
        "telegram_settings",
        sa.Column("account_id", ID, nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("updated_at", TS(), nullable=False),
        sa.PrimaryKeyConstraint("account_id", name="pk_telegram_settings"),
        _account_fk("telegram_settings"),
    )
    op.create_table(
        "telegram_deliveries",
        sa.Column("id", sa.Integer, nullable=False, autoincrement=True),
        sa.Column("account_id", ID, nullable=False),
        sa.Column("hub_id", ID, nullable=False),
        sa.Column("event_key", sa.String(80), nullable=False),
        sa.Column("chat_id", sa.BigInteger, nullable=False),
        sa.Column("stage", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("message_id", sa.BigInteger),
        sa.Column("kind", sa.String(8)),
        sa.Column("text", sa.Text),
        sa.Column("payload", sa.JSON),
        sa.Column("tries", sa.Integer, nullable=False),
        sa.Column("next_at", TS(), nullable=False),
        sa.Column("last_error", sa.String(300)),
        sa.Column("created_at", TS(), nullable=False),
        sa.Column("sent_at", TS()),
        sa.PrimaryKeyConstraint("id", name="pk_telegram_deliveries"),
        _account_fk("telegram_deliveries"),
        sa.ForeignKeyConstraint(["hub_id"], ["hubs.id"], name="fk_telegram_deliveries_hub_id_hubs",
                                ondelete="CASCADE"),
        sa.UniqueConstraint("hub_id", "event_key", "chat_id", "stage",
                            name="uq_telegram_deliveries_hub_id_event_key_chat_id_stage"),
    )
    op.create_index("ix_telegram_deliveries_state_next", "telegram_deliveries", ["state", "next_at"])
    op.create_table(
        "telegram_updates",
        sa.Column("update_id", sa.BigInteger, nullable=False, autoincrement=False),
        sa.Column("received_at", TS(), nullable=False),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.Column("claimed_at", TS()),
        sa.PrimaryKeyConstraint("update_id", name="pk_telegram_updates"),
    )
    op.create_index("ix_telegram_updates_claimed", "telegram_updates", ["claimed_at", "update_id"])
    op.create_table(
        "telegram_cursor",
        sa.Column("name", sa.String(40), nullable=False),
        sa.Column("change_id", sa.Integer, nullable=False),
        sa.Column("updated_at", TS(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_telegram_cursor"),
    )


def downgrade() -> None:
    for table in ("telegram_cursor", "telegram_updates", "telegram_deliveries", "telegram_settings",
                  "telegram_mutes", "telegram_chats", "telegram_links"):
        op.drop_table(table)
