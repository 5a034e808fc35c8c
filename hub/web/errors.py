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
    except web.HTTPRequestEntityTooLarge as exc:
        raise ApiError(413, f"request body too large (limit {exc.max_size} bytes)") from None
    except web.HTTPException as exc:
        if not request.path.startswith("/api/") or exc.content_type == "application/json":
            raise
        raise ApiError(exc.status, exc.reason) from None
    except Exception:
        log.exception("unhandled error", extra={"path": request.path})
        raise ApiError(500, "internal error; see the hub's log") from None


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object body; 413 over the size limit, 400 when it is not a JSON object."""
    limit = request.app._client_max_size
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, f"request body too large (limit {limit} bytes)")
    raw = await request.read()
    try:
        body = json.loads(raw)
    except ValueError:
        raise ApiError(400, "body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "body must be a JSON object")
    return body


def bearer(request: web.Request) -> str | None:
    auth = request.headers.get("Authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip() or None
    return None
