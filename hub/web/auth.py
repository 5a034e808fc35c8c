"""Web UI log-in: the admin secret buys a session cookie; the CLI keeps using the secret as a bearer token.

- Sessions are random ids kept server-side (table ``ui_sessions``, only the SHA-256 of each id is stored, so a
  copy of the database holds no usable session). They last ``SESSION_TTL_S`` at most and end after
  ``SESSION_IDLE_S`` without use; logging out deletes the row.
- The cookie is HttpOnly, SameSite=Strict, Secure on HTTPS, Path=/.
- CSRF: besides SameSite=Strict, every state-changing request made with the cookie must carry the session's
  ``X-CSRF-Token`` (the page gets it from the log-in answer or ``GET /api/ui/session``), and a request whose
  ``Origin`` is not the hub's own is refused. Bearer-token requests carry no ambient credential and skip both.
- Guessing is slowed per client address: after ``FREE_FAILURES`` wrong secrets every further attempt waits
  out a lock that doubles with each failure (1 s, 2 s, 4 s ... capped at ``MAX_LOCK_S``); while locked, the
  hub answers 429 with ``Retry-After`` without looking at the secret.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from hub.store import Store
from hub.web.context import WEB_CONTEXT_KEY
from hub.web.errors import ApiError, bearer, json_body

log = logging.getLogger(__name__)

COOKIE = "pw_session"
CSRF_HEADER = "X-CSRF-Token"
SESSION_TTL_S = 7 * 24 * 3600
SESSION_IDLE_S = 2 * 24 * 3600
_TOUCH_EVERY_S = 60.0  # last_seen is written at most this often per session (SD cards)
FREE_FAILURES = 5
MAX_LOCK_S = 15 * 60
_FORGET_FAILURES_S = 3600.0
_MAX_TRACKED_CLIENTS = 10_000
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

_TABLE = "ui_sessions"
SESSION_KEY: web.AppKey[Any] = web.AppKey("ui_auth", object)


@dataclass
class Session:
    id_hash: str  # "admin" for a bearer-token caller
    csrf: str
    created_at: float
    last_seen: float
    expires_at: float
    via_bearer: bool = False


def _h(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


class _Failures:
    """Per-client failed log-ins: count, time of the last one, and until when the client is locked out."""

    def __init__(self) -> None:
        self._by_client: dict[str, tuple[int, float, float]] = {}

    def locked_for(self, client: str, now: float) -> float:
        entry = self._by_client.get(client)
        if entry is None:
            return 0.0
        count, last, locked_until = entry
        if now - last > _FORGET_FAILURES_S:
            del self._by_client[client]
            return 0.0
        return max(0.0, locked_until - now)

    def fail(self, client: str, now: float) -> float:
        count, _, _ = self._by_client.get(client, (0, now, 0.0))
        count += 1
        lock = 0.0 if count < FREE_FAILURES else min(float(MAX_LOCK_S), 2.0 ** (count - FREE_FAILURES))
        self._by_client[client] = (count, now, now + lock)
        if len(self._by_client) > _MAX_TRACKED_CLIENTS:
            self._prune(now)
        return lock

    def succeed(self, client: str) -> None:
        self._by_client.pop(client, None)

    def _prune(self, now: float) -> None:
        stale = [c for c, (_, last, until) in self._by_client.items()
                 if now - last > _FORGET_FAILURES_S and until <= now]
        for c in stale:
            del self._by_client[c]
        if len(self._by_client) > _MAX_TRACKED_CLIENTS:  # a flood of addresses: drop the oldest entries
            for c, _ in sorted(self._by_client.items(), key=lambda kv: kv[1][1])[: len(self._by_client) // 2]:
                del self._by_client[c]


class Auth:
    def __init__(self, store: Store, admin_secret: str) -> None:
        self.store = store
        self.admin_secret = admin_secret
        self.failures = _Failures()
        self._touched: dict[str, float] = {}
        db = store.db
        if _TABLE not in db.table_names():
            db[_TABLE].create(
                {"id_hash": str, "csrf": str, "created_at": float, "last_seen": float, "expires_at": float,
                 "user_agent": str, "client": str},
                pk="id_hash",
            )

    # -- sessions ----------------------------------------------------------------------------------------

    def create(self, user_agent: str, client: str) -> tuple[str, Session]:
        now = time.time()
        self._purge(now)
        sid = secrets.token_urlsafe(32)
        sess = Session(id_hash=_h(sid), csrf=secrets.token_urlsafe(24), created_at=now, last_seen=now,
                       expires_at=now + SESSION_TTL_S)
        self.store.db[_TABLE].insert(
            {"id_hash": sess.id_hash, "csrf": sess.csrf, "created_at": now, "last_seen": now,
             "expires_at": sess.expires_at, "user_agent": user_agent[:200], "client": client[:64]}
        )
        return sid, sess

    def lookup(self, sid: str) -> Session | None:
        if not sid or len(sid) > 128:
            return None
        row = self.store.db.execute(
            f"SELECT id_hash, csrf, created_at, last_seen, expires_at FROM {_TABLE} WHERE id_hash = ?", [_h(sid)]
        ).fetchone()
        if row is None:
            return None
        sess = Session(*row)
        now = time.time()
        last = max(sess.last_seen, self._touched.get(sess.id_hash, 0.0))
        if now >= sess.expires_at or now - last > SESSION_IDLE_S:
            self.delete(sess.id_hash)
            return None
        if now - last > _TOUCH_EVERY_S:
            self.store.db[_TABLE].update(sess.id_hash, {"last_seen": now})
        self._touched[sess.id_hash] = now
        sess.last_seen = now
        return sess

    def delete(self, id_hash: str) -> None:
        self._touched.pop(id_hash, None)
        self.store.db.execute(f"DELETE FROM {_TABLE} WHERE id_hash = ?", [id_hash])

    def _purge(self, now: float) -> None:
        self.store.db.execute(
            f"DELETE FROM {_TABLE} WHERE expires_at <= ? OR last_seen < ?", [now, now - SESSION_IDLE_S]
        )


def setup_auth(app: web.Application) -> Auth:
    ctx = app[WEB_CONTEXT_KEY]
    auth = Auth(ctx.store, ctx.admin_secret)
    app[SESSION_KEY] = auth
    r = app.router
    r.add_post("/api/ui/login", login)
    r.add_post("/api/ui/logout", logout)
    r.add_get("/api/ui/session", session_info)
    return auth


def _auth(request: web.Request) -> Auth:
    return request.app[SESSION_KEY]


def client_address(request: web.Request) -> str:
    # The hub is reached directly on the LAN; no proxy headers are trusted.
    return request.remote or "unknown"


def _same_origin(request: web.Request) -> bool:
    """True when the request carries no Origin (same-origin GETs, non-browser clients) or the hub's own."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    if origin == "null":
        return False
    parts = urlsplit(origin)
    return parts.scheme == request.scheme and parts.netloc.lower() == request.host.lower()


def check_origin(request: web.Request) -> None:
    if not _same_origin(request):
        raise ApiError(403, "cross-site request refused", "use the web UI served by the hub itself")


def require_session(request: web.Request) -> Session:
    """The caller's session, or the admin bearer token (the CLI); 401 otherwise.

    For cookie sessions a state-changing method also needs the hub's own Origin (when sent) and the session's
    CSRF token in ``X-CSRF-Token``: 403 without them.
    """
    cached = request.get("ui_session")
    if cached is not None:
        return cached
    token = bearer(request)
    if token is not None:
        if not hmac.compare_digest(token.encode(), _auth(request).admin_secret.encode()):
            raise ApiError(401, "admin secret required", "log in again")
        now = time.time()
        sess = Session("admin", "", now, now, now, via_bearer=True)
    else:
        sess = _auth(request).lookup(request.cookies.get(COOKIE, ""))
        if sess is None:
            raise ApiError(401, "not logged in", "log in with the admin secret")
        if request.method not in SAFE_METHODS or request.path == "/api/ui/ws":
            check_origin(request)
        if request.method not in SAFE_METHODS:
            sent = request.headers.get(CSRF_HEADER, "")
            if not sent or not hmac.compare_digest(sent.encode(), sess.csrf.encode()):
                raise ApiError(403, "missing or wrong CSRF token", "reload the page")
    request["ui_session"] = sess
    return sess


def _set_cookie(request: web.Request, resp: web.StreamResponse, sid: str) -> None:
    resp.set_cookie(COOKIE, sid, max_age=SESSION_TTL_S, path="/", httponly=True, samesite="Strict",
                    secure=request.secure)


# -- handlers --------------------------------------------------------------------------------------------


async def login(request: web.Request) -> web.Response:
    check_origin(request)
    auth = _auth(request)
    client = client_address(request)
    now = time.time()
    wait = auth.failures.locked_for(client, now)
    if wait > 0:
        raise _too_many(wait)
    body = await json_body(request)
    secret = body.get("secret")
    expected = auth.admin_secret
    if not isinstance(secret, str) or not hmac.compare_digest(secret.encode(), expected.encode()):
        lock = auth.failures.fail(client, now)
        log.warning("web UI log-in failed", extra={"client": client, "locked_s": lock})
        raise ApiError(401, "wrong admin secret", "it was printed by 'pingwatch init' and is kept as "
                       "admin_secret in secrets.json in the hub's data directory")
    auth.failures.succeed(client)
    sid, sess = auth.create(request.headers.get("User-Agent", ""), client)
    log.info("web UI log-in", extra={"client": client})
    resp = web.json_response({"ok": True, "csrf": sess.csrf, "expires_at": sess.expires_at})
    _set_cookie(request, resp, sid)
    resp.headers["Cache-Control"] = "no-store"
    return resp


def _too_many(wait: float) -> ApiError:
    secs = max(1, math.ceil(wait))
    err = ApiError(429, f"too many wrong secrets; try again in {secs} s")
    err.headers["Retry-After"] = str(secs)
    return err


async def logout(request: web.Request) -> web.Response:
    sess = require_session(request)
    if not sess.via_bearer:
        _auth(request).delete(sess.id_hash)
        closer = request.app.get(LOGOUT_HOOK_KEY)
        if closer is not None:
            await closer(sess.id_hash)
    resp = web.json_response({"ok": True})
    resp.del_cookie(COOKIE, path="/", secure=request.secure, httponly=True, samesite="Strict")
    return resp


async def session_info(request: web.Request) -> web.Response:
    sess = require_session(request)
    resp = web.json_response({"authenticated": True, "csrf": sess.csrf, "expires_at": sess.expires_at,
                              "idle_timeout_s": SESSION_IDLE_S})
    resp.headers["Cache-Control"] = "no-store"
    return resp


# Set by hub.web.ui: closes the WebSockets of a session that logged out.
LOGOUT_HOOK_KEY: web.AppKey[Any] = web.AppKey("ui_logout_hook", object)
