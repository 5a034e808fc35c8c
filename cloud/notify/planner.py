"""From a change to the rows to send: which chats get which stage of which event (or a command's outcome).

Runs inside the transaction that also moves the notifier's cursor past the change, so a change is planned once
even across restarts; and the rows are UNIQUE per (hub, event, chat, stage), so planning twice adds nothing.
What each message says is decided when it is sent (sender.py), from the event as it is then.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cloud.api.changes import Change
from cloud.api.db.schema import events, hub_commands
from cloud.api.services.telegram import alert_mode
from cloud.notify import store, texts
from cloud.notify.store import PENDING, SENT, SKIPPED

EVENT_STARTED, EVENT_STATE, COMMAND_DONE = "event.started", "event.state", "command.done"
FINAL_STATES = ("done", "failed", "rejected")


def plan(conn: Connection, change: Change, now: datetime) -> int:
    """Rows added for this change (0 for a change that concerns no chat, or one planned before)."""
    if change.kind == EVENT_STARTED:
        return _event_started(conn, change, now)
    if change.kind == EVENT_STATE and not change.data.get("reviewed"):
        return _event_state(conn, change, now)
    if change.kind == COMMAND_DONE:
        return _command_done(conn, change, now)
    return 0


def _for_recipients(conn: Connection, change: Change, stage: str, now: datetime) -> int:
    d = change.data
    hub_id, key, camera_id = d.get("hub_id"), d.get("hub_event_id"), d.get("camera_id")
    if not hub_id or not key:
        return 0
    added = 0
    for r in store.recipients(conn, change.account_id, camera_id, now):
        added += store.add(conn, account_id=change.account_id, hub_id=hub_id, event_key=key, chat_id=r.chat_id,
                           stage=stage, now=now, state=SKIPPED if r.muted else PENDING,
                           error="camera muted in this chat" if r.muted else None)
    return added


def _event_started(conn: Connection, change: Change, now: datetime) -> int:
    if alert_mode(conn, change.account_id) != "all" or change.data.get("snapshot_added"):
        return 0  # a picture that came late: the page shows it; the alert already went (as text) or waits for it
    return _for_recipients(conn, change, "started", now)


def _event_state(conn: Connection, change: Change, now: datetime) -> int:
    state = change.data.get("state")
    mode = alert_mode(conn, change.account_id)
    if mode == "matches":
        if state != "done":
            return 0
        summary = conn.execute(sa.select(events.c.summary).where(events.c.id == change.subject_id)).scalar()
        if not (summary or {}).get("notify"):
            return 0  # the analysis does not match the prompt: no message at all in this mode
        return _for_recipients(conn, change, "match", now)
    if state == "queued":
        return _for_recipients(conn, change, "clip", now)
    if state not in FINAL_STATES:
        return 0
    added = _for_recipients(conn, change, "summary", now)
    # A chat that got the photo and muted the camera (or unsubscribed) since still gets its caption finished.
    d = change.data
    for stage in ("started", "clip"):
        for chat_id in store.chats_with(conn, d["hub_id"], d["hub_event_id"], stage, (PENDING, SENT)):
            linked = store.chat_account(conn, chat_id)
            if linked is None or linked[0] != change.account_id:
                continue  # unlinked since (or now another account's chat): nothing more goes there
            added += store.add(conn, account_id=change.account_id, hub_id=d["hub_id"], event_key=d["hub_event_id"],
                               chat_id=chat_id, stage="summary", now=now)
    return added


def _origin_chat(origin: str | None) -> tuple[int, int | None] | None:
    """'telegram:<chat id>[:<message id>]' -> (chat, message to reply to)."""
    parts = (origin or "").split(":")
    if len(parts) not in (2, 3) or parts[0] != "telegram":
        return None
    try:
        return int(parts[1]), (int(parts[2]) if len(parts) == 3 and parts[2] else None)
    except ValueError:
        return None


def _outcome(conn: Connection, account_id: str, command_id: str, hub_id: str, origin: str | None, text: str,
             now: datetime, snapshot_blob: str | None = None) -> int:
    target = _origin_chat(origin)
    if target is None:
        return 0
    chat_id, reply_to = target
    linked = store.chat_account(conn, chat_id)
    if linked is None or linked[0] != account_id:
        return 0  # unlinked since, or never this account's chat
    return store.add(conn, account_id=account_id, hub_id=hub_id, event_key=f"cmd:{command_id}", chat_id=chat_id,
                     stage="outcome", now=now,
                     payload={"text": text, "reply_to": reply_to, "snapshot_blob": snapshot_blob})


def _command_done(conn: Connection, change: Change, now: datetime) -> int:
    cmd = conn.execute(sa.select(hub_commands).where(hub_commands.c.id == change.subject_id)).first()
    if cmd is None:
        return 0
    d = change.data
    ok = d.get("ok", cmd.ok)
    if d.get("expired") or (cmd.result or {}).get("expired"):
        # Closed by HubCommands.expire_due: never fetched (offline) or fetched and never answered.
        text = texts.HUB_OFFLINE if cmd.delivered_at is None else texts.HUB_SILENT
    else:
        text = texts.outcome_text(str(d.get("kind") or cmd.kind), ok, d.get("message") or cmd.message, cmd.args)
    snapshot = d.get("snapshot_blob") or ((cmd.result or {}).get("snapshot_blob") if cmd.result else None)
    return _outcome(conn, cmd.account_id, cmd.id, cmd.hub_id, d.get("origin") or cmd.origin, text, now,
                    snapshot if ok else None)
