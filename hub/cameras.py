"""The live cameras: one pipeline per camera, fed by a WebRTC peer (phones) or a file/RTSP reader.

Owns the peers' lifetimes (a phone that reconnects replaces its old peer; a revoked camera loses its peer at
once; one peer per camera at any time, however many offers arrive together) and the online/offline state derived
from when media last arrived.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from hub.errors import CameraError, ErrorKind
from hub.ingest.file import RTSP_PREFIXES, FileCamera
from hub.ingest.webrtc import CameraPeer, PeerConfig
from hub.pipeline import CameraPipeline, PipelineContext

log = logging.getLogger(__name__)


# Fire-and-forget tasks are held here until they end: the event loop keeps only a weak reference to a task, and
# one nobody references may be garbage-collected before it has run to the end.
_background: set[asyncio.Future[Any]] = set()


def _spawn(aw: Awaitable[Any]) -> None:
    task = asyncio.ensure_future(aw)
    _background.add(task)
    task.add_done_callback(_background.discard)


class CameraManager:
    def __init__(self, ctx: PipelineContext) -> None:
        self.ctx = ctx
        self.config = ctx.config
        self.store = ctx.store
        self.bus = ctx.bus
        self.pipelines: dict[str, CameraPipeline] = {}
        self.peers: dict[str, CameraPeer] = {}
        self.sources: dict[str, FileCamera] = {}
        self._source_tasks: dict[str, asyncio.Task[None]] = {}  # camera id -> its source's retry loop
        self._tasks: list[asyncio.Task[Any]] = []
        self._on_removed: list[Callable[[str], Awaitable[None]]] = []
        self._offer_locks: dict[str, asyncio.Lock] = {}
        self.closing = False

    def add_removal_listener(self, listener: Callable[[str], Awaitable[None]]) -> None:
        """``await listener(camera_id)`` when a camera is revoked or removed (the live view closes its relays)."""
        self._on_removed.append(listener)

    # -- lifecycle -------------------------------------------------------------------------------------

    async def start(self) -> None:
        for cam in self.config.cameras:
            kind = "rtsp" if cam.source.startswith(RTSP_PREFIXES) else "file"
            self.store.ensure_static_camera(cam.id, cam.name or cam.id, kind)
            if not self._active(cam.id):
                # Revoked: it stays stopped across restarts until it is removed from the config file.
                log.info("camera revoked; not started", extra={"camera_id": cam.id})
                continue
            pipe = self.pipeline(cam.id)
            source = FileCamera(
                cam.source, pipe, realtime=True, loop=cam.loop, detect_fps=self.config.ingest.detect_fps,
                detect_width=self.config.ingest.detect_width, detect_url=cam.detect_source,
                open_timeout_s=cam.open_timeout_s, options=cam.ffmpeg_options,
                # Read per packet: the camera's sound trigger switched off (settings, live) stops AAC decoding.
                decode_audio=functools.partial(_sound_on, pipe),
                on_detect_state=pipe.set_detect_state,
            )
            if cam.detect_source:
                pipe.expect_detect_stream()
            self.sources[cam.id] = source
            task = asyncio.create_task(self._run_source(cam.id, source), name=f"source-{cam.id}")
            self._source_tasks[cam.id] = task
            self._tasks.append(task)
        self._tasks.append(asyncio.create_task(self._watch_online(), name="camera-watchdog"))
        self._tasks.append(asyncio.create_task(self._watch_settings(), name="camera-settings"))

    async def stop(self) -> None:
        """Stop every source and peer, finish open clips (their events reach the bus), mark cameras offline."""
        self.closing = True
        for source in self.sources.values():
            await source.stop()
        for peer in list(self.peers.values()):
            await peer.close()
        self.peers.clear()
        for pipe in self.pipelines.values():
            await pipe.close()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for cid in self.pipelines:
            self.store.update_camera(cid, online=0)

    async def _run_source(self, camera_id: str, source: FileCamera) -> None:
        backoff = 1.0
        while not self.closing:
            try:
                await source.run()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a broken source must not take the hub down
                log.warning("camera source failed; retrying", extra={"camera_id": camera_id, "error": str(exc),
                                                                      "retry_in_s": backoff})
                await asyncio.sleep(backoff)  # retry pacing, not synchronisation
                backoff = min(backoff * 2, 30.0)

    def pipeline(self, camera_id: str) -> CameraPipeline:
        """The camera's pipeline, made on first use (a phone's first offer, a configured source)."""
        pipe = self.pipelines.get(camera_id)
        if pipe is None:
            pipe = self.pipelines[camera_id] = CameraPipeline(
                self.ctx, camera_id, on_live=lambda cid: self._set_online(cid, True))
        return pipe

    # -- phones ----------------------------------------------------------------------------------------

    def _offer_lock(self, camera_id: str) -> asyncio.Lock:
        lock = self._offer_locks.get(camera_id)
        if lock is None:
            lock = self._offer_locks[camera_id] = asyncio.Lock()
        return lock

    async def accept_offer(self, camera_id: str, offer: dict[str, Any]) -> dict[str, Any]:
        """Answer a phone's offer with a new peer that replaces the camera's old one. A bad offer raises
        ``SignalingError`` and changes nothing.

        One peer per camera, always: offers for one camera are answered one at a time (20 concurrent offers with
        one token used to leave ~10 peers, each with its UDP sockets, for good), and the camera is checked again
        once the lock is held, since it may have been revoked while the offer waited."""
        async with self._offer_lock(camera_id):
            if self.closing:
                raise CameraError(ErrorKind.UNAVAILABLE, "the hub is shutting down", "retry in a moment")
            if not self._active(camera_id):
                raise CameraError(ErrorKind.REFUSED, "this camera was revoked or removed",
                                  "pair this camera with the hub again")
            pipe = self.pipeline(camera_id)
            ing = self.config.ingest
            holder: list[CameraPeer] = []
            peer = CameraPeer(
                camera_id, pipe,
                PeerConfig(keyframe_interval_s=ing.keyframe_interval_s, bitrate_kbps=ing.bitrate_kbps,
                           read_interval_ms=ing.read_interval_ms, decode_record=ing.decode_record,
                           connect_timeout_s=ing.connect_timeout_s),
                on_state=lambda state: self._on_peer_state(camera_id, state, holder[0] if holder else None),
            )
            holder.append(peer)
            try:
                # Validated before the live peer is touched: a bad offer changes nothing.
                answer = await peer.accept(offer)
            except BaseException:
                await peer.close()
                raise
            old = self.peers.pop(camera_id, None)
            if old is not None:
                await old.close()
            pipe.on_broken()  # a new peer is a new stream: nothing buffered before it can be continued
            self.peers[camera_id] = peer
        log.info("camera connected", extra={"camera_id": camera_id})
        return answer

    def _active(self, camera_id: str) -> bool:
        cam = self.store.get_camera(camera_id)
        return cam is not None and cam["revoked_at"] is None

    def _on_peer_state(self, camera_id: str, state: str, peer: CameraPeer | None) -> None:
        # A replaced peer closing (the phone reconnected) says nothing about the camera: only the current one does.
        if state in ("failed", "closed") and peer is not None and self.peers.get(camera_id) is peer:
            self.peers.pop(camera_id, None)
            if state == "failed":
                _spawn(peer.close())
            self._set_online(camera_id, False)

    async def revoke(self, camera_id: str) -> bool:
        """Drop a camera's token, peer, pipeline and live views at once. False if it was not active (what it
        still owns is closed all the same)."""
        revoked = self.store.revoke_camera(camera_id)
        await self._drop(camera_id)
        if revoked:
            self.bus.publish("camera.removed", camera_id=camera_id)
        return revoked

    async def remove(self, camera_id: str) -> bool:
        """Revoke (closing all it owns), then forget the camera's row. False if there was no such camera."""
        if self.store.get_camera(camera_id) is None:
            return False
        await self.revoke(camera_id)
        return self.store.remove_camera(camera_id)

    async def _drop(self, camera_id: str) -> None:
        """Close everything the camera owns. Under its offer lock: an offer being answered finishes first and is
        closed here, and an offer waiting for the lock finds the camera revoked.

        A file/RTSP/demo camera's source is stopped before its pipeline closes: left running, it fed the closed
        pipeline, which went on detecting, recording and publishing for a camera that no longer exists."""
        source = self.sources.pop(camera_id, None)
        task = self._source_tasks.pop(camera_id, None)
        if source is not None:
            await source.stop()
        if task is not None:
            task.cancel()  # its retry loop may be waiting to open the source again
            await asyncio.gather(task, return_exceptions=True)  # after the source's last hand-offs have run
            self._tasks.remove(task)
        async with self._offer_lock(camera_id):
            peer = self.peers.pop(camera_id, None)
            if peer is not None:
                await peer.close()
            pipe = self.pipelines.pop(camera_id, None)
            if pipe is not None:
                await pipe.close()
        for listener in self._on_removed:
            await listener(camera_id)

    # -- control ---------------------------------------------------------------------------------------

    def apply_armed(self) -> None:
        """Arm state changed (CLI, web UI, MQTT, schedule): every engine learns its effective state."""
        for cid, pipe in self.pipelines.items():
            pipe.set_armed(self.ctx.is_armed(cid))

    async def _watch_settings(self) -> None:
        sub = self.bus.subscribe("camera.settings")
        try:
            async for msg in sub:
                pipe = self.pipelines.get(msg.data.get("camera_id", ""))
                if pipe is not None:
                    pipe.apply_settings()
        finally:
            sub.close()

    # -- online state ----------------------------------------------------------------------------------

    def _set_online(self, camera_id: str, online: bool) -> None:
        pipe = self.pipelines.get(camera_id)
        if pipe is None or pipe.online == online:
            return
        pipe.online = online
        self.store.update_camera(camera_id, online=int(online), last_seen=pipe.last_media or None)
        self.bus.publish("camera.online" if online else "camera.offline", camera_id=camera_id)
        log.info("camera online" if online else "camera offline", extra={"camera_id": camera_id})

    async def _watch_online(self) -> None:
        limit = self.config.ingest.offline_after_s
        while True:
            now = time.time()
            for cid, pipe in list(self.pipelines.items()):
                fresh = pipe.last_media > 0 and now - pipe.last_media < limit
                self._set_online(cid, fresh)
                if fresh:
                    self.store.update_camera(cid, last_seen=pipe.last_media)
            await asyncio.sleep(min(5.0, limit / 3))  # periodic check: offline is the absence of an event

    def summary(self) -> dict[str, int]:
        return {"total": len(self.store.list_cameras()),
                "online": sum(1 for p in self.pipelines.values() if p.online)}

    def describe_all(self) -> list[dict[str, Any]]:
        out = []
        for cam in self.store.list_cameras():
            pipe = self.pipelines.get(cam["id"])
            out.append({
                "id": cam["id"], "name": cam["name"], "kind": cam["kind"],
                "online": bool(pipe and pipe.online), "last_seen": cam["last_seen"],
                "codec": cam["codec"], "width": cam["width"], "height": cam["height"], "fps": cam["fps"],
                "battery": cam["battery"], "charging": None if cam["charging"] is None else bool(cam["charging"]),
                "armed": bool(cam["armed"]), "stats": pipe.stats() if pipe else None,
                # whether motion detection has frames: "down" while an RTSP camera's sub-stream is (issue 14)
                "detect": pipe.detect_state if pipe else "none",
                "detect_reason": pipe.detect_reason if pipe else "",
                "ingest": self._ingest_stats(cam["id"]),
            })
        return out

    def _ingest_stats(self, camera_id: str) -> dict[str, Any] | None:
        """What the camera's source counts: a phone's peer, or a file/RTSP reader (tracks, reconnects)."""
        if camera_id in self.peers:
            return self.peers[camera_id].stats()
        source = self.sources.get(camera_id)
        return source.stats() if source is not None else None


def _sound_on(pipe: CameraPipeline) -> bool:
    return pipe.chain.engine.config.audio_enabled
