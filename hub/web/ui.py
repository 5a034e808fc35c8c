"""The local web UI: a static single page (no build step) and the JSON + WebSocket API it uses.

Everything under ``/api/ui/`` needs a log-in session (see ``hub/web/auth.py``) or the admin bearer token.
Media files are only ever served by event id: the path comes from the event's row in the store and must
resolve (symlinks followed) to a file inside the data directory's ``clips/`` folder, else the answer is 404.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib.metadata
import json
import logging
import math
import mimetypes
import platform
import re
import shutil
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from aiohttp import WSCloseCode, WSMsgType, web
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from hub import __version__
from hub.bus import Message, Subscription
from hub.datadir import contained_file
from hub.live import LiveRelays
from hub.pipeline import default_camera_settings
from hub.retention import delete_event
from hub.web.auth import LOGOUT_HOOK_KEY, WS_PROTOCOL, require_session, session_signer, setup_auth
from hub.web.context import WEB_CONTEXT_KEY, WebContext, web_context
from hub.web.errors import ApiError, json_body

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
MAX_EVENTS_PAGE = 500
DEFAULT_EVENTS_PAGE = 50
MAX_POLYGONS = 16
MAX_POINTS = 64
_TRIGGER_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")

mimetypes.add_type("video/mp4", ".mp4")
mimetypes.add_type("video/webm", ".webm")
mimetypes.add_type("text/javascript", ".js")


Signer = Callable[[str, str], str]  # (path, query) -> the URL the page may load (``hub.web.auth.media_url``)


class _UiState:
    def __init__(self) -> None:
        # open WebSockets -> the session id hash they belong to and their bus subscription (closed on log-out
        # and on shutdown)
        self.sockets: dict[web.WebSocketResponse, tuple[str, Subscription, Signer]] = {}


UI_STATE_KEY: web.AppKey[_UiState] = web.AppKey("ui_state", _UiState)


def _hub(request: web.Request) -> WebContext:
    return web_context(request)


# -- camera settings -------------------------------------------------------------------------------------

Point = tuple[float, float]


def _check_polygons(value: list[list[Point]]) -> list[list[Point]]:
    if len(value) > MAX_POLYGONS:
        raise ValueError(f"at most {MAX_POLYGONS} polygons")
    out = []
    for poly in value:
        if not 3 <= len(poly) <= MAX_POINTS:
            raise ValueError(f"a polygon needs 3 to {MAX_POINTS} points")
        for x, y in poly:
            if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
                raise ValueError("points are normalised: x and y between 0 and 1")
        out.append([(round(x, 5), round(y, 5)) for x, y in poly])
    return out


class CameraSettings(BaseModel):
    """What the web UI edits per camera; stored as JSON in ``cameras.settings``. Absent keys mean "hub default"."""

    model_config = ConfigDict(extra="forbid")

    sensitivity: Literal["low", "medium", "high"] | None = None
    motion_enabled: bool | None = None
    pre_roll_s: float | None = Field(None, ge=0, le=60)
    post_roll_s: float | None = Field(None, ge=0, le=120)
    audio_enabled: bool | None = None
    audio_level_dbfs: float | None = Field(None, ge=-90, le=0, description="quieter sounds never trigger")
    zones: list[list[Point]] = Field(default_factory=list, description="motion counts only inside these")
    masks: list[list[Point]] = Field(default_factory=list, description="motion inside these is ignored")

    _polys = field_validator("zones", "masks")(_check_polygons)


def _stored_settings(cam: dict[str, Any]) -> dict[str, Any]:
    try:
        raw = json.loads(cam.get("settings") or "{}")
    except ValueError:
        return {}
    return raw if isinstance(raw, dict) else {}


def _camera_out(hub: WebContext, desc: dict[str, Any], cam: dict[str, Any]) -> dict[str, Any]:
    stored = _stored_settings(cam)
    effective = default_camera_settings(hub.config) | {k: v for k, v in stored.items() if v is not None}
    return desc | {"settings": effective, "camera_armed": bool(cam.get("armed")),
                   "custom": sorted(k for k, v in stored.items() if v not in (None, []))}


def _active_camera(hub: WebContext, camera_id: str) -> dict[str, Any]:
    cam = hub.store.get_camera(camera_id)
    if cam is None or cam.get("revoked_at") is not None:
        raise ApiError(404, f"no camera '{camera_id}'")
    return cam


def _describe(hub: WebContext, camera_id: str) -> dict[str, Any]:
    for desc in hub.control.cameras():
        if desc["id"] == camera_id:
            return desc
    raise ApiError(404, f"no camera '{camera_id}'")


# -- events and their files ------------------------------------------------------------------------------


def _media_file(hub: WebContext, stored: Any) -> Path | None:
    """The file a stored path names, only if it is a regular file inside the clips folder."""
    return contained_file(hub.data.clips_dir, stored, hub.data.root)


def _event_out(ev: dict[str, Any], sign: Signer) -> dict[str, Any]:
    out = {k: v for k, v in ev.items() if not k.endswith("_path")}
    eid = ev["id"]
    duration = ev.get("clip_duration_s")
    if duration is None and ev.get("end") is not None and ev.get("start") is not None:
        duration = max(0.0, ev["end"] - ev["start"])
    out["duration_s"] = duration
    out["has_clip"] = bool(ev.get("clip_path"))
    out["has_snapshot"] = bool(ev.get("snapshot_path") or ev.get("thumb_path"))
    base = f"/api/ui/events/{quote(str(eid), safe='')}"
    out["clip_url"] = sign(f"{base}/clip", "") if out["has_clip"] else None
    out["download_url"] = sign(f"{base}/clip", "download=1") if out["has_clip"] else None
    out["snapshot_url"] = sign(f"{base}/snapshot", "") if out["has_snapshot"] else None
    out["thumb_url"] = sign(f"{base}/thumb", "") if out["has_snapshot"] else None
    return out


def _get_event(hub: WebContext, event_id: str) -> dict[str, Any]:
    ev = hub.store.get_event(event_id) if len(event_id) <= 100 else None
    if ev is None:
        raise ApiError(404, f"no event '{event_id}'", "it may have been deleted or expired")
    return ev


_MAX_EPOCH_S = 253402300799.0  # 9999-12-31: any later time is no time an event can have


def _time_param(request: web.Request, name: str) -> float | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    bad = ApiError(400, f"'{name}' must be epoch seconds or an ISO 8601 date/time between 1970 and 9999")
    try:
        value = float(raw)
    except ValueError:
        try:
            when = dt.datetime.fromisoformat(raw)
            if when.tzinfo is None:
                when = when.astimezone()  # the hub's local time zone
            value = when.timestamp()
        except (ValueError, OverflowError, OSError):  # year 1 has no local time; the platform's limits differ
            raise bad from None
    if not math.isfinite(value) or not 0 <= value <= _MAX_EPOCH_S:  # "nan", "1e400", "-5"
        raise bad
    return value


def _int_param(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f"'{name}' must be an integer") from None
    if not lo <= value <= hi:
        raise ApiError(400, f"'{name}' must be between {lo} and {hi}")
    return value


# -- handlers: page --------------------------------------------------------------------------------------


async def index(request: web.Request) -> web.StreamResponse:
    resp = web.FileResponse(STATIC_DIR / "index.html")
    resp.headers["Cache-Control"] = "no-cache"
    return resp


# -- handlers: cameras -----------------------------------------------------------------------------------


async def cameras(request: web.Request) -> web.Response:
    require_session(request)
    hub = _hub(request)
    rows = {c["id"]: c for c in hub.store.list_cameras()}
    out = [_camera_out(hub, d, rows[d["id"]]) for d in hub.control.cameras() if d["id"] in rows]
    return web.json_response({"cameras": out, "armed": hub.control.is_armed()})


async def camera_detail(request: web.Request) -> web.Response:
    require_session(request)
    hub = _hub(request)
    cid = request.match_info["camera_id"]
    cam = _active_camera(hub, cid)
    return web.json_response(_camera_out(hub, _describe(hub, cid), cam))


async def camera_update(request: web.Request) -> web.Response:
    """PATCH ``{"name"?: str, "settings"?: {...}}``: settings keys given replace the stored ones; null resets a
    key to the hub's default."""
    require_session(request)
    hub = _hub(request)
    cid = request.match_info["camera_id"]
    cam = _active_camera(hub, cid)
    body = await json_body(request)
    unknown = set(body) - {"name", "settings"}
    if unknown:
        raise ApiError(400, f"unknown field(s): {', '.join(sorted(unknown))}")
    fields: dict[str, Any] = {}
    if "name" in body:
        name = body["name"]
        if not isinstance(name, str) or not name.strip() or len(name.strip()) > 64:
            raise ApiError(400, "name must be 1 to 64 characters")
        fields["name"] = name.strip()
    if "settings" in body:
        patch = body["settings"]
        if not isinstance(patch, dict):
            raise ApiError(400, "settings must be an object")
        merged = _stored_settings(cam) | patch
        try:
            model = CameraSettings.model_validate(merged)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ApiError(400, f"settings.{where}: {first['msg']}") from None
        pre = model.pre_roll_s
        if pre is not None and pre > hub.config.ingest.preroll_window_s:
            raise ApiError(400, f"settings.pre_roll_s: at most {hub.config.ingest.preroll_window_s:g} s "
                           "(ingest.preroll_window_s in the hub's config)")
        clean = model.model_dump(exclude_none=True)
        fields["settings"] = json.dumps(clean, separators=(",", ":"))
    if fields:
        hub.store.update_camera(cid, **fields)
        cam = _active_camera(hub, cid)
        settings = _camera_out(hub, {}, cam)["settings"]
        hub.bus.publish("camera.settings", camera_id=cid, name=cam["name"], settings=settings)
        log.info("camera settings changed", extra={"camera_id": cid, "fields": sorted(fields)})
    return web.json_response(_camera_out(hub, _describe(hub, cid), cam))


async def camera_snapshot(request: web.Request) -> web.StreamResponse:
    """The camera's latest keyframe as JPEG, or the newest event snapshot when nothing is buffered."""
    require_session(request)
    hub = _hub(request)
    cid = request.match_info["camera_id"]
    _active_camera(hub, cid)
    jpeg = None
    try:
        jpeg = await hub.control.snapshot(cid)
    except Exception as exc:  # noqa: BLE001 - a failed live snapshot falls back to the last event's
        log.debug("live snapshot failed", extra={"camera_id": cid, "error": str(exc)})
    if jpeg:
        return web.Response(body=jpeg, content_type="image/jpeg", headers={"X-Snapshot-Source": "live"})
    for ev in hub.store.list_events(camera_id=cid, limit=20):
        f = _media_file(hub, ev.get("snapshot_path")) or _media_file(hub, ev.get("thumb_path"))
        if f is not None:
            resp = web.FileResponse(f, headers={"X-Snapshot-Source": "event", "X-Snapshot-Time": str(ev["start"])})
            return resp
    raise ApiError(404, "no snapshot yet", "the camera has sent no picture; check that it is online")


async def _arm(request: web.Request, camera_id: str | None) -> web.Response:
    require_session(request)
    hub = _hub(request)
    body = await json_body(request)
    armed, for_s = body.get("armed"), body.get("for_s")
    if not isinstance(armed, bool):
        raise ApiError(400, "'armed' must be true or false")
    if for_s is not None and (isinstance(for_s, bool) or not isinstance(for_s, (int, float))
                              or not 0 < for_s <= 7 * 24 * 3600):
        raise ApiError(400, "'for_s' must be a number of seconds up to a week")
    if camera_id is not None:
        _active_camera(hub, camera_id)
    ctl = hub.control
    ctl.set_armed(armed, camera_id=camera_id, for_s=float(for_s) if for_s else None)
    until = time.time() + for_s if for_s else None
    log.info("armed" if armed else "disarmed", extra={"camera_id": camera_id, "for_s": for_s, "via": "web"})
    return web.json_response({"camera_id": camera_id, "armed": ctl.is_armed(camera_id) if camera_id else armed,
                              "camera_armed": armed if camera_id else None, "hub_armed": ctl.is_armed(),
                              "until": until})


async def arm_hub(request: web.Request) -> web.Response:
    return await _arm(request, None)


async def arm_camera(request: web.Request) -> web.Response:
    return await _arm(request, request.match_info["camera_id"])


async def arm_state(request: web.Request) -> web.Response:
    require_session(request)
    ctl = _hub(request).control
    return web.json_response({"armed": ctl.is_armed(),
                              "cameras": {c["id"]: c["armed"] for c in ctl.cameras()}})


# -- handlers: events ------------------------------------------------------------------------------------


async def events(request: web.Request) -> web.Response:
    """``?camera=&trigger=&since=&until=&before=&limit=``; newest first. ``next_before`` pages on."""
    require_session(request)
    hub = _hub(request)
    camera = request.query.get("camera") or None
    trigger = request.query.get("trigger") or None
    if trigger is not None and not _TRIGGER_RE.match(trigger):
        raise ApiError(400, "unknown trigger type")
    if camera is not None and len(camera) > 100:
        raise ApiError(400, "camera id too long")
    since, until, before = (_time_param(request, n) for n in ("since", "until", "before"))
    limit = _int_param(request, "limit", DEFAULT_EVENTS_PAGE, 1, MAX_EVENTS_PAGE)
    if before is not None:
        until = before if until is None else min(until, before)
    rows = hub.store.list_events(camera_id=camera, since=since, until=until, trigger=trigger, limit=limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    sign = session_signer(request)
    return web.json_response({"events": [_event_out(e, sign) for e in rows],
                              "next_before": rows[-1]["start"] if more and rows else None})


async def event_detail(request: web.Request) -> web.Response:
    require_session(request)
    hub = _hub(request)
    ev = _get_event(hub, request.match_info["event_id"])
    out = _event_out(ev, session_signer(request))
    out["clip_available"] = _media_file(hub, ev.get("clip_path")) is not None
    cam = hub.store.get_camera(ev["camera_id"])
    out["camera_name"] = cam["name"] if cam else None
    return web.json_response(out)


async def event_delete(request: web.Request) -> web.Response:
    require_session(request)
    hub = _hub(request)
    ev = _get_event(hub, request.match_info["event_id"])
    # The hub's one deletion (retention and `events prune` use it too): refuses an event still recording (409),
    # removes only files contained to clips/. On the loop's thread, as the store's connection must be; a few
    # unlinks, as a retention pass does there too.
    done = delete_event(hub.store, ev["id"], hub.data.clips_dir, hub.data.root)
    hub.bus.publish("event.deleted", event_id=ev["id"], camera_id=ev["camera_id"])
    log.info("event deleted", extra={"event_id": ev["id"], "camera_id": ev["camera_id"], "via": "web"})
    return web.json_response({"event_id": ev["id"], "deleted": True, "files_removed": len(done.removed)})


def _serve(hub: WebContext, stored: Any, what: str, headers: dict[str, str] | None = None) -> web.FileResponse:
    f = _media_file(hub, stored)
    if f is None:
        raise ApiError(404, f"no {what} for this event")
    resp = web.FileResponse(f, headers=headers)
    ctype, _ = mimetypes.guess_type(f.name)
    if ctype:
        resp.content_type = ctype
    # Not cached (the security headers say no-store for all of /api/): a clip must not outlive the log-out in
    # the browser's cache, and the signed URL is per session anyway.
    return resp


async def event_clip(request: web.Request) -> web.StreamResponse:
    require_session(request, media=True)
    hub = _hub(request)
    ev = _get_event(hub, request.match_info["event_id"])
    headers = {}
    if request.query.get("download"):
        when = dt.datetime.fromtimestamp(ev["start"]).strftime("%Y%m%d-%H%M%S")
        suffix = Path(str(ev.get("clip_path") or "")).suffix.lower()
        suffix = suffix if suffix in (".mp4", ".webm", ".mkv") else ".mp4"
        name = re.sub(r"[^A-Za-z0-9_-]", "_", f"{ev['camera_id']}-{when}") + suffix
        headers["Content-Disposition"] = f'attachment; filename="{name}"'
    return _serve(hub, ev.get("clip_path"), "clip", headers)


async def event_snapshot(request: web.Request) -> web.StreamResponse:
    require_session(request, media=True)
    hub = _hub(request)
    ev = _get_event(hub, request.match_info["event_id"])
    return _serve(hub, ev.get("snapshot_path") or ev.get("thumb_path"), "snapshot")


async def event_thumb(request: web.Request) -> web.StreamResponse:
    require_session(request, media=True)
    hub = _hub(request)
    ev = _get_event(hub, request.match_info["event_id"])
    stored = ev.get("thumb_path") if _media_file(hub, ev.get("thumb_path")) else ev.get("snapshot_path")
    return _serve(hub, stored, "thumbnail")


# -- handlers: live view ---------------------------------------------------------------------------------

def _live(request: web.Request) -> LiveRelays:
    return web_context(request).live


async def camera_live(request: web.Request) -> web.Response:
    """POST ``{"type": "offer", "sdp": ...}`` (the page's recvonly video offer, ICE gathered) → ``{"type":
    "answer", "sdp", "relay_id", "codec"}``: a WebRTC relay of the camera's encoded video (never re-encoded).
    404 unknown camera, 409 no video yet, 415 the browser cannot receive the camera's codec."""
    sess = require_session(request)
    hub = _hub(request)
    cid = request.match_info["camera_id"]
    _active_camera(hub, cid)
    body = await json_body(request)
    relay, answer = await _live(request).open(cid, body, sess.id_hash)  # LiveError: mapped at the edge
    return web.json_response(answer | {"relay_id": relay.id, "codec": relay.codec})


async def camera_live_stats(request: web.Request) -> web.Response:
    """The camera's live-view relays (viewers) with what each forwarded."""
    require_session(request)
    hub = _hub(request)
    cid = request.match_info["camera_id"]
    _active_camera(hub, cid)
    return web.json_response({"camera_id": cid, "viewers": await _live(request).stats(cid)})


async def camera_live_close(request: web.Request) -> web.Response:
    """DELETE: the page left the live view; closes that relay (only the session's own)."""
    sess = require_session(request)
    hub = _hub(request)
    cid = request.match_info["camera_id"]
    _active_camera(hub, cid)
    rid = request.match_info["relay_id"]
    relay = _live(request).relays.get(rid)
    if relay is None or relay.camera_id != cid or not (sess.via_bearer or relay.session == sess.id_hash):
        raise ApiError(404, f"no live view '{rid}'")
    await relay.close("viewer left")
    return web.json_response({"relay_id": rid, "closed": True})


# -- handlers: pairing and system ------------------------------------------------------------------------


def qr_svg(data: str) -> str:
    import qrcode
    import qrcode.image.svg

    img = qrcode.make(data, image_factory=qrcode.image.svg.SvgPathImage, border=2,
                      error_correction=qrcode.constants.ERROR_CORRECT_M)
    return img.to_string(encoding="unicode")


async def pairing(request: web.Request) -> web.Response:
    require_session(request)
    hub = _hub(request)
    code, expires = hub.store.new_pairing_code()
    url = f"{hub.urls()['camera']}#code={code}"
    log.info("pairing code made", extra={"via": "web", "expires_at": expires})
    return web.json_response({"code": code, "expires_at": expires, "url": url, "qr_svg": qr_svg(url),
                              "cert_sha256": hub.cert.fingerprint_sha256}, status=201)


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"hub": __version__, "python": platform.python_version(),
                                  "sqlite": sqlite3.sqlite_version}
    for pkg in ("aiohttp", "aiortc", "av", "numpy", "opencv-python-headless", "paho-mqtt"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = None
    return out


async def system(request: web.Request) -> web.Response:
    require_session(request)
    hub = _hub(request)
    try:
        du = shutil.disk_usage(hub.data.root)
        disk: dict[str, Any] = {"total_bytes": du.total, "used_bytes": du.used, "free_bytes": du.free}
    except OSError as exc:
        disk = {"error": exc.strerror}
    count, size = hub.store.db.execute("SELECT COUNT(*), COALESCE(SUM(clip_size), 0) FROM events").fetchone()
    cfg = hub.config
    mqtt_obj = getattr(hub, "mqtt", None)
    mqtt = {"enabled": cfg.mqtt.enabled, "host": cfg.mqtt.host, "port": cfg.mqtt.port,
            "connected": bool(getattr(mqtt_obj, "connected", False)) if mqtt_obj is not None else None}
    ctl = hub.control
    return web.json_response({
        "versions": _versions(), "uptime_s": round(time.time() - hub.started_at, 1), "started_at": hub.started_at,
        "data_dir": str(hub.data.root), "disk": disk, "events": {"count": count, "clip_bytes": size},
        "retention": {"retention_days": cfg.storage.retention_days, "max_disk_gb": cfg.storage.max_disk_gb,
                      "min_free_gb": cfg.storage.min_free_gb},
        "mqtt": mqtt, "cloud": {"enabled": cfg.cloud.enabled} | hub.cloud_status(),
        "cameras": hub.cameras.summary(), "armed": ctl.is_armed(),
        "urls": hub.urls(),
        "certificate": {"sha256": hub.cert.fingerprint_sha256, "not_after": hub.cert.not_after.isoformat()},
    })


# -- WebSocket -------------------------------------------------------------------------------------------


def _ws_payload(msg: Message, sign: Signer) -> dict[str, Any]:
    data = dict(msg.data)
    if msg.topic == "event.ended" and isinstance(data.get("event"), dict):
        data["event"] = _event_out(data["event"], sign)
    return {"topic": msg.topic, "data": data}


async def websocket(request: web.Request) -> web.WebSocketResponse:
    """Forwards every bus message as ``{"topic", "data"}``; ``{"topic": "ui.resync"}`` after dropped ones."""
    # Checks Origin (no cross-site WebSocket hijacking) and the session key, sent as the "key." subprotocol.
    sess = require_session(request)
    hub = _hub(request)
    ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=4096, protocols=(WS_PROTOCOL,))
    await ws.prepare(request)
    state = request.app[UI_STATE_KEY]
    sub = hub.bus.subscribe(maxsize=512)
    sign = session_signer(request)
    state.sockets[ws] = (sess.id_hash, sub, sign)

    async def pump() -> None:
        dropped = 0
        while True:
            msg = await sub.get()
            if sub.dropped != dropped:
                dropped = sub.dropped
                await ws.send_str(json.dumps({"topic": "ui.resync", "data": {"dropped": dropped}}))
            await ws.send_str(json.dumps(_ws_payload(msg, sign), default=str))

    task = asyncio.create_task(pump(), name="ui-ws-pump")
    try:
        await ws.send_str(json.dumps({"topic": "ui.hello", "data": {"armed": hub.control.is_armed(),
                                                                     "version": __version__}}))
        async for m in ws:
            if m.type == WSMsgType.TEXT and m.data == "ping":
                await ws.send_str(json.dumps({"topic": "ui.pong", "data": {}}))
            if task.done():
                break
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        sub.close()
        state.sockets.pop(ws, None)
        if not ws.closed:
            await ws.close()
    return ws


async def _close_sockets(app: web.Application, session_hash: str | None = None) -> None:
    state = app[UI_STATE_KEY]
    targets = [(ws, sub, sign) for ws, (sid, sub, sign) in list(state.sockets.items())
               if session_hash is None or sid == session_hash]
    code = WSCloseCode.GOING_AWAY if session_hash is None else WSCloseCode.POLICY_VIOLATION
    message = b"hub shutting down" if session_hash is None else b"logged out"

    async def close(ws: web.WebSocketResponse, sub: Subscription, sign: Signer) -> None:
        if session_hash is None:  # shutdown: what the bus already holds for this page (the last events) goes out
            while not sub.queue.empty() and not ws.closed:
                await ws.send_str(json.dumps(_ws_payload(sub.queue.get_nowait(), sign), default=str))
        await ws.close(code=code, message=message)

    await asyncio.gather(*(close(ws, sub, sign) for ws, sub, sign in targets), return_exceptions=True)


# -- wiring ----------------------------------------------------------------------------------------------


async def close_sockets(app: web.Application) -> None:
    """Close every web UI WebSocket (hub shutdown: after the cameras stopped, so their last events got out)."""
    await _close_sockets(app)


def setup_ui(app: web.Application) -> None:
    """Add the web UI's page, static files and ``/api/ui/`` routes (after hub.web.api.setup_routes)."""
    setup_auth(app)
    app[UI_STATE_KEY] = _UiState()
    live = app[WEB_CONTEXT_KEY].live

    async def on_logout(session_hash: str) -> None:
        await _close_sockets(app, session_hash)
        await live.close_session(session_hash)

    app[LOGOUT_HOOK_KEY] = on_logout
    r = app.router
    r.add_get("/", index)
    r.add_static("/ui/static/", STATIC_DIR, append_version=False)
    r.add_get("/api/ui/cameras", cameras)
    r.add_get("/api/ui/cameras/{camera_id}", camera_detail)
    r.add_patch("/api/ui/cameras/{camera_id}", camera_update)
    r.add_get("/api/ui/cameras/{camera_id}/snapshot", camera_snapshot)
    r.add_post("/api/ui/cameras/{camera_id}/arm", arm_camera)
    r.add_post("/api/ui/cameras/{camera_id}/live", camera_live)
    r.add_get("/api/ui/cameras/{camera_id}/live", camera_live_stats)
    r.add_delete("/api/ui/cameras/{camera_id}/live/{relay_id}", camera_live_close)
    r.add_get("/api/ui/arm", arm_state)
    r.add_post("/api/ui/arm", arm_hub)
    r.add_get("/api/ui/events", events)
    r.add_get("/api/ui/events/{event_id}", event_detail)
    r.add_delete("/api/ui/events/{event_id}", event_delete)
    r.add_get("/api/ui/events/{event_id}/clip", event_clip)
    r.add_get("/api/ui/events/{event_id}/snapshot", event_snapshot)
    r.add_get("/api/ui/events/{event_id}/thumb", event_thumb)
    r.add_post("/api/ui/pairing", pairing)
    r.add_get("/api/ui/system", system)
    r.add_get("/api/ui/ws", websocket)
