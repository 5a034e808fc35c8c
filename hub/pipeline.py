"""One camera's pipeline: the CameraSink every source feeds.

ingest → ring buffer (+ clip writer on an event) and detect/audio → triggers → engine → store → bus.
Runs on the event loop: each step here is sub-millisecond per frame; the only heavier work (finishing a clip,
writing a snapshot) goes to a worker thread.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, Callable

from hub.buffer import RingBuffer
from hub.media.frames import AudioChunk, DetectFrame, EncodedFrame

if TYPE_CHECKING:
    from hub.app import Hub

log = logging.getLogger(__name__)

_STATUS_FIELDS = {"battery": float, "charging": bool, "visible": bool, "temperature": float,
                  "fps": float, "bitrate_kbps": float}
_DB_TOUCH_INTERVAL_S = 10.0


class CameraPipeline:
    def __init__(self, hub: Hub, camera_id: str, on_live: Callable[[str], None] | None = None) -> None:
        self.hub = hub
        self._on_live = on_live
        self.camera_id = camera_id
        ing = hub.config.ingest
        self.buffer = RingBuffer(window_s=ing.preroll_window_s, max_bytes=int(ing.buffer_max_mb * 1024 * 1024))
        self.online = False
        self.last_media = 0.0
        self.stream_info: dict[str, Any] = {}
        self.status: dict[str, Any] = {}
        self.detect_frames = 0
        self.audio_chunks = 0

    # -- CameraSink ------------------------------------------------------------------------------------

    def on_frame(self, frame: EncodedFrame) -> None:
        self.last_media = time.time()
        if not self.online and self._on_live is not None:
            self._on_live(self.camera_id)  # report online at the first frame, not at the next watchdog pass
        self.buffer.push(frame)

    def on_detect(self, frame: DetectFrame) -> None:
        self.last_media = time.time()
        self.detect_frames += 1

    def on_audio(self, chunk: AudioChunk) -> None:
        self.audio_chunks += 1

    def on_broken(self) -> None:
        self.buffer.mark_broken()

    def on_status(self, status: dict[str, Any]) -> None:
        clean: dict[str, Any] = {}
        for key, kind in _STATUS_FIELDS.items():
            value = status.get(key)
            if value is None:
                continue
            try:
                clean[key] = kind(value)
            except (TypeError, ValueError):
                continue
        self.status = clean
        fields = {k: (int(v) if isinstance(v, bool) else v) for k, v in clean.items() if k in ("battery", "charging")}
        if fields:
            self.hub.store.update_camera(self.camera_id, **fields)
        self.hub.bus.publish("camera.status", camera_id=self.camera_id, **clean)

    def on_stream_info(self, info: dict[str, Any]) -> None:
        if info == self.stream_info:
            return
        self.stream_info = dict(info)
        fields = {k: info[k] for k in ("codec", "width", "height", "fps") if info.get(k) is not None}
        if fields:
            self.hub.store.update_camera(self.camera_id, **fields)
        log.info("camera stream", extra={"camera_id": self.camera_id, **fields})

    # -- lifecycle -------------------------------------------------------------------------------------

    async def close(self) -> None:
        pass

    def stats(self) -> dict[str, Any]:
        return {"buffer": asdict(self.buffer.stats()), "detect_frames": self.detect_frames, "audio_chunks": self.audio_chunks,
                "status": self.status, "stream": self.stream_info}
