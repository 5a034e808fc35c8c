"""What the hub's bot says: captions of the staged alert, command answers, button data. Plain functions of
plain data (no Telegram library), so wording and parsing are tested without a server."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from hub import durations

ONE_HOUR_S = 3600
MAX_CAPTION = 1024  # Telegram's limit for a photo or video caption
MAX_TEXT = 4096

NOT_LINKED = ("This chat is not linked to a ping-watch hub. On the hub run 'pingwatch telegram link' and open "
              "the link it shows (or scan its QR code) from this chat.")
LINK_INVALID = ("That link is not valid (already used, or older than 10 minutes). On the hub run "
                "'pingwatch telegram link' for a new one.")
LINKED = "✅ Linked: this chat now gets this hub's alerts. /help lists what you can ask."
ALREADY_LINKED = "This chat was linked already; it keeps getting alerts."
HELP = ("ping-watch hub commands:\n"
        "/status – armed or not, cameras, alerts waiting\n"
        "/arm [camera] – arm the hub (or one camera)\n"
        "/disarm [camera] [1h] – disarm, for a while if you give a time (30m, 2h, 1d)\n"
        "/snapshot [camera] – a picture now\n"
        "/events – the latest events\n"
        "/mute [camera] [1h] – no alerts from a camera in this chat for a while\n"
        "/unmute [camera] – alerts again")
# Shown in Telegram's command menu (setMyCommands): name, description.
COMMANDS: tuple[tuple[str, str], ...] = (
    ("status", "Armed or not, cameras, alerts waiting"),
    ("arm", "Arm the hub or a camera"),
    ("disarm", "Disarm, optionally for a while: /disarm 1h"),
    ("snapshot", "A picture now: /snapshot [camera]"),
    ("events", "The latest events"),
    ("mute", "No alerts from a camera here: /mute porch 1h"),
    ("unmute", "Alerts again from a camera"),
    ("help", "What the bot understands"),
)

MAX_FOR_S = 7 * 86400


def parse_duration(text: str) -> float | None:
    """'1h', '30m', '90s', '2d', '45' (a bare number is minutes) → seconds; None when it is not a duration (or is
    over a week)."""
    seconds = durations.parse_duration(text, bare_unit_s=60)
    return seconds if seconds is not None and 0 < seconds <= MAX_FOR_S else None


def clock(ts: float, now: float | None = None) -> str:
    """21:03:12 today, 'Mon 3 Jun 21:03' on other days (local time: what the people at home read)."""
    now = time.time() if now is None else now
    lt = time.localtime(ts)
    if time.localtime(now)[:3] == lt[:3]:
        return time.strftime("%H:%M:%S", lt)
    return time.strftime("%a %d %b %H:%M", lt)


def until_text(until: float | None, now: float | None = None) -> str:
    return f"until {clock(until, now)}" if until else "until you change it"


def _triggers(triggers: Iterable[str] | None) -> str:
    names = [t for t in (triggers or []) if t]
    return " + ".join(names) if names else "motion"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    s = round(seconds)
    return f"{s} s" if s < 120 else f"{s // 60} min {s % 60:02d} s"


def late_note(created_at: float, now: float | None = None) -> str:
    return f"⏰ Late: this alert is from {clock(created_at, now)}; the hub could not reach Telegram until now."


def started_caption(camera: str, start: float, triggers: Iterable[str] | None, late: str | None = None) -> str:
    text = f"🚨 {camera} · {_triggers(triggers)} · {clock(start)}\nrecording…"
    return _cap(f"{late}\n{text}" if late else text)


def ended_caption(camera: str, event: dict[str, Any], late: str | None = None) -> str:
    start = float(event.get("start") or 0)
    end = event.get("end")
    length = _duration(float(end) - start) if end else ""
    head = f"🚨 {camera} · {_triggers(event.get('triggers'))} · {clock(start)}" + (f" · {length}" if length else "")
    if event.get("clip_path"):
        tail = "recorded: the clip is below"
    else:
        tail = "ended; no clip was recorded"
    text = f"{head}\n{tail}"
    return _cap(f"{late}\n{text}" if late else text)


def clip_caption(camera: str, event: dict[str, Any]) -> str:
    start = float(event.get("start") or 0)
    length = _duration(event.get("clip_duration_s"))
    return _cap(f"🎞 {camera} · {clock(start)}" + (f" · {length}" if length else ""))


def clip_elsewhere(camera: str, event: dict[str, Any], why: str, hub_url: str | None) -> str:
    where = f"Watch it on the hub: {hub_url}#/events" if hub_url else "It is on the hub (web UI → Events)"
    return _text(f"🎞 {camera} · {clock(float(event.get('start') or 0))}: {why}. {where} (event {event.get('id')}).")


def no_photo(caption: str) -> str:
    return _text(f"{caption}\n(no picture: the camera had none yet)")


def status_text(armed: bool, cameras: list[dict[str, Any]], mutes: dict[str, float], waiting: int) -> str:
    lines = ["🛡 Armed" if armed else "💤 Disarmed"]
    if not cameras:
        lines.append("No cameras yet: pair one in the hub's web UI.")
    for cam in cameras:
        bits = ["online" if cam.get("online") else "offline"]
        if cam.get("battery") is not None:
            bits.append(f"battery {round(float(cam['battery']) * 100)} %")
        bits.append("armed" if cam.get("armed") else "disarmed")
        if cam.get("id") in mutes:
            bits.append(f"muted here {until_text(mutes[cam['id']])}")
        lines.append(f"• {cam.get('name') or cam.get('id')}: " + ", ".join(bits))
    if waiting:
        lines.append(f"{waiting} alert message(s) waiting to be sent")
    return _text("\n".join(lines))


def events_text(events: list[dict[str, Any]], names: dict[str, str]) -> str:
    if not events:
        return "No events yet."
    lines = ["Latest events:"]
    for ev in events:
        start = float(ev.get("start") or 0)
        end = ev.get("end")
        length = f" · {_duration(float(end) - start)}" if end else " · recording"
        cam = names.get(str(ev.get("camera_id")), str(ev.get("camera_id")))
        lines.append(f"• {clock(start)} {cam} · {_triggers(ev.get('triggers'))}{length}")
    return _text("\n".join(lines))


# -- buttons: callback data is at most 64 bytes; camera ids are at most 40 characters ---------------------------

def disarm_data(for_s: int = ONE_HOUR_S) -> str:
    return f"d:{for_s}"


def mute_data(camera_id: str, for_s: int = ONE_HOUR_S) -> str:
    return f"m:{camera_id}:{for_s}"


def parse_button(data: str | None) -> tuple[str, str | None, float] | None:
    """('disarm', None, seconds) or ('mute', camera_id, seconds); None for anything else."""
    parts = (data or "").split(":")
    try:
        if len(parts) == 2 and parts[0] == "d":
            seconds = float(parts[1])
            return ("disarm", None, seconds) if 0 < seconds <= MAX_FOR_S else None
        if len(parts) == 3 and parts[0] == "m" and parts[1]:
            seconds = float(parts[2])
            return ("mute", parts[1], seconds) if 0 < seconds <= MAX_FOR_S else None
    except ValueError:
        return None
    return None


def alert_buttons(camera_id: str, camera: str) -> list[list[tuple[str, str]]]:
    return [[("Disarm 1 h", disarm_data()), (f"Mute {camera[:24]} 1 h", mute_data(camera_id))]]


def _cap(text: str) -> str:
    return text if len(text) <= MAX_CAPTION else text[:MAX_CAPTION - 1] + "…"


def _text(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT - 1] + "…"
