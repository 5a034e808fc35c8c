"""Web UI log-in: the admin secret buys a session; the CLI keeps using the secret as a bearer token.

- A session is two secrets: the cookie (HttpOnly, SameSite=Strict, Secure, Path=/) and a session key that the
  page holds in its own origin's storage and sends as ``X-CSRF-Token`` on every request, reads included.
  Browsers send cookies to every port of a host, so any program listening on another port of the hub's
  address (or any page served there) receives the cookie; it cannot read the page's storage (origins differ by
  port), so the cookie alone reads nothing, changes nothing and does not get the key back
  (``GET /api/ui/session`` no longer hands it out). The key is only ever in the log-in answer.
- Media the page loads by URL (``<video src>``, ``<img src>``, downloads) cannot carry a header: their URLs come
  signed (``?sig=``, an HMAC of the session and the path, see ``media_url``), and the cookie is still needed.
  The WebSocket sends the key as a subprotocol (``Sec-WebSocket-Protocol: pingwatch, key.<key>``).
- Sessions are random ids kept server-side (table ``ui_sessions``, only the SHA-256 of each id is stored, so a
  copy of the database holds no usable session). They last ``SESSION_TTL_S`` at most and end after
  ``SESSION_IDLE_S`` without use; logging out deletes the row.
- Cookies are never accepted over the loopback HTTP port (``hub.web.server`` only lets the admin bearer token
  and health through there).
- CSRF: the key in a header already proves the page; a state-changing request whose ``Origin`` is not the hub's
  own is refused as well. Bearer-token requests carry no ambient credential and skip both.
- Guessing (the admin secret by log-in or bearer token, pairing codes) is slowed per client address: after
  ``FREE_FAILURES`` wrong guesses every further attempt waits out a lock that doubles with each failure (1 s,
  2 s ... capped at ``MAX_LOCK_S``); and across all addresses by a bucket of ``GLOBAL_BURST`` failures refilled
  one per ``GLOBAL_REFILL_S``, one bucket per port kind, so the LAN cannot lock the CLI out of the loopback
  port. While locked, the hub answers 429 with ``Retry-After`` without looking at the guess.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from hub.store import Store
from hub.web.context import WEB_CONTEXT_KEY
from hub.web.errors import ApiError, bearer, header_text, json_body

log = logging.getLogger(__name__)

COOKIE = "pw_session"
# The session key's header. Named for its first job (CSRF token on writes); it is now needed on every request.
CSRF_HEADER = "X-CSRF-Token"
WS_PROTOCOL = "pingwatch"
WS_KEY_PREFIX = "key."  # the WebSocket's second subprotocol: "key.<session key>"
MEDIA_SIG = "sig"
SESSION_TTL_S = 7 * 24 * 3600
SESSION_IDLE_S = 2 * 24 * 3600
_TOUCH_EVERY_S = 60.0  # last_seen is written at most this often per session (SD cards)
FREE_FAILURES = 5
MAX_LOCK_S = 15 * 60
_FORGET_FAILURES_S = 3600.0
_MAX_TRACKED_CLIENTS = 10_000
GLOBAL_BURST = 20  # wrong guesses of one kind, from all clients together, before the global bucket runs dry
GLOBAL_REFILL_S = 3.0  # then one more every 3 s: 20 a minute, whatever the number of source addresses
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


# The caller's session once checked: a request's later calls (media_url) need not check it again.
_REQUEST_SESSION: web.RequestKey[Session] = web.RequestKey("ui_session", Session)


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
        _, last, locked_until = entry
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


class GuessLimiter:
    """Wrong guesses of one kind of secret: per client address, and all addresses together per port kind."""

    def __init__(self, burst: int = GLOBAL_BURST, refill_s: float = GLOBAL_REFILL_S,
                 clock: Callable[[], float] = time.time) -> None:
        self.clients = _Failures()
        self.burst = burst
        self.refill_s = refill_s
        self.clock = clock  # wall time; tests inject their own to live through a lock without waiting it out
        self._buckets: dict[str, tuple[float, float]] = {}  # port kind -> (failures left, when counted)

    def _left(self, site: str, now: float) -> float:
        left, at = self._buckets.get(site, (float(self.burst), now))
        return min(float(self.burst), left + max(0.0, now - at) / self.refill_s)

    def wait(self, client: str, site: str, now: float) -> float:
        left = self._left(site, now)
        global_wait = 0.0 if left >= 1.0 else (1.0 - left) * self.refill_s
        return max(self.clients.locked_for(client, now), global_wait)

    def fail(self, client: str, site: str, now: float) -> float:
        self._buckets[site] = (max(0.0, self._left(site, now) - 1.0), now)
        return self.clients.fail(client, now)

    def succeed(self, client: str) -> None:
        self.clients.succeed(client)


@dataclass
class GuessLimits:
    admin: GuessLimiter  # the admin secret: web UI log-in and the bearer token
    pairing: GuessLimiter  # pairing codes at /api/pair

    @classmethod
    def default(cls) -> GuessLimits:
        return cls(admin=GuessLimiter(), pairing=GuessLimiter())


LIMITS_KEY: web.AppKey[GuessLimits] = web.AppKey("guess_limits", GuessLimits)


def _site(request: web.Request) -> str:
    return "https" if request.secure else "loopback-http"


def check_guess(request: web.Request, limiter: GuessLimiter, what: str) -> None:
    """429 while this client, or all clients together, guessed wrong too often."""
    wait = limiter.wait(client_address(request), _site(request), limiter.clock())
    if wait > 0:
        raise too_many(wait, what)


def failed_guess(request: web.Request, limiter: GuessLimiter, what: str) -> None:
    client = client_address(request)
    lock = limiter.fail(client, _site(request), limiter.clock())
    log.warning("wrong %s", what, extra={"client": client, "locked_s": lock, "path": request.path})


def check_admin_bearer(request: web.Request, token: str) -> None:
    """The admin secret as a bearer token (the CLI), counted against the same limit as log-ins; 401 if wrong."""
    limiter = request.app[LIMITS_KEY].admin
    check_guess(request, limiter, "admin secret")
    secret = request.app[WEB_CONTEXT_KEY].admin_secret
    if not hmac.compare_digest(token.encode(), secret.encode()):
        failed_guess(request, limiter, "admin secret")
        raise ApiError(401, "admin secret required", "pass the admin secret printed by 'pingwatch init'")
    limiter.succeed(client_address(request))


class Auth:
    def __init__(self, store: Store, admin_secret: str, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.admin_secret = admin_secret
        self.clock = clock  # wall time (expiry is stored); tests inject their own to pass days in a moment
        # Media URLs are signed with a key derived from the admin secret: stable across restarts, never stored.
        self.media_key = hmac.new(admin_secret.encode(), b"pingwatch media url v1", hashlib.sha256).digest()
        self._touched: dict[str, float] = {}
        db = store.db
        if _TABLE not in db.table_names():
            db.table(_TABLE).create(
                {"id_hash": str, "csrf": str, "created_at": float, "last_seen": float, "expires_at": float,
                 "user_agent": str, "client": str},
                pk="id_hash",
            )

    # -- sessions ----------------------------------------------------------------------------------------

    def create(self, user_agent: str, client: str) -> tuple[str, Session]:
        now = self.clock()
        self._purge(now)
        sid = secrets.token_urlsafe(32)
        sess = Session(id_hash=_h(sid), csrf=secrets.token_urlsafe(24), created_at=now, last_seen=now,
                       expires_at=now + SESSION_TTL_S)
        self.store.db.table(_TABLE).insert(
            {"id_hash": sess.id_hash, "csrf": sess.csrf, "created_at": now, "last_seen": now,
             "expires_at": sess.expires_at, "user_agent": user_agent[:200], "client": client[:64]}
        )
        return sid, sess

    def lookup(self, sid: str) -> Session | None:
        if not sid or len(sid) > 128 or not sid.isascii():  # ids are ASCII; other bytes are no session of ours
            return None
        row = self.store.db.execute(
            f"SELECT id_hash, csrf, created_at, last_seen, expires_at FROM {_TABLE} WHERE id_hash = ?", [_h(sid)]
        ).fetchone()
        if row is None:
            return None
        sess = Session(*row)
        now = self.clock()
        stored = sess.last_seen
        last = max(stored, self._touched.get(sess.id_hash, 0.0))
        if now >= sess.expires_at or now - last > SESSION_IDLE_S:
            self.delete(sess.id_hash)
            return None
        # Measured from the stored value, not the in-memory one: a session used every few seconds must still
        # reach the database now and then, or a restart (or another log-in's purge) finds it idle since log-in.
        if now - stored > _TOUCH_EVERY_S:
            self.store.db.table(_TABLE).update(sess.id_hash, {"last_seen": now})
        self._touched[sess.id_hash] = now
        sess.last_seen = now
        return sess

    def media_sig(self, id_hash: str, path: str) -> str:
        return hmac.new(self.media_key, f"{id_hash}\n{path}".encode(), hashlib.sha256).hexdigest()[:32]

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


def _sent_key(request: web.Request) -> str:
    """The session key the page sent: the header, or on the WebSocket the ``key.`` subprotocol."""
    key = header_text(request, CSRF_HEADER) or ""
    if not key and request.path == "/api/ui/ws":
        offered = header_text(request, "Sec-WebSocket-Protocol") or ""
        for proto in (p.strip() for p in offered.split(",")):
            if proto.startswith(WS_KEY_PREFIX):
                return proto[len(WS_KEY_PREFIX):]
    return key


def _valid_media_sig(request: web.Request, sess: Session) -> bool:
    sig = request.query.get(MEDIA_SIG, "")
    if request.method not in ("GET", "HEAD") or not sig.isascii() or len(sig) > 64:
        return False
    return hmac.compare_digest(sig.encode(), _auth(request).media_sig(sess.id_hash, request.path).encode())


def require_session(request: web.Request, *, media: bool = False) -> Session:
    """The caller's session, or the admin bearer token (the CLI); 401 otherwise.

    A cookie session also needs the page's session key in ``X-CSRF-Token`` (403 without it), on reads too; a
    ``media`` route also takes a signed URL instead (``media_url``). A state-changing method, and the
    WebSocket, also need the hub's own Origin when one is sent.
    """
    cached = request.get(_REQUEST_SESSION)
    if cached is not None:
        return cached
    token = bearer(request)
    if token is not None:
        check_admin_bearer(request, token)
        now = _auth(request).clock()
        sess = Session("admin", "", now, now, now, via_bearer=True)
    else:
        if not request.secure:
            raise ApiError(401, "the loopback HTTP port takes only the admin bearer token",
                           "open the web UI over HTTPS")
        found = _auth(request).lookup(request.cookies.get(COOKIE, ""))
        if found is None:
            raise ApiError(401, "not logged in", "log in with the admin secret")
        sess = found
        if request.method not in SAFE_METHODS or request.path == "/api/ui/ws":
            check_origin(request)
        sent = _sent_key(request)
        if not (sent and hmac.compare_digest(sent.encode(), sess.csrf.encode())) and not (
                media and _valid_media_sig(request, sess)):
            raise ApiError(403, "missing or wrong CSRF token (the page's session key)", "reload the page")
    request[_REQUEST_SESSION] = sess
    return sess


def media_url(request: web.Request, path: str, query: str = "") -> str:
    """``path`` (plus ``query``) as the page may load it by URL: signed for this session's cookie."""
    sess = request.get(_REQUEST_SESSION)
    params = [query] if query else []
    if sess is not None and not sess.via_bearer:
        params.append(f"{MEDIA_SIG}={_auth(request).media_sig(sess.id_hash, path)}")
    return path + ("?" + "&".join(params) if params else "")


def session_signer(request: web.Request) -> Callable[[str, str], str]:
    """``media_url`` bound to this request's session, for messages sent later (the WebSocket)."""
    def sign(path: str, query: str = "") -> str:
        return media_url(request, path, query)

    return sign


def _set_cookie(request: web.Request, resp: web.StreamResponse, sid: str) -> None:
    resp.set_cookie(COOKIE, sid, max_age=SESSION_TTL_S, path="/", httponly=True, samesite="Strict",
                    secure=request.secure)


# -- handlers --------------------------------------------------------------------------------------------


async def login(request: web.Request) -> web.Response:
    check_origin(request)
    auth = _auth(request)
    limiter = request.app[LIMITS_KEY].admin
    client = client_address(request)
    check_guess(request, limiter, "admin secret")
    body = await json_body(request)
    secret = body.get("secret")
    expected = auth.admin_secret
    if not isinstance(secret, str) or not hmac.compare_digest(secret.encode(), expected.encode()):
        failed_guess(request, limiter, "admin secret")
        raise ApiError(401, "wrong admin secret", "it was printed by 'pingwatch init' and is kept as "
                       "admin_secret in secrets.json in the hub's data directory")
    limiter.succeed(client)
    sid, sess = auth.create(header_text(request, "User-Agent") or "", client)
    log.info("web UI log-in", extra={"client": client})
    # "csrf" is the session key: the page keeps it in its own storage and sends it with every request.
    resp = web.json_response({"ok": True, "csrf": sess.csrf, "expires_at": sess.expires_at})
    _set_cookie(request, resp, sid)
    resp.headers["Cache-Control"] = "no-store"
    return resp


def too_many(wait: float, what: str) -> ApiError:
    secs = max(1, math.ceil(wait))
    err = ApiError(429, f"too many wrong guesses of the {what}; try again in {secs} s",
                   "wrong guesses are slowed for every client and for all of them together")
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
    # Clips and snapshots were served no-store; this also drops anything an older hub let the browser cache.
    resp.headers["Clear-Site-Data"] = '"cache"'
    return resp


async def session_info(request: web.Request) -> web.Response:
    sess = require_session(request)
    # The key is not in this answer: a request that got here already had it, and a cookie alone gets a 403.
    resp = web.json_response({"authenticated": True, "expires_at": sess.expires_at,
                              "idle_timeout_s": SESSION_IDLE_S})
    resp.headers["Cache-Control"] = "no-store"
    return resp


# Set by hub.web.ui: closes the WebSockets of a session that logged out.
LOGOUT_HOOK_KEY: web.AppKey[Any] = web.AppKey("ui_logout_hook", object)
