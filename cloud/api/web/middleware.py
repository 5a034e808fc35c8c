"""The one place where domain errors become HTTP: status code, JSON ``{"error", "hint", "reason"}``, and
``Retry-After`` for limits. aiohttp's own refusals (unknown path, wrong method, body over the limit) get the
same JSON shape. Anything unexpected is logged and answered 500 without details (and is a bug to fix)."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Awaitable, Callable

from aiohttp import web

from cloud.api import after_answer, errors
from cloud.api.web.registry import SERVICES_KEY

log = logging.getLogger(__name__)

STATUS: dict[type[errors.DomainError], int] = {
    errors.InvalidInput: 400,
    errors.Unauthenticated: 401,
    errors.OutOfCredits: 402,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.UploadNotReady: 409,
    errors.Gone: 410,
    errors.TooLarge: 413,
    errors.UploadCorrupt: 422,
    errors.EventRejected: 422,
    errors.RateLimited: 429,
    errors.Unavailable: 503,
}


def status_for(exc: errors.DomainError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 400


def error_response(status: int, error: str, reason: str, hint: str | None = None,
                   retry_after_s: float | None = None) -> web.Response:
    body: dict[str, object] = {"error": error, "hint": hint, "reason": reason}
    headers = {}
    if retry_after_s is not None:
        secs = max(1, math.ceil(retry_after_s))
        body["retry_after_s"] = secs
        headers["Retry-After"] = str(secs)
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return web.Response(status=status, text=json.dumps(body), content_type="application/json", headers=headers)


@web.middleware
async def answer_first(request: web.Request,
                       handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """Send the answer, then start what the handler left for after it (cloud.api.after_answer)."""
    with after_answer.collecting() as pending:
        response = await handler(request)
    if pending:
        try:
            await response.prepare(request)  # aiohttp's own prepare and write_eof after this are no-ops
            await response.write_eof()
        finally:
            for start in pending:
                start()
    return response


@web.middleware
async def json_errors(request: web.Request,
                      handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    try:
        return await handler(request)
    except errors.DomainError as exc:
        return error_response(status_for(exc), exc.error, exc.reason, exc.hint, exc.retry_after_s)
    except web.HTTPRequestEntityTooLarge:
        limit = request.app[SERVICES_KEY].ctx.config.server.max_body_bytes
        return error_response(413, f"request body too large (limit {limit} bytes)", "body_too_large",
                              "send less; clips go to the upload URL, not to the API")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        reason = {404: "not_found", 405: "method_not_allowed"}.get(exc.status, "http_error")
        return error_response(exc.status, exc.reason, reason, "see /api/openapi.json")
    except ConnectionResetError:
        raise  # the client went away mid-request: nobody to answer
    except Exception:
        log.exception("unhandled error", extra={"path": request.path, "method": request.method})
        return error_response(500, "internal error", "internal", "this is a bug; the API's log has details")
