"""The hub's aiohttp application: error middleware, the API and phone page, the web UI. Built by the root.

Also what every response carries (security headers, no versions in ``Server``) and what the loopback HTTP port
serves at all: the CLI's admin-bearer API and health, nothing a browser could use (see docs/security.md).
"""

from __future__ import annotations

import re

from aiohttp import web, web_response

from hub.web.api import setup_routes
from hub.web.auth import LIMITS_KEY, GuessLimits
from hub.web.context import WEB_CONTEXT_KEY, WebContext
from hub.web.errors import ApiError, Handler, bearer, json_errors
from hub.web.ui import setup_ui

SERVER_NAME = "ping-watch"
_HOST_RE = re.compile(r"^[A-Za-z0-9.\-:\[\]]{1,255}$")
# Routes of the loopback HTTP port: what `pingwatch` (hub/cli/common.py api_call) calls with the admin secret.
_LOOPBACK_BEARER_PREFIXES = ("/api/admin/", "/api/ui/")


def build_web_app(ctx: WebContext) -> web.Application:
    _hide_server_version()
    app = web.Application(client_max_size=ctx.config.server.max_body_bytes,
                          middlewares=[json_errors, loopback_http_scope])
    app[WEB_CONTEXT_KEY] = ctx
    app[LIMITS_KEY] = GuessLimits.default()
    setup_routes(app)
    setup_ui(app)  # the web UI owns "/"
    app.on_response_prepare.append(security_headers)
    return app


def _hide_server_version() -> None:
    # aiohttp fills ``Server`` with its own and Python's version on every response it prepares, including the
    # 400s its parser sends before any handler or hook of ours runs; the constant is read at prepare time.
    web_response.SERVER_SOFTWARE = SERVER_NAME


@web.middleware
async def loopback_http_scope(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Plain HTTP (bound to 127.0.0.1 only) serves health and the admin bearer API, nothing else.

    A session made there would be a cookie without ``Secure`` that every port of 127.0.0.1 receives, and the
    pages there are not the ones phones and the LAN use; the CLI needs neither. The web UI is on HTTPS."""
    if request.secure or request.path == "/api/health":
        return await handler(request)
    if bearer(request) is not None and request.path.startswith(_LOOPBACK_BEARER_PREFIXES):
        return await handler(request)
    raise ApiError(404, "the loopback HTTP port serves only the pingwatch CLI (admin bearer token) and health",
                   "open the web UI and the camera page over HTTPS")


def _csp(request: web.Request, page: str) -> str:
    if page == "cam":  # the phone page: its own scripts, its service worker and manifest, API calls
        return ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
                "media-src 'self' blob: mediastream:; connect-src 'self'; worker-src 'self'; manifest-src 'self'; "
                "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
    if page == "ui":
        host = request.host if _HOST_RE.match(request.host or "") else ""
        ws = f" wss://{host}" if host else ""
        return ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
                f"media-src 'self' blob:; connect-src 'self'{ws}; object-src 'none'; base-uri 'none'; "
                "form-action 'self'; frame-ancestors 'none'")
    # JSON, media, the certificate: nothing in them may run or load anything, even when opened directly.
    return "default-src 'none'; frame-ancestors 'none'; sandbox"


async def security_headers(request: web.Request, resp: web.StreamResponse) -> None:
    """On every response the app sends: CSP, no framing, no sniffing, no referrer; API answers never cached
    (tokens, pairing codes, clips and snapshots stay out of the browser's cache, so a log-out leaves nothing)."""
    path = request.path
    page = "cam" if path == "/cam" or path.startswith("/cam/") else "ui" if path == "/" or path.startswith("/ui/") \
        else "other"
    h = resp.headers
    h["Content-Security-Policy"] = _csp(request, page)
    h["X-Frame-Options"] = "DENY"
    h["X-Content-Type-Options"] = "nosniff"
    h["Referrer-Policy"] = "no-referrer"
    h["Cross-Origin-Opener-Policy"] = "same-origin"
    h["Server"] = SERVER_NAME
    if path.startswith("/api/"):
        h["Cache-Control"] = "no-store"
    elif path.startswith(("/ui/static/", "/cam/")) or path == "/":
        h["Cache-Control"] = "no-cache"  # revalidate: the pages must update with the hub
