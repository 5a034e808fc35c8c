"""The hub's uploader: every finished event of a linked hub goes to the cloud, oldest first, at least once.

Data flow: the recorder's ``event.ended`` on the bus → a row in the outbox (SQLite, survives restarts) → one
background task: initiate (the cloud API records the event and returns an upload SAS; idempotent by the hub's
event id) → the clip straight to Blob storage in blocks (``blob_upload``: MD5 per block, resumable from a
journal) → finalize (the API checks size, MD5 and duration, charges credits and queues the analysis).

Failures: a cloud or storage that is down, slow or answers 5xx/429 → the row waits (exponential backoff with
jitter, or the server's ``Retry-After``) and the clip stays local; an expired SAS → a fresh one; a clip the
cloud found corrupt → uploaded again from the start; a refusal for good (over the plan, no credits, rejected)
→ the row is ``refused`` with the reason, shown by the CLI, the web UI and MQTT; an unknown hub token → uploads
pause until the hub is linked again. Every state change is published on the bus as ``upload.state``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hub.bus import Bus
from hub.clips import part_path_for
from hub.config import CloudConfig
from hub.datadir import contained_file
from hub.retry import Wakeup, backoff_s
from hub.store import Store
from hub.upload.blob_upload import (
    BlobAlreadyCommitted,
    SasExpired,
    TokenBucket,
    UploadError,
    UploadResult,
    file_md5,
    md5_b64,
    upload_file,
)
from hub.upload.cloud_api import CloudApi, CloudAuthError, CloudRefused, CloudRetry, UploadTicket
from hub.upload.link import CloudLink
from hub.upload.outbox import Outbox, OutboxRow

log = logging.getLogger(__name__)

RETRY_BASE_S = 2.0
UNLINKED_RECHECK_S = 30.0  # how often a paused uploader looks for a (new) link: linking needs no restart
MAX_BOX_ROWS = 200  # the motion boxes sent with an event (the worker's hint), capped to keep the request small
_MIME = {".mp4": "video/mp4", ".webm": "video/webm"}
_OPEN_EVENT_STATUSES = ("active", "recording")


class Uploader:
    def __init__(self, config: CloudConfig, store: Store, bus: Bus, clips_dir: Path, journal_dir: Path,
                 load_link: Callable[[], CloudLink | None], *, retry_base_s: float = RETRY_BASE_S,
                 api_factory: Callable[[CloudLink], CloudApi] | None = None) -> None:
        self._config = config
        self._store = store
        self._bus = bus
        self._clips_dir = clips_dir
        self._journal_dir = journal_dir
        self._load_link = load_link
        self._retry_base_s = retry_base_s
        self._api_factory = api_factory or (lambda link: CloudApi(link.api_url, link.hub_token))
        self.outbox = Outbox(store)
        self._bucket = TokenBucket(config.upload_kbps * 125) if config.upload_kbps else None
        self._wake = Wakeup()
        self._task: asyncio.Task[None] | None = None
        self._listener: asyncio.Task[None] | None = None
        self._api: CloudApi | None = None
        self._api_link: CloudLink | None = None
        self._cameras_synced: tuple[tuple[str, str], ...] | None = None
        self._closing: set[asyncio.Future[None]] = set()
        self.uploaded = 0  # events finalized by this process (for tests and status)

    # -- lifecycle ---------------------------------------------------------------------------------------

    async def start(self) -> None:
        if not self._config.enabled:
            log.info("cloud uploads are off (cloud.enabled: false)")
            return
        sub = self._bus.subscribe("event.ended", "event.deleted", "camera.", maxsize=1024)
        self._listener = asyncio.create_task(self._listen(sub), name="uploader-bus")
        self._task = asyncio.create_task(self._run(), name="uploader")

    async def stop(self) -> None:
        """Stop between steps; what is half done resumes at the next start (the outbox and journals are on disk)."""
        for task in (self._listener, self._task):
            if task is not None:
                task.cancel()
        await asyncio.gather(*(t for t in (self._listener, self._task) if t is not None), return_exceptions=True)
        self._listener = self._task = None
        if self._api is not None:
            await self._api.close()
            self._api = None

    def status(self) -> dict[str, Any]:
        link = self._load_link()
        return {"linked": link is not None, "api_url": link.api_url if link else None,
                "hub_id": link.hub_id if link else None, "outbox": self.outbox.counts(),
                "pending": self.outbox.open_count()}

    # -- the bus -----------------------------------------------------------------------------------------

    async def _listen(self, sub: Any) -> None:
        try:
            async for msg in sub:
                if msg.topic == "event.ended":
                    self.enqueue_finished(msg.data.get("event") or {})
                elif msg.topic == "event.deleted":
                    self.outbox.forget(str(msg.data.get("event_id")))
                elif msg.topic.startswith("camera."):
                    self._cameras_synced = None  # added, removed or renamed: mirror again before the next upload
        finally:
            sub.close()

    def enqueue_finished(self, event: dict[str, Any]) -> bool:
        """Queue a finished event with a clip, if the hub is linked. True when it was added."""
        eid = event.get("id")
        if not eid or not event.get("clip_path") or self._load_link() is None:
            return False
        added = self.outbox.enqueue(str(eid))
        if added:
            self._publish(str(eid), "pending", None)
            self._wake.set()
        return added

    # -- the worker loop ---------------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            link = self._load_link()
            if link is None:
                await self._sleep(UNLINKED_RECHECK_S)
                continue
            row, next_at = self.outbox.next_due(time.time())
            if row is None:
                await self._sleep(None if next_at is None else max(0.0, next_at - time.time()))
                continue
            try:
                await self._upload(link, row)
            except CloudAuthError as exc:
                log.error("the cloud refused the hub's token; uploads pause until the hub is linked again",
                          extra={"error": exc.message, "hint": "run 'pingwatch cloud link'"})
                await self._sleep(UNLINKED_RECHECK_S)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("upload failed unexpectedly; retrying later", extra={"event_id": row.event_id})
                self._retry_later(row, f"{type(exc).__name__}: {exc}", None)

    async def _sleep(self, seconds: float | None) -> None:
        """Wait for a new event (the bus wakes us) or until the next retry is due."""
        await self._wake.wait(seconds)

    def _client(self, link: CloudLink) -> CloudApi:
        if self._api is None or self._api_link != link:
            if self._api is not None:  # the link changed: close the old client without waiting for it
                task = asyncio.ensure_future(self._api.close())
                self._closing.add(task)  # asyncio holds tasks weakly: keep it until it is done
                task.add_done_callback(self._closing.discard)
            self._api, self._api_link, self._cameras_synced = self._api_factory(link), link, None
        return self._api

    async def _upload(self, link: CloudLink, row: OutboxRow) -> None:
        ev = self._store.get_event(row.event_id)
        if ev is None:
            self.outbox.forget(row.event_id)
            return
        if ev.get("status") in _OPEN_EVENT_STATUSES:
            self._retry_later(row, "the event is still recording", self._retry_base_s, count=False)
            return
        clip = contained_file(self._clips_dir, ev.get("clip_path"))
        mime = _MIME.get(clip.suffix.lower()) if clip is not None else None
        if clip is None and self._awaits_recovery(ev):
            # The disk was full when the clip was finished: its complete .part waits for the next start's
            # recovery, which writes the clip under this name. Not a refusal: it goes once it is there.
            self._retry_later(row, "the clip is waiting to be finished (the disk was full); it is sent once the "
                                   "hub has finished it", None)
            return
        if clip is None or mime is None:
            self._refuse(row, "no_clip", "the event's clip is not on the hub (deleted, or outside the clips folder)")
            return
        api = self._client(link)
        try:
            await self._sync_cameras(api)
            md5 = await asyncio.to_thread(file_md5, clip)
            ticket = await api.initiate(self._metadata(ev, clip, mime, md5))
            self._set(row, "uploading", cloud_event_id=ticket.cloud_event_id)
            sent = await self._send(api, row, ticket, clip, mime, md5) if ticket.upload_url is not None else None
            self._set(row, "finalizing", cloud_event_id=ticket.cloud_event_id)
            result = await api.finalize(ticket.cloud_event_id)
        except CloudRefused as exc:
            self._refuse(row, exc.reason or "refused", exc.message + (f" ({exc.hint})" if exc.hint else ""))
            return
        except CloudRetry as exc:
            if exc.reason in ("corrupt", "size_mismatch", "md5_mismatch", "blob_missing"):
                self._journal(row).unlink(missing_ok=True)  # the cloud dropped the bad copy: send it all again
            self._retry_later(row, exc.message, exc.retry_after_s)
            return
        except UploadError as exc:
            self._retry_later(row, str(exc), None)
            return
        except ValueError as exc:  # the file changed since its MD5 was taken: take it again next time
            self._retry_later(row, str(exc), None)
            return
        self._journal(row).unlink(missing_ok=True)
        self.outbox.update(row.event_id, state="done", reason=None, attempts=row.attempts + 1)
        self.uploaded += 1
        self._publish(row.event_id, "done", None, cloud_state=result.get("state"))
        log.info("event uploaded", extra={"event_id": row.event_id, "cloud_event_id": ticket.cloud_event_id,
                                          "cloud_state": result.get("state"), "credits": result.get("credits"),
                                          # blocks an earlier, interrupted try had staged: not sent again
                                          "blocks_resumed": sent.blocks_skipped if sent else 0,
                                          "blocks_sent": sent.blocks_sent if sent else 0})

    async def _send(self, api: CloudApi, row: OutboxRow, ticket: UploadTicket, clip: Path, mime: str,
                    md5: bytes) -> UploadResult | None:
        """Upload the clip (resuming from its journal); None when the blob was committed by an earlier try."""
        url = ticket.upload_url
        for _ in range(2):  # the second time with a fresh SAS, should the first have expired
            assert url is not None
            try:
                # md5 was hashed from this file for initiate a moment ago: handed over, not hashed again (each
                # block's MD5 still is, for the service; the cloud's worker re-hashes the whole clip).
                return await upload_file(clip, url, content_type=mime, md5=md5, verify_md5=False,
                                         journal=self._journal(row), bucket=self._bucket)
            except BlobAlreadyCommitted:
                return None  # an earlier try committed it; finalize checks size and MD5
            except SasExpired:
                url = (await api.renew_upload_url(ticket.cloud_event_id)).upload_url
                if url is None:
                    return None  # the cloud has the clip already
        raise CloudRetry("the storage refused two upload URLs in a row")

    async def _sync_cameras(self, api: CloudApi) -> None:
        cams = tuple(sorted((c["id"], c["name"]) for c in self._store.list_cameras()))
        if cams != self._cameras_synced:
            await api.put_cameras([{"id": cid, "name": name} for cid, name in cams])
            self._cameras_synced = cams

    def _metadata(self, ev: dict[str, Any], clip: Path, mime: str, md5: bytes) -> dict[str, Any]:
        start, end = float(ev["start"]), float(ev.get("end") or ev["start"])
        triggers = ev.get("triggers") or ["motion"]
        duration = ev.get("clip_duration_s") or max(0.001, end - start)
        return {
            "event_id": ev["id"], "camera_id": ev["camera_id"], "started_at": _iso(start), "ended_at": _iso(end),
            "trigger": str(triggers[0]), "mime": mime, "size": clip.stat().st_size, "md5": md5_b64(md5),
            "duration_s": round(float(duration), 3),
            "motion": {"boxes": (ev.get("boxes") or [])[:MAX_BOX_ROWS], "peak_motion": ev.get("peak_motion"),
                       "pre_roll_s": ev.get("pre_roll_s"), "triggers": triggers},
        }

    # -- state -------------------------------------------------------------------------------------------

    def _journal(self, row: OutboxRow) -> Path:
        self._journal_dir.mkdir(parents=True, exist_ok=True)
        return self._journal_dir / f"{row.event_id}.json"

    def _set(self, row: OutboxRow, state: str, cloud_event_id: str | None = None) -> None:
        self.outbox.update(row.event_id, state=state, cloud_event_id=cloud_event_id, attempts=row.attempts)
        self._publish(row.event_id, state, None)

    def _awaits_recovery(self, ev: dict[str, Any]) -> bool:
        stored = ev.get("clip_path")
        if ev.get("status") != "partial" or not isinstance(stored, str) or not stored:
            return False
        return contained_file(self._clips_dir, str(part_path_for(Path(stored)))) is not None

    def _refuse(self, row: OutboxRow, reason: str, message: str) -> None:
        self.outbox.update(row.event_id, state="refused", reason=message, attempts=row.attempts + 1)
        log.warning("the cloud refused an event; its clip stays on the hub",
                    extra={"event_id": row.event_id, "reason": reason, "error": message})
        self._publish(row.event_id, "refused", message, refusal=reason)

    def _retry_later(self, row: OutboxRow, why: str, after_s: float | None, count: bool = True) -> None:
        attempts = row.attempts + 1 if count else row.attempts
        if after_s is None:
            after_s = backoff_s(attempts, self._retry_base_s, self._config.retry_max_s)
        state = self.outbox.get(row.event_id)
        self.outbox.update(row.event_id, state=state.state if state else row.state, reason=why, attempts=attempts,
                           next_at=time.time() + after_s)
        log.info("upload will be retried", extra={"event_id": row.event_id, "error": why,
                                                  "retry_in_s": round(after_s, 1), "attempts": attempts})
        self._publish(row.event_id, state.state if state else row.state, why, retry_in_s=round(after_s, 1))

    def _publish(self, event_id: str, state: str, reason: str | None, **extra: Any) -> None:
        self._bus.publish("upload.state", event_id=event_id, state=state, reason=reason,
                          pending=self.outbox.open_count(), **extra)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).isoformat()
