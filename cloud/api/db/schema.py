"""The cloud database's tables (SQLAlchemy Core). The same tables on SQLite and PostgreSQL.

This module describes the schema the code expects; the Alembic migrations under cloud/api/migrations create it
(tests compare the two, so they cannot drift). Conventions:
- ids are random UUID strings (never sequential: an id says nothing about other tenants' rows);
- times are UTC epoch seconds in a double column (`Timestamp`), compared and ordered the same on both engines,
  and handed to the code as timezone-aware datetimes;
- every secret (token, link code) is stored as its SHA-256 only.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
    }
)


class Timestamp(sa.types.TypeDecorator[datetime]):
    """An aware UTC datetime stored as epoch seconds (double precision): exact round trips on both engines."""

    impl = sa.Double
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> float | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a Timestamp column")
        return value.timestamp()

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return datetime.fromtimestamp(float(value), UTC)


ID = sa.String(36)
HASH = sa.String(64)  # hex SHA-256

accounts = sa.Table(
    "accounts", metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("email", sa.String(254), nullable=False, unique=True),  # stored lower-cased
    sa.Column("password_hash", sa.String(255), nullable=False),
    sa.Column("plan", sa.String(32), nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("disabled_at", Timestamp),
)

api_tokens = sa.Table(
    "api_tokens", metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("account_id", ID, sa.ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("token_hash", HASH, nullable=False, unique=True),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("expires_at", Timestamp, nullable=False),
    sa.Column("revoked_at", Timestamp),
)

# One row per failed log-in, keyed "account:<email>" or "source:<address>" (and per link-code request, keyed
# "link:<address>"); counted over a sliding window. In the database (not in memory) so that N API processes behind
# a load balancer share one limit.
login_failures = sa.Table(
    "login_failures", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("key", sa.String(300), nullable=False),
    sa.Column("at", Timestamp, nullable=False),
    sa.Index("ix_login_failures_key_at", "key", "at"),
)

hubs = sa.Table(
    "hubs", metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("account_id", ID, sa.ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("token_hash", HASH, unique=True),  # NULL until the hub claims its token; NULL again once unlinked
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("claimed_at", Timestamp),
    sa.Column("unlinked_at", Timestamp),
    sa.Column("last_seen_at", Timestamp),
    # What the hub last reported of itself (PUT /hub/state): armed or not, and until when a timed disarm lasts.
    sa.Column("armed", sa.Boolean),
    sa.Column("disarmed_until", Timestamp),
    sa.Column("state_at", Timestamp),
)

hub_link_codes = sa.Table(
    "hub_link_codes", metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("code_hash", HASH, nullable=False, unique=True),
    sa.Column("poll_token_hash", HASH, nullable=False, unique=True),
    sa.Column("hub_name", sa.String(100)),  # the name the hub suggested
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("expires_at", Timestamp, nullable=False),
    sa.Column("hub_id", ID, sa.ForeignKey("hubs.id", ondelete="CASCADE")),  # set when a user enters the code
    sa.Column("claimed_at", Timestamp),  # set when the hub fetched its token (one time)
)

cameras = sa.Table(
    "cameras", metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("account_id", ID, sa.ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("hub_id", ID, sa.ForeignKey("hubs.id", ondelete="CASCADE"), nullable=False),
    sa.Column("hub_camera_id", sa.String(40), nullable=False),  # the hub's own id for it
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
    sa.Column("removed_at", Timestamp),  # no longer on the hub; kept for its events
    sa.Column("online", sa.Boolean),  # as the hub last reported it (NULL: never reported)
    sa.Column("online_at", Timestamp),  # when that report came
    sa.UniqueConstraint("hub_id", "hub_camera_id"),
)

# The user's analysis prompt for a camera or for a whole hub, kept for the worker. `scope` is "hub:<id>" or
# "camera:<id>" so one unique column says "one prompt per camera or hub" on both engines (NULLs are never equal
# in a UNIQUE constraint, so (hub_id, camera_id NULL) could not).
monitoring = sa.Table(
    "monitoring", metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("account_id", ID, sa.ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("hub_id", ID, sa.ForeignKey("hubs.id", ondelete="CASCADE"), nullable=False),
    sa.Column("camera_id", ID, sa.ForeignKey("cameras.id", ondelete="CASCADE")),
    sa.Column("scope", sa.String(80), nullable=False, unique=True),
    sa.Column("prompt", sa.Text, nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
)

events = sa.Table(
    "events", metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("account_id", ID, sa.ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    sa.Column("hub_id", ID, sa.ForeignKey("hubs.id", ondelete="CASCADE"), nullable=False),
    sa.Column("camera_id", ID, sa.ForeignKey("cameras.id", ondelete="CASCADE"), nullable=False),
    sa.Column("hub_event_id", sa.String(64), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("mime", sa.String(32), nullable=False),
    sa.Column("size_bytes", sa.BigInteger, nullable=False),
    sa.Column("md5", sa.String(24), nullable=False),  # base64 of the 16-byte digest, as the hub declared it
    sa.Column("declared_duration_s", sa.Double, nullable=False),
    sa.Column("probed_duration_s", sa.Double),
    sa.Column("started_at", Timestamp, nullable=False),
    sa.Column("ended_at", Timestamp, nullable=False),
    sa.Column("trigger", sa.String(32), nullable=False),
    sa.Column("motion", sa.JSON),
    sa.Column("blob_name", sa.String(200), nullable=False),
    sa.Column("snapshot_blob", sa.String(200)),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("finalized_at", Timestamp),
    sa.Column("credits", sa.Integer),
    # The queue message: a sender first claims the row (enqueue_claimed_at), then sets enqueued_at once the
    # queue accepted it. NULL enqueued_at on a queued event = the reconciler's work.
    sa.Column("enqueue_claimed_at", Timestamp),
    sa.Column("enqueued_at", Timestamp),
    sa.Column("processing_started_at", Timestamp),
    sa.Column("completed_at", Timestamp),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("reason", sa.String(300)),
    sa.Column("summary", sa.JSON),
    sa.UniqueConstraint("hub_id", "hub_event_id"),
    sa.Index("ix_events_account_started", "account_id", "started_at", "id"),
    sa.Index("ix_events_state_enqueued", "state", "enqueued_at"),
    sa.Index("ix_events_account_created", "account_id", "created_at"),
)

# Labels the worker found, one row each, so the timeline can filter by label with a plain indexed join on
# both engines (a JSON-contains query would differ between SQLite and PostgreSQL).
event_labels = sa.Table(
    "event_labels", metadata,
    sa.Column("event_id", ID, sa.ForeignKey("events.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("label", sa.String(64), primary_key=True),
    sa.Column("confidence", sa.Double),
    sa.Index("ix_event_labels_label", "label"),
)

# Credits: a ledger of signed amounts; the balance is derived (SUM). Every row has an idempotency key
# ("grant:<account>:<period>", "charge:<event>", "refund:<event>"), UNIQUE, so a retried grant/charge/refund
# inserts nothing. `period` (YYYY-MM, UTC) is the month the row counts against: the allowance is monthly.
credit_ledger = sa.Table(
    "credit_ledger", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("account_id", ID, sa.ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("amount", sa.Integer, nullable=False),
    sa.Column("period", sa.String(7), nullable=False),
    sa.Column("idempotency_key", sa.String(120), nullable=False, unique=True),
    sa.Column("event_id", ID),  # no foreign key: the ledger outlives retention's deletion of the event
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Index("ix_credit_ledger_account_period", "account_id", "period"),
)

# An event the hub reported the moment it started (before its clip exists), with the snapshot taken at the
# trigger: what the first alert shows. The clip's `events` row, when it comes, has the same (hub_id,
# hub_event_id). `late` when the report came long after the trigger (a hub that was offline).
event_starts = sa.Table(
    "event_starts", metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("account_id", ID, sa.ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    sa.Column("hub_id", ID, sa.ForeignKey("hubs.id", ondelete="CASCADE"), nullable=False),
    sa.Column("camera_id", ID, sa.ForeignKey("cameras.id", ondelete="CASCADE"), nullable=False),
    sa.Column("hub_event_id", sa.String(64), nullable=False),
    sa.Column("started_at", Timestamp, nullable=False),
    sa.Column("reported_at", Timestamp, nullable=False),
    sa.Column("trigger", sa.String(32), nullable=False),
    sa.Column("snapshot_blob", sa.String(200)),
    sa.Column("late", sa.Boolean, nullable=False),
    sa.UniqueConstraint("hub_id", "hub_event_id"),
    sa.Index("ix_event_starts_account_started", "account_id", "started_at"),
)

# Every change a user may see (an event started, an event moved state, a hub's state), written in the same
# transaction as the change itself (a transactional outbox), so a reader never sees a change that was rolled
# back and never misses one that committed. The live page and the Telegram notifier read it after their
# cursor; on PostgreSQL the writer also NOTIFYs so readers wake at once (cloud/api/changes.py).
changes = sa.Table(
    "changes", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("account_id", ID, nullable=False),  # no foreign key: a reader may see a change of a deleted account
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("subject_id", ID),  # the event, event start, hub or command the change is about
    sa.Column("at", Timestamp, nullable=False),
    sa.Column("data", sa.JSON),
    sa.Index("ix_changes_account_id", "account_id", "id"),
    sa.Index("ix_changes_at", "at"),
    # Ids are cursors (the notifier's, the page's): never reused, even after retention emptied the table (SQLite
    # without AUTOINCREMENT would start again at max(id) + 1 = 1; PostgreSQL's sequence never goes back).
    sqlite_autoincrement=True,
)

# Commands for a hub (arm, disarm, snapshot), e.g. from a Telegram button. The hub fetches them (long poll) and
# reports each result once; a command not fetched before expires_at is answered "hub offline" and never runs
# late (a disarm an hour after the press would surprise).
hub_commands = sa.Table(
    "hub_commands", metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("account_id", ID, sa.ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    sa.Column("hub_id", ID, sa.ForeignKey("hubs.id", ondelete="CASCADE"), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("args", sa.JSON, nullable=False),
    sa.Column("origin", sa.String(120)),  # who asked, e.g. "telegram:<chat id>" or "web"
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("expires_at", Timestamp, nullable=False),
    sa.Column("delivered_at", Timestamp),
    sa.Column("done_at", Timestamp),
    sa.Column("ok", sa.Boolean),
    sa.Column("message", sa.String(300)),
    sa.Column("result", sa.JSON),
    sa.Index("ix_hub_commands_hub_pending", "hub_id", "done_at", "created_at"),
)

# -- Telegram (cloud/notify, cloud/api/services/telegram.py) --------------------------------------------------

# A one-time link token for `/start <token>` (the deep link t.me/<bot>?start=<token>): stored hashed, used once.
# `chat_id` is the chat that used it, so the same chat sending it again is told "already linked", not "invalid".
telegram_links = sa.Table(
    "telegram_links", metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("account_id", ID, sa.ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("token_hash", HASH, nullable=False, unique=True),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("expires_at", Timestamp, nullable=False),
    sa.Column("used_at", Timestamp),
    sa.Column("chat_id", sa.BigInteger),
)

# A linked chat (a recipient). A chat belongs to one account (UNIQUE chat_id): its buttons act on that account's
# hubs only. `cameras` NULL = every camera of the account; otherwise the list of camera ids it is subscribed to.
telegram_chats = sa.Table(
    "telegram_chats", metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("account_id", ID, sa.ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("chat_id", sa.BigInteger, nullable=False, unique=True),
    sa.Column("title", sa.String(200)),
    sa.Column("linked_at", Timestamp, nullable=False),
    sa.Column("cameras", sa.JSON),
)

# A camera muted in one chat until `until` (per chat: the person who pressed "Mute" speaks for that chat only).
telegram_mutes = sa.Table(
    "telegram_mutes", metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("chat_row_id", ID, sa.ForeignKey("telegram_chats.id", ondelete="CASCADE"), nullable=False),
    sa.Column("camera_id", ID, sa.ForeignKey("cameras.id", ondelete="CASCADE"), nullable=False),
    sa.Column("until", Timestamp, nullable=False),
    sa.UniqueConstraint("chat_row_id", "camera_id"),
)

# Per account: "all" (every event, in stages) or "matches" (one message after the analysis, only on a match).
telegram_settings = sa.Table(
    "telegram_settings", metadata,
    sa.Column("account_id", ID, sa.ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("mode", sa.String(16), nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
)

# Every message the notifier sends is one row, keyed (hub, event key, chat, stage) UNIQUE, so a change delivered
# twice, or a restart, sends nothing twice. `event_key` is the hub's event id, or "cmd:<command id>" for the
# outcome of a hub command. State pending → sent | failed | skipped; `message_id` and `kind` of a sent row are
# what later stages reply to or edit; `text` is what it says (an edit that would say the same is skipped).
telegram_deliveries = sa.Table(
    "telegram_deliveries", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("account_id", ID, sa.ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    sa.Column("hub_id", ID, sa.ForeignKey("hubs.id", ondelete="CASCADE"), nullable=False),
    sa.Column("event_key", sa.String(80), nullable=False),
    sa.Column("chat_id", sa.BigInteger, nullable=False),
    sa.Column("stage", sa.String(16), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("message_id", sa.BigInteger),
    sa.Column("kind", sa.String(8)),
    sa.Column("text", sa.Text),
    sa.Column("payload", sa.JSON),
    sa.Column("tries", sa.Integer, nullable=False),
    sa.Column("next_at", Timestamp, nullable=False),
    sa.Column("last_error", sa.String(300)),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("sent_at", Timestamp),
    sa.UniqueConstraint("hub_id", "event_key", "chat_id", "stage"),
    sa.Index("ix_telegram_deliveries_state_next", "state", "next_at"),
)

# Updates from Telegram (webhook or long polling), one row per update_id: Telegram redelivers, the row makes it
# act once. `claimed_at` is set (conditionally) by the one notifier that acts on it.
telegram_updates = sa.Table(
    "telegram_updates", metadata,
    sa.Column("update_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("received_at", Timestamp, nullable=False),
    sa.Column("payload", sa.JSON, nullable=False),
    sa.Column("claimed_at", Timestamp),
    sa.Index("ix_telegram_updates_claimed", "claimed_at", "update_id"),
)

# The notifier's position in the `changes` table, saved in the transaction that planned each change's messages.
telegram_cursor = sa.Table(
    "telegram_cursor", metadata,
    sa.Column("name", sa.String(40), primary_key=True),
    sa.Column("change_id", sa.Integer, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
)


# Leases: one holder at a time for work that must not run twice at once (the Telegram notifier: its pacing is in
# memory, so a second instance would double the message rate and race the first for every row). The holder
# renews before `expires_at`; another process takes over once it has passed.
leases = sa.Table(
    "leases", metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("holder", sa.String(64), nullable=False),
    sa.Column("expires_at", Timestamp, nullable=False),
)
