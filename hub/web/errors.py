"""The web edge's error handling: every failure answers JSON ``{"error": "...", "hint": "..."}``.

Domain errors (``hub.errors.HubError``) are mapped to HTTP status codes here and only here, so the phone page,
the web UI and the CLI show the user what to do instead of a stack trace.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from hub.errors import ErrorKind, HubError

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

STATUS_OF_KIND: dict[ErrorKind, int] = {
    ErrorKind.INVALID: 400,
    ErrorKind.REFUSED: 403,
    ErrorKind.NOT_FOUND: 404,
    ErrorKind.CONFLICT: 409,
    ErrorKind.TOO_LARGE: 413,
    ErrorKind.UNSUPPORTED: 415,
    ErrorKind.UNAVAILABLE: 503,
}


class ApiError(web.HTTPException):
    def __init__(self, status: int, error: str, hint: str | None = None) -> None:
        self.status_code = status
        body = {"error": error} | ({"hint": hint} if hint else {})
        super().__init__(text=json.dumps(body), content_type="application/json")


def from_domain(exc: HubError) -> ApiError:
    return ApiError(STATUS_OF_KIND[exc.kind], exc.message, exc.hint)


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError:
        raise
    except HubError as exc:
        raise from_domain(exc) from None
    except web.HTTPRequestEntityTooLarge:
        # aiohttp does not keep the limit on the exception (no ``max_size`` attribute): read it from the app.
        raise too_large(request) from None
    except web.HTTPException as exc:
        if not request.path.startswith("/api/") or exc.content_type == "application/json":
            raise
        raise ApiError(exc.status, exc.reason) from None
    except UnicodeError:
        # Text the client sent that is not valid Unicode (a lone surrogate from JSON, header bytes that are not
        # UTF-8) reached code that must encode it. The known places check first; this is the net under them.
        log.warning("request text is not valid Unicode", extra={"path": request.path})
        raise ApiError(400, "request text is not valid UTF-8") from None
    except Exception:
        log.exception("unhandled error", extra={"path": request.path})
        raise ApiError(500, "internal error; see the hub's log") from None


def too_large(request: web.Request) -> ApiError:
    return ApiError(413, f"request body too large (limit {request.app._client_max_size} bytes)")


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object body; 413 over the size limit (declared or chunked), 400 when it is not a JSON
    object, is nested deeper than ``MAX_JSON_DEPTH`` or holds text that is not valid Unicode."""
    limit = request.app._client_max_size
    if request.content_length is not None and request.content_length > limit:
        raise too_large(request)
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:  # a chunked body has no length up front: aiohttp stops at the limit
        raise too_large(request) from None
    try:
        body = json.loads(raw)
    except RecursionError:  # the C parser recurses per level: 5000 '[' exhaust the stack before any check
        raise ApiError(400, f"JSON nested too deeply (at most {MAX_JSON_DEPTH} levels)") from None
    except ValueError:  # also UnicodeDecodeError: bytes that are not UTF-8
        raise ApiError(400, "body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "body must be a JSON object")
    check_json(body)
    return body


MAX_JSON_DEPTH = 16  # the deepest body the hub takes is settings.zones: 4 levels


def check_json(value: Any) -> None:
    """400 unless ``value`` nests at most ``MAX_JSON_DEPTH`` levels and every string (keys too) is valid Unicode.

    JSON's ``\\ud800`` escapes decode to lone surrogates, which Python keeps in a ``str`` but which cannot be
    encoded: SQLite, hashing and the SDP parser would fail on them later, as a 500. Iterative, so a deep value
    cannot exhaust the stack here either."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if not valid_text(item):
                raise ApiError(400, "text in the body is not valid Unicode (lone surrogate)")
        elif isinstance(item, (dict, list)):
            if depth > MAX_JSON_DEPTH:
                raise ApiError(400, f"JSON nested too deeply (at most {MAX_JSON_DEPTH} levels)")
            if isinstance(item, dict):
                stack.extend((k, depth) for k in item)
                stack.extend((v, depth + 1) for v in item.values())
            else:
                stack.extend((v, depth + 1) for v in item)


def valid_text(text: str) -> bool:
    """True when ``text`` encodes to UTF-8: no lone surrogates (from JSON escapes or undecodable header bytes)."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def header_text(request: web.Request, name: str) -> str | None:
    """A header's value, or None when absent or not valid UTF-8 (aiohttp keeps undecodable bytes as surrogates;
    nothing the hub expects in a header is anything but ASCII anyway)."""
    value = request.headers.get(name)
    if value is None or not valid_text(value):
        return None
    return value


def bearer(request: web.Request) -> str | None:
    """The ``Authorization: Bearer`` token. Every token the hub issues is ASCII; any other text is no token of
    the hub's, so it reads as a wrong one (401), never as an error."""
    auth = request.headers.get("Authorization", "")
    if auth[:7].lower() == "bearer ":
        token = auth[7:].strip()
        if not token:
            return None
        return token if token.isascii() else NOT_A_TOKEN
    return None


NOT_A_TOKEN = "\x00"  # stands for a bearer value that is not ASCII: matches no secret and no token hash
