"""The hub's HTTP API: health, pairing, WebRTC signaling for phones, and admin calls for the CLI.

Every error is JSON ``{"error": "...", "hint": "..."}`` with a 4xx/5xx status, so the phone page and the CLI can
show the user what to do instead of a stack trace.
"""

from __future__ import annotations

import logging
import mimetypes
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from hub import REPO_ROOT, __version__
from hub.errors import ErrorKind, PairingError
from hub.web.auth import LIMITS_KEY, check_admin_bearer, check_guess, client_address, failed_guess
from hub.web.context import web_context
from hub.web.errors import ApiError, bearer, json_body, valid_text

log = logging.getLogger(__name__)

PWA_DIR = REPO_ROOT / "phone_pwa"
# What /cam/ serves: the page's own kinds of file. Anything else in the folder (the icon generator script, a
# stray editor backup) is not part of the page and answers 404.
PWA_SUFFIXES = frozenset({".html", ".js", ".css", ".webmanifest", ".png", ".svg"})
mimetypes.add_type("application/manifest+json", ".webmanifest")
mimetypes.add_type("text/javascript", ".js")


def camera_from_token(request: web.Request) -> dict[str, Any]:
    token = bearer(request)
    if not token:
        raise ApiError(401, "missing camera token", "pair this camera with the hub first")
    cam = web_context(request).store.camera_for_token(token)
    if cam is None:
        raise ApiError(401, "unknown or revoked camera token", "pair this camera with the hub again")
    return cam


def require_admin(request: web.Request) -> None:
    """The admin bearer token; wrong ones are slowed like wrong log-ins (``hub.web.auth``)."""
    token = bearer(request)
    if not token:
        raise ApiError(401, "admin secret required", "pass the admin secret printed by 'pingwatch init'")
    check_admin_bearer(request, token)


# -- public ------------------------------------------------------------------------------------------------


async def health(request: web.Request) -> web.Response:
    """Anyone: ``status`` and ``db``. With the admin bearer token also the version, uptime and how many cameras
    are online: the LAN need not learn when the house has its cameras off, nor which version to attack."""
    hub = web_context(request)
    try:
        hub.store.db.execute("SELECT 1").fetchone()
        db_ok = True
    except Exception:  # noqa: BLE001 - health must answer whatever went wrong
        db_ok = False
    status = "ok" if db_ok and not hub.closing() else "degraded"
    body: dict[str, Any] = {"status": status, "db": "ok" if db_ok else "error"}
    if bearer(request) is not None:
        require_admin(request)
        body |= {"version": __version__, "uptime_s": round(time.time() - hub.started_at, 1),
                 "cameras": hub.cameras.summary()}
    return web.json_response(body, status=200 if status == "ok" else 503)


async def pair(request: web.Request) -> web.Response:
    limiter = request.app[LIMITS_KEY].pairing
    check_guess(request, limiter, "pairing code")  # 429 before the body is even read
    body = await json_body(request)
    code, name = body.get("code"), body.get("name") or "Phone camera"
    if not isinstance(code, str) or not code.strip():
        raise ApiError(400, "missing pairing code")
    if len(code) > 64:
        raise ApiError(400, "pairing code too long", "codes are 8 letters and digits")
    if not isinstance(name, str):
        raise ApiError(400, "name must be a string")
    result = web_context(request).store.redeem_pairing_code(code, name)
    if result is None:
        failed_guess(request, limiter, "pairing code")
        raise PairingError(ErrorKind.REFUSED, "wrong or expired pairing code",
                           "show a new code with 'pingwatch pair' on the hub")
    limiter.succeed(client_address(request))
    log.info("camera paired", extra={"camera_id": result.camera_id})
    web_context(request).bus.publish("camera.added", camera_id=result.camera_id, name=result.name)
    return web.json_response({"camera_id": result.camera_id, "token": result.token, "name": result.name}, status=201)


async def camera_me(request: web.Request) -> web.Response:
    cam = camera_from_token(request)
    return web.json_response({"camera_id": cam["id"], "name": cam["name"]})


async def camera_offer(request: web.Request) -> web.Response:
    cam = camera_from_token(request)
    body = await json_body(request)
    answer = await web_context(request).cameras.accept_offer(cam["id"], body)
    return web.json_response(answer)


# -- admin (CLI, later the web UI) -------------------------------------------------------------------------


async def new_pairing_code(request: web.Request) -> web.Response:
    require_admin(request)
    hub = web_context(request)
    code, expires = hub.store.new_pairing_code()
    url = f"{hub.urls()['camera']}#code={code}"
    return web.json_response({"code": code, "expires_at": expires, "url": url,
                              "cert_sha256": hub.cert.fingerprint_sha256}, status=201)


async def list_cameras(request: web.Request) -> web.Response:
    require_admin(request)
    return web.json_response({"cameras": web_context(request).cameras.describe_all()})


async def revoke_camera(request: web.Request) -> web.Response:
    require_admin(request)
    cid = request.match_info["camera_id"]
    if not await web_context(request).cameras.revoke(cid):
        raise ApiError(404, f"no active camera '{cid}'", "list cameras with 'pingwatch cameras list'")
    return web.json_response({"camera_id": cid, "revoked": True})


async def remove_camera(request: web.Request) -> web.Response:
    require_admin(request)
    hub = web_context(request)
    cid = request.match_info["camera_id"]
    # Closes the camera's peer, pipeline and live views under its offer lock, then forgets its row.
    if not await hub.cameras.remove(cid):
        raise ApiError(404, f"no camera '{cid}'", "list cameras with 'pingwatch cameras list'")
    return web.json_response({"camera_id": cid, "removed": True})


# -- static ------------------------------------------------------------------------------------------------


async def pwa_index(request: web.Request) -> web.StreamResponse:
    if request.path == "/cam":
        raise web.HTTPFound("/cam/")
    return _static_file(PWA_DIR / "index.html")


async def pwa_file(request: web.Request) -> web.StreamResponse:
    """A file of the phone page: only the page's own kinds, no hidden names, never outside ``phone_pwa/``."""
    rel = request.match_info["path"]
    parts = rel.split("/")
    if (not valid_text(rel) or any(not p or p.startswith(".") for p in parts)
            or Path(rel).suffix.lower() not in PWA_SUFFIXES):
        raise web.HTTPNotFound()
    root = PWA_DIR.resolve()
    path = (root / rel).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise web.HTTPNotFound()
    return _static_file(path)


def _static_file(path: Path) -> web.FileResponse:
    resp = web.FileResponse(path)
    # The app shell must update when the hub does; the service worker does the offline caching.
    resp.headers["Cache-Control"] = "no-cache"
    return resp


async def certificate(request: web.Request) -> web.Response:
    """The hub's certificate, for installing on a phone (iOS profile / Android CA certificate)."""
    hub = web_context(request)
    return web.Response(body=hub.data.cert_path.read_bytes(), content_type="application/x-x509-ca-cert",
                        headers={"Content-Disposition": 'attachment; filename="ping-watch-hub.crt"'})


def setup_routes(app: web.Application) -> None:
    """The API's routes and the phone page (the web UI adds its own with ``hub.web.ui.setup_ui``)."""
    r = app.router
    r.add_get("/api/health", health)
    r.add_post("/api/pair", pair)
    r.add_get("/api/camera", camera_me)
    r.add_post("/api/camera/offer", camera_offer)
    r.add_post("/api/admin/pairing-codes", new_pairing_code)
    r.add_get("/api/admin/cameras", list_cameras)
    r.add_post("/api/admin/cameras/{camera_id}/revoke", revoke_camera)
    r.add_delete("/api/admin/cameras/{camera_id}", remove_camera)
    r.add_get("/hub.crt", certificate)
    r.add_get("/cam", pwa_index)
    r.add_get("/cam/", pwa_index)
    r.add_get("/cam/{path:.+}", pwa_file)

