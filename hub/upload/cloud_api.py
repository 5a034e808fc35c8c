"""The hub's client for the ping-watch cloud API (httpx): linking, camera mirroring, the three calls of an
event upload (initiate, a fresh upload URL, finalize), and the hub channel (an event's start with its snapshot,
the hub's state, commands from the account and their results).

Every failure is one of three exceptions, so the outbox can decide without looking at HTTP:
``CloudRefused`` (the cloud said no for a reason that a retry will not change: over the plan, no credits,
rejected; the reason is kept and shown), ``CloudRetry`` (try again later: down, slow, 5xx, 429 with its
``retry_after_s``, an upload the cloud wants again), ``CloudAuthError`` (the hub token is unknown or revoked:
the hub was unlinked).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import httpx

log = logging.getLogger(__name__)

API = "/api/v1"


class CloudError(Exception):
    def __init__(self, message: str, *, status: int | None = None, reason: str | None = None,
                 hint: str | None = None, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.reason = reason
        self.hint = hint
        self.retry_after_s = retry_after_s


class CloudRefused(CloudError):
    """The cloud refused this event for good (plan limits, credits, rejected clip)."""


class CloudRetry(CloudError):
    """A passing failure: the cloud is down or busy, or asks for the clip again."""


class CloudAuthError(CloudError):
    """The hub token is missing, unknown or revoked: link the hub again."""


@dataclass(frozen=True)
class UploadTicket:
    cloud_event_id: str
    state: str
    blob: str
    upload_url: str | None  # None once the cloud has the clip (a retried initiate of a finished event)


# Statuses the cloud uses for limits that pass with time (hourly uploads) vs. those that do not.
_RETRY_STATUSES = {408, 425, 429, 500, 502, 503, 504}
# 409 "blob_missing" / 422 "corrupt": the clip must be uploaded (again); not a refusal.
_REUPLOAD_REASONS = {"blob_missing", "corrupt", "size_mismatch", "md5_mismatch"}


class CloudApi:
    def __init__(self, base_url: str, token: str | None = None, *, timeout_s: float = 15.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._client = httpx.AsyncClient(base_url=self.base_url, timeout=timeout_s, transport=transport,
                                         headers={"User-Agent": "ping-watch-hub"})

    async def close(self) -> None:
        await self._client.aclose()

    # -- linking (no hub token yet) ------------------------------------------------------------------------

    async def start_link(self, hub_name: str | None) -> dict[str, Any]:
        return await self._call("POST", f"{API}/hub-links", json={"hub_name": hub_name}, auth=False)

    async def poll_link(self, poll_token: str) -> dict[str, Any]:
        return await self._call("POST", f"{API}/hub-links/claim", json={"poll_token": poll_token}, auth=False)

    # -- the hub's own calls -----------------------------------------------------------------------------

    async def whoami(self) -> dict[str, Any]:
        return await self._call("GET", f"{API}/hub")

    async def put_cameras(self, cameras: list[dict[str, str]]) -> dict[str, Any]:
        return await self._call("PUT", f"{API}/hub/cameras", json={"cameras": cameras})

    async def initiate(self, meta: dict[str, Any]) -> UploadTicket:
        return _ticket(await self._call("POST", f"{API}/events", json=meta))

    async def renew_upload_url(self, cloud_event_id: str) -> UploadTicket:
        return _ticket(await self._call("POST", f"{API}/events/{cloud_event_id}/upload-url"))

    async def finalize(self, cloud_event_id: str) -> dict[str, Any]:
        return await self._call("POST", f"{API}/events/{cloud_event_id}/finalize")

    # -- the hub channel (hub/upload/starts.py, hub_state.py, commands.py) ------------------------------------

    async def report_start(self, body: dict[str, Any]) -> dict[str, Any]:
        """An event started (idempotent by the hub's event id; a retry may add the snapshot the first lacked)."""
        return await self._call("POST", f"{API}/hub/event-starts", json=body)

    async def put_state(self, body: dict[str, Any]) -> None:
        await self._call("PUT", f"{API}/hub/state", json=body)

    async def commands(self, wait_s: int, *, timeout_s: float | None = None) -> list[dict[str, Any]]:
        """Pending commands; the cloud holds the request up to ``wait_s`` when there are none (a long poll, so
        the read timeout must be longer than the wait)."""
        body = await self._call("GET", f"{API}/hub/commands", params={"wait_s": wait_s}, timeout_s=timeout_s)
        found = body.get("commands")
        return [c for c in found if isinstance(c, dict)] if isinstance(found, list) else []

    async def command_result(self, command_id: str, body: dict[str, Any]) -> None:
        """The outcome of a command (the cloud keeps the first one it gets: a retry is harmless)."""
        await self._call("POST", f"{API}/hub/commands/{command_id}/result", json=body)

    # -- plumbing ----------------------------------------------------------------------------------------

    async def _call(self, method: str, path: str, *, json: Any = None, auth: bool = True,
                    params: dict[str, Any] | None = None, timeout_s: float | None = None) -> dict[str, Any]:
        headers = {}
        if auth:
            if not self._token:
                raise CloudAuthError("the hub is not linked to a cloud account", hint="run 'pingwatch cloud link'")
            headers["Authorization"] = f"Bearer {self._token}"
        try:
            r = await self._client.request(method, path, json=json, headers=headers, params=params,
                                           timeout=timeout_s if timeout_s is not None else httpx.USE_CLIENT_DEFAULT)
        except httpx.HTTPError as exc:
            raise CloudRetry(f"the cloud API at {self.base_url} is not answering ({type(exc).__name__})",
                             hint="the clip stays on the hub and is sent when the cloud is back") from None
        try:
            body = r.json() if r.content else {}
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        if r.status_code < 400:
            return body
        message = str(body.get("error") or f"HTTP {r.status_code}")
        reason = body.get("reason")
        hint = body.get("hint")
        retry_after = _retry_after(r)
        if r.status_code == 401:
            raise CloudAuthError(message, status=401, reason=reason, hint=hint or "link the hub again")
        if r.status_code in _RETRY_STATUSES or reason in _REUPLOAD_REASONS:
            raise CloudRetry(message, status=r.status_code, reason=reason, hint=hint, retry_after_s=retry_after)
        raise CloudRefused(message, status=r.status_code, reason=reason, hint=hint, retry_after_s=retry_after)


def _ticket(body: dict[str, Any]) -> UploadTicket:
    return UploadTicket(cloud_event_id=str(body["id"]), state=str(body["state"]), blob=str(body["blob"]),
                        upload_url=body.get("upload_url"))


def _retry_after(r: httpx.Response) -> float | None:
    value = r.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
