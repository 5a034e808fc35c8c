"""What the bot says: captions for each stage, command answers, buttons and their short callback data.

Callback data is at most 64 bytes: "d:<hub id>:<seconds>" (disarm the hub for that long) and
"m:<camera id>:<seconds>" (mute the camera in this chat). Ids are UUIDs, so both fit with room to spare.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

CAPTION_MAX = 1024  # Telegram's limit for a photo or video caption
TEXT_MAX = 4096
ONE_HOUR_S = 3600

HELP = ("ping-watch alerts.\n"
        "/status – hubs and cameras\n"
        "/arm – arm the hub\n"
        "/disarm [1h|30m] – disarm (for a while)\n"
        "/snapshot [camera] – a picture now\n"
        "/events – the last 5 events\n"
        "/mute [camera] [1h] – no alerts from a camera in this chat\n"
        "/unlink – stop alerts in this chat\n"
        "/help – this text")
NOT_LINKED = ("This chat is not linked to a ping-watch account. Open the cloud page, choose “Link Telegram” "
              "and follow the link (or scan its QR code).")
LINKED = "✅ Linked: alerts from your ping-watch cameras will come to this chat.\n\n" + HELP
ALREADY_LINKED = "This chat is already linked. /help lists what I can do."
LINK_EXPIRED = "This link has expired. Make a new one on the cloud page (links last 10 minutes)."
LINK_INVALID = "This link is not valid (it may have been used already). Make a new one on the cloud page."
LINK_OTHER = "This chat is linked to another ping-watch account. Send /unlink first, then use the link again."
UNLINKED = "🔕 Unlinked: no more alerts in this chat. Link again from the cloud page."
SENT_TO_HUB = "Sent to the hub…"
TOO_LATE = "That came while I was offline, so I did nothing. Send it again if you still want it."
HUB_OFFLINE = "The hub is offline; nothing changed."
HUB_SILENT = "The hub took the command but did not answer; check /status."

_DURATION = re.compile(r"^(\d{1,4})\s*(s|m|min|h|d)?$")
_UNITS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, None: 60}


def parse_duration(text: str) -> int | None:
    """'1h', '30m', '2d', '45' (minutes) -> seconds; None when it is not a duration, or outside 1 min .. 7 days
    (the range the API's own disarm accepts)."""
    m = _DURATION.match(text.strip().lower())
    if not m:
        return None
    seconds = int(m.group(1)) * _UNITS[m.group(2)]
    return seconds if 60 <= seconds <= 7 * 86400 else None


def duration_text(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{int(seconds // 3600)} h"
    if seconds >= 60:
        return f"{round(seconds / 60)} min"
    return f"{int(seconds)} s"


def clock(when: datetime, tz: str) -> str:
    return when.astimezone(ZoneInfo(tz)).strftime("%H:%M:%S")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def head(camera: str, when: datetime, tz: str, trigger: str | None) -> str:
    line = f"📷 {camera} · {clock(when, tz)}"
    return line + (f" · {trigger}" if trigger else "")


def late_note(started: datetime, reported: datetime) -> str:
    minutes = max(1, round((reported - started).total_seconds() / 60))
    return f"⏱ late: the hub reported this {minutes} min after it happened"


def started_caption(camera: str, when: datetime, tz: str, trigger: str | None, late: str | None) -> str:
    lines = [head(camera, when, tz, trigger), "🔎 analysing…"]
    if late:
        lines.append(late)
    return "\n".join(lines)


def labels_of(summary: dict[str, Any] | None, labels: list[str]) -> list[str]:
    if labels:
        return labels
    found = (summary or {}).get("labels") or []
    return [str(x.get("label")) for x in found if isinstance(x, dict) and x.get("label")]


def final_caption(camera: str, when: datetime, tz: str, trigger: str | None, state: str,
                  summary: dict[str, Any] | None, labels: list[str], reason: str | None, late: str | None) -> str:
    """The caption once the analysis is over: label and summary, or what went wrong."""
    lines = [head(camera, when, tz, trigger)]
    if state == "done":
        names = labels_of(summary, labels)
        lines.append("🏷 " + (", ".join(names) if names else "nothing recognised"))
        text = (summary or {}).get("text")
        if text:
            lines.append(str(text))
    elif state == "failed":
        lines.append("⚠️ The analysis failed" + (f": {reason}" if reason else "") + ". The clip is on the page.")
    elif state == "rejected":
        lines.append("⛔ The clip was rejected" + (f": {reason}" if reason else "") + ".")
    else:
        lines.append("🔎 analysing…")
    if late:
        lines.append(late)
    return _cut("\n".join(lines), CAPTION_MAX)


def match_caption(camera: str, when: datetime, tz: str, trigger: str | None, summary: dict[str, Any] | None,
                  labels: list[str], late: str | None) -> str:
    """Mode "matches": the one message, with the worker's reason as the why."""
    lines = [f"🔔 {head(camera, when, tz, trigger)}"]
    names = labels_of(summary, labels)
    if names:
        lines.append("🏷 " + ", ".join(names))
    text = (summary or {}).get("text")
    if text:
        lines.append(str(text))
    reason = (summary or {}).get("reason")
    lines.append(f"Why: {reason}" if reason else "Why: it matches your prompt")
    if late:
        lines.append(late)
    return _cut("\n".join(lines), CAPTION_MAX)


def clip_caption(camera: str, when: datetime, tz: str) -> str:
    return f"🎞 {camera} · {clock(when, tz)}"


def clip_elsewhere(camera: str, why: str, link: str | None) -> str:
    where = f"Watch it here: {link}" if link else "Watch it on the cloud page."
    return f"🎞 {camera}: {why}. {where}"


def timeline_url(public_url: str | None, event_id: str | None) -> str | None:
    if not public_url:
        return None
    base = public_url.rstrip("/")
    return f"{base}/#event={event_id}" if event_id else f"{base}/"


def alert_buttons(hub_id: str, camera_id: str, url: str | None) -> list[list[dict[str, str]]]:
    rows = [[{"text": "💤 Disarm 1 h", "callback_data": f"d:{hub_id}:{ONE_HOUR_S}"},
             {"text": "🔕 Mute this camera 1 h", "callback_data": f"m:{camera_id}:{ONE_HOUR_S}"}]]
    if url:
        rows.append([{"text": "Open in timeline", "url": url}])
    return rows


def parse_button(data: str | None) -> tuple[str, str, int] | None:
    """("disarm"|"mute", id, seconds), or None for anything else (a forged or stale button)."""
    parts = (data or "").split(":")
    if len(parts) != 3 or parts[0] not in ("d", "m") or not re.fullmatch(r"[0-9a-f-]{36}", parts[1]):
        return None
    if not parts[2].isdigit() or not 0 < int(parts[2]) <= 7 * 86400:
        return None
    return ("disarm" if parts[0] == "d" else "mute"), parts[1], int(parts[2])


def outcome_text(kind: str, ok: bool | None, message: str | None, args: dict[str, Any] | None) -> str:
    what = {"arm": "Arm", "disarm": "Disarm", "snapshot": "Snapshot"}.get(kind, kind)
    for_s = (args or {}).get("for_s")
    if ok:
        if kind == "disarm" and for_s:
            return f"💤 Disarmed for {duration_text(float(for_s))}." + (f" {message}" if message else "")
        done = {"arm": "🛡 Armed.", "disarm": "💤 Disarmed.", "snapshot": "📷 Snapshot."}.get(kind, f"{what}: done.")
        return done + (f" {message}" if message else "")
    return f"⚠️ {what} failed" + (f": {message}" if message else ".")
