"""One camera's pipeline: the CameraSink every source feeds.

ingest → ring buffer (+ clip writer on an event) and detect/audio → triggers → engine → recorder → store → bus.
Runs on the event loop: each step here is sub-millisecond per frame; the heavier work (finishing a clip, writing
a snapshot) goes to a worker thread in the recorder.
"""

from __future__ import annotations

import asyncio
import json
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hub.buffer import RingBuffer
from hub.bus import Bus
from hub.clips import ClipError, write_snapshot
from hub.config import HubConfig
from hub.media.frames import AudioChunk, AudioLevel, DetectFrame, EncodedFrame
from hub.recorder import EventRecorder
from hub.store import Store
from hub.triggers.audio import AudioConfig, AudioTrigger
from hub.triggers.engine import (
    EngineConfig,
    EngineEvent,
    EventEnded,
    EventStarted,
    EventSuppressed,
    EventUpdated,
    MotionState,
    SoundState,
    TriggerEngine,
)
from hub.triggers.motion import MotionConfig, MotionDetector
from hub.triggers.zones import ZoneError, active_area, to_polygon

log = logging.getLogger(__name__)

_STATUS_FIELDS = {"battery": float, "charging": bool, "visible": bool, "temperature": float,
                  "fps": float, "bitrate_kbps": float}
TICK_S = 0.5  # how often time-outs (post-roll end, motion clear) are checked while a camera sends nothing


def default_camera_settings(cfg: HubConfig) -> dict[str, Any]:
    """What a camera uses for each setting the web UI has not set for it: the config file's values."""
    return {"sensitivity": cfg.motion.sensitivity, "motion_enabled": cfg.motion.enabled,
            "pre_roll_s": cfg.events.pre_roll_s, "post_roll_s": cfg.events.post_roll_s,
            "audio_enabled": cfg.audio.enabled, "audio_level_dbfs": cfg.audio.min_level_dbfs,
            "zones": [], "masks": []}


def camera_settings(store: Store, cfg: HubConfig, camera_id: str) -> dict[str, Any]:
    """The camera's own settings (web UI) over the hub's defaults (config file)."""
    cam = store.get_camera(camera_id) or {}
    try:
        stored = json.loads(cam.get("settings") or "{}")
    except ValueError:
        stored = {}
    stored = {k: v for k, v in (stored if isinstance(stored, dict) else {}).items() if v is not None}
    return default_camera_settings(cfg) | stored


@dataclass(frozen=True)
class PipelineContext:
    """What every camera pipeline shares, handed down by the camera manager (built by the composition root)."""

    config: HubConfig
    store: Store
    bus: Bus
    clips_dir: Path
    scratch_dir: Path  # where snapshot temp files go (same file system as the data folder)
    is_armed: Callable[[str], bool]  # a camera's effective arm state
    on_disk_full: Callable[[], None]  # a write hit a full disk: run retention now


class TriggerChain:
    """Detector → engine for one camera; shared by live cameras and `pingwatch replay`."""

    def __init__(self, camera_id: str, motion: MotionConfig, audio: AudioConfig, engine: EngineConfig,
                 zones: list[Any] | None = None, masks: list[Any] | None = None, armed: bool = True) -> None:
        self.motion = MotionDetector(motion)
        self.audio = AudioTrigger(audio)
        self.engine = TriggerEngine(camera_id, engine, armed=armed)
        # Validated here (ZoneError), not at the first frame, so a bad polygon is reported once, at set-up.
        self.zones = [to_polygon(z) for z in zones or []]
        self.masks = [to_polygon(m) for m in masks or []]
        self._mask_size: tuple[int, int] | None = None

    def detect(self, frame: DetectFrame) -> list[EngineEvent]:
        h, w = frame.y.shape[:2]
        if (self.zones or self.masks) and self._mask_size != (w, h):
            self._mask_size = (w, h)
            self.motion.set_mask(active_area(w, h, self.zones, self.masks))
        return self.engine.feed_motion(frame.t, self.motion.process(frame))

    def hear(self, chunk: AudioChunk) -> list[EngineEvent]:
        return self.engine.feed_audio(chunk.t, self.audio.process(chunk))

    def hear_level(self, level: AudioLevel) -> list[EngineEvent]:
        return self.engine.feed_audio(level.t, self.audio.process_level(level.dbfs))


def build_chain(cfg: HubConfig, camera_id: str, settings: dict[str, Any], armed: bool,
                max_events_per_hour: int | None = None) -> TriggerChain:
    """The triggers for one camera from the config and its settings (``camera_settings``); used live and by replay."""
    motion = MotionConfig(sensitivity=settings["sensitivity"], threshold=cfg.motion.threshold,
                          min_area=cfg.motion.min_area)
    audio = AudioConfig(rise_db=cfg.audio.rise_db, hold_ms=cfg.audio.hold_ms,
                        min_level_dbfs=settings["audio_level_dbfs"])
    engine = EngineConfig(pre_roll_s=settings["pre_roll_s"], post_roll_s=settings["post_roll_s"],
                          max_length_s=cfg.events.max_length_s, cooldown_s=cfg.events.cooldown_s,
                          max_events_per_hour=max_events_per_hour or cfg.events.max_per_hour,
                          motion_enabled=settings["motion_enabled"],
                          audio_enabled=settings["audio_enabled"])
    try:
        return TriggerChain(camera_id, motion, audio, engine, settings.get("zones"), settings.get("masks"), armed)
    except ZoneError as exc:
        log.warning("ignoring invalid zones/masks", extra={"camera_id": camera_id, "error": str(exc)})
        return TriggerChain(camera_id, motion, audio, engine, None, None, armed)


class CameraPipeline:
    def __init__(self, ctx: PipelineContext, camera_id: str, on_live: Callable[[str], None] | None = None) -> None:
        self.ctx = ctx
        self.camera_id = camera_id
        self._on_live = on_live
        ing = ctx.config.ingest
        self.buffer = RingBuffer(window_s=ing.preroll_window_s, max_bytes=int(ing.buffer_max_mb * 1024 * 1024))
        self.online = False
        self.last_media = 0.0
        self.stream_info: dict[str, Any] = {}
        self.status: dict[str, Any] = {}
        self.detect_frames = 0
        self.audio_chunks = 0
        # The detect sub-stream of an RTSP camera (issue 14): "none" (detection runs on the main stream or the
        # phone's detect track), "ok", or "down" with the reason. Set by the source through set_detect_state.
        self.detect_state = "none"
        self.detect_reason = ""
        self._t = 0.0  # newest camera-clock time seen, and when (monotonic) it was seen
        self._t_mono = 0.0
        settings = camera_settings(ctx.store, ctx.config, camera_id)
        self.chain = build_chain(ctx.config, camera_id, settings, self._armed())
        self.recorder = EventRecorder(camera_id, self.buffer, ctx.store, ctx.bus, ctx.clips_dir,
                                      settings["pre_roll_s"], settings["post_roll_s"], on_disk_full=ctx.on_disk_full)
        self._ticker = asyncio.get_event_loop().create_task(self._tick_forever(), name=f"tick-{camera_id}")

    def _armed(self) -> bool:
        return self.ctx.is_armed(self.camera_id)

    # -- CameraSink ------------------------------------------------------------------------------------

    def on_frame(self, frame: EncodedFrame) -> None:
        self.last_media = time.time()
        if not self.online and self._on_live is not None:
            self._on_live(self.camera_id)  # report online at the first frame, not at the next watchdog pass
        self.buffer.push(frame)

    def on_detect(self, frame: DetectFrame) -> None:
        self.last_media = time.time()
        self.detect_frames += 1
        self._clock(frame.t)
        self._handle(self.chain.detect(frame))

    def on_audio(self, chunk: AudioChunk) -> None:
        self.audio_chunks += 1
        self._clock(chunk.t)
        self._handle(self.chain.hear(chunk))

    def on_audio_level(self, level: AudioLevel) -> None:
        self.audio_chunks += 1
        self._clock(level.t)
        self._handle(self.chain.hear_level(level))

    def on_broken(self) -> None:
        self.buffer.mark_broken()

    def expect_detect_stream(self) -> None:
        """This camera detects on a sub-stream of its own: "down" until the source says it delivers."""
        self.detect_state, self.detect_reason = "down", "not connected yet"

    def set_detect_state(self, state: str, reason: str) -> None:
        """The detect sub-stream went down or came back: status, web UI and MQTT (through the bus) learn it."""
        self.detect_state, self.detect_reason = state, reason
        log.log(logging.WARNING if state == "down" else logging.INFO, "camera detect stream " + state,
                extra={"camera_id": self.camera_id, "reason": reason})
        self.ctx.bus.publish("camera.detect", camera_id=self.camera_id, state=state, reason=reason)

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
            self.ctx.store.update_camera(self.camera_id, **fields)
        self.ctx.bus.publish("camera.status", camera_id=self.camera_id, **clean)

    def on_stream_info(self, info: dict[str, Any]) -> None:
        if info == self.stream_info:
            return
        self.stream_info = dict(info)
        self.recorder.codec = info.get("codec") or self.recorder.codec
        fields = {k: info[k] for k in ("codec", "width", "height", "fps") if info.get(k) is not None}
        if fields:
            self.ctx.store.update_camera(self.camera_id, **fields)
        log.info("camera stream", extra={"camera_id": self.camera_id, **fields})

    # -- engine outputs --------------------------------------------------------------------------------

    def _clock(self, t: float) -> None:
        if t > self._t:
            self._t, self._t_mono = t, time.monotonic()

    def now(self) -> float:
        """The camera clock now: its newest time plus what elapsed since (it may be stream time, not wall)."""
        return self._t + (time.monotonic() - self._t_mono) if self._t_mono else 0.0

    def _handle(self, outputs: list[EngineEvent]) -> None:
        for o in outputs:
            if isinstance(o, MotionState):
                self.ctx.bus.publish("motion", camera_id=self.camera_id, active=o.active, score=round(o.score, 4))
            elif isinstance(o, SoundState):
                self.ctx.bus.publish("sound", camera_id=self.camera_id, active=o.active,
                                     level_dbfs=round(o.level_dbfs, 1))
            elif isinstance(o, EventStarted):
                self.recorder.start(o.t_start, o.detected_at, o.trigger)
            elif isinstance(o, EventUpdated):
                self.recorder.update(motion=o.score, t=o.t, boxes=list(o.boxes), audio_dbfs=o.level_dbfs,
                                     trigger=o.trigger)
            elif isinstance(o, EventEnded):
                self.recorder.end(o.t_end, o.reason)
            elif isinstance(o, EventSuppressed):
                log.warning("event not recorded: hourly cap reached",
                            extra={"camera_id": self.camera_id, "trigger": o.trigger})
                self.ctx.bus.publish("event.suppressed", camera_id=self.camera_id, trigger=o.trigger, reason=o.reason)

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)  # a clock, not synchronisation: time-outs fire while the camera is silent
            if self._t_mono:
                self._handle(self.chain.engine.tick(self.now()))

    # -- control ---------------------------------------------------------------------------------------

    def set_armed(self, armed: bool) -> None:
        self._handle(self.chain.engine.set_armed(armed, self.now()))

    def apply_settings(self) -> None:
        """Rebuild the detectors from the camera's current settings (the web UI changed them).

        The engine carries on under the new rules: a fresh one knew nothing of the event in progress or of the
        motion it had announced, so a mask drawn (or motion switched off) mid-event left the clip recording and
        motion "on" for every consumer until the hub stopped. Kept, it ends both by the new rules, and keeps its
        cooldown and hourly cap."""
        settings = camera_settings(self.ctx.store, self.ctx.config, self.camera_id)
        chain = build_chain(self.ctx.config, self.camera_id, settings, self._armed())
        engine = self.chain.engine
        engine.config = chain.engine.config
        chain.engine = engine
        self.chain = chain
        self.recorder.pre_roll_s, self.recorder.post_roll_s = settings["pre_roll_s"], settings["post_roll_s"]
        log.info("camera settings applied", extra={"camera_id": self.camera_id})

    async def snapshot_now(self) -> bytes | None:
        """A JPEG of the newest buffered frame (decodes one GOP at most, in a worker thread)."""
        newest = self.buffer.newest_t
        if newest is None:
            return None
        frames = self.buffer.frames_since(newest)
        if not any(f.kind == "video" for f in frames):
            return None

        def work() -> bytes:
            with tempfile.TemporaryDirectory(dir=self.ctx.scratch_dir) as d:
                jpeg = Path(d) / "snap.jpg"
                write_snapshot(frames, newest, jpeg, Path(d) / "thumb.jpg")
                return jpeg.read_bytes()

        try:
            return await asyncio.to_thread(work)
        except ClipError as exc:
            log.warning("snapshot failed", extra={"camera_id": self.camera_id, "error": str(exc)})
            return None

    async def close(self) -> None:
        self._ticker.cancel()
        await self.recorder.close(self.now() or time.time())

    def stats(self) -> dict[str, Any]:
        return {"buffer": asdict(self.buffer.stats()), "detect_frames": self.detect_frames,
                "audio_chunks": self.audio_chunks, "status": self.status, "stream": self.stream_info,
                "engine": self.chain.engine.state.value, "recording": self.recorder.active,
                "detect": self.detect_state, "detect_reason": self.detect_reason}
