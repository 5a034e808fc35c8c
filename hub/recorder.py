"""Turns one camera's trigger decisions into stored events: clip, snapshot, row, bus messages.

An event starts with the pre-roll taken from the ring buffer and a subscription for what follows, in the same
event-loop step so no frame falls between them. The row is written at once with status ``recording`` and the
clip's final path, so a crash leaves a row that start-up recovery can repair (hub/recovery.py). Finishing the
file and decoding the snapshot run in a worker thread: the loop keeps serving the cameras meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hub.buffer import RingBuffer
from hub.bus import Bus
from hub.clips import ClipError, ClipWriter, part_path_for, recover_partial, write_snapshot
from hub.clips import is_disk_full as _is_disk_full
from hub.datadir import make_private_dirs
from hub.media.frames import EncodedFrame
from hub.store import Store

log = logging.getLogger(__name__)

_MAX_BOX_SAMPLES = 200  # boxes over time are kept sparse: one sample per motion update, capped


@dataclass
class _Recording:
    event_id: str
    start: float
    detected_at: float
    triggers: set[str]
    writer: ClipWriter | None
    unsubscribe: Callable[[], None] | None
    clip_path: Path | None
    peak_motion: float = 0.0
    peak_t: float | None = None
    audio_peak_dbfs: float | None = None
    boxes: list[list[float]] = field(default_factory=list)
    # The GOP holding the peak-motion moment: the snapshot decodes only these frames. The previous GOP is kept
    # too: the detector sees frames on its own path, so a reading can come in after the next keyframe.
    gop: list[EncodedFrame] = field(default_factory=list)
    prev_gop: list[EncodedFrame] = field(default_factory=list)
    peak_gop: list[EncodedFrame] = field(default_factory=list)
    write_error: str | None = None


class EventRecorder:
    def __init__(self, camera_id: str, buffer: RingBuffer, store: Store, bus: Bus, clips_dir: Path,
                 pre_roll_s: float, post_roll_s: float,
                 on_disk_full: Callable[[], None] | None = None) -> None:
        self.on_disk_full = on_disk_full
        self.camera_id = camera_id
        self.buffer = buffer
        self.store = store
        self.bus = bus
        self.clips_dir = clips_dir
        self.pre_roll_s = pre_roll_s
        self.post_roll_s = post_roll_s
        self.codec: str | None = None  # record-track codec, from the stream info
        self.current: _Recording | None = None
        self._finishing: set[asyncio.Task[Any]] = set()

    @property
    def active(self) -> bool:
        return self.current is not None

    def start(self, start: float, detected_at: float, trigger: str) -> str:
        if self.current is not None:
            self.current.triggers.add(trigger)
            return self.current.event_id
        event_id = self.store.insert_event({
            "camera_id": self.camera_id, "status": "recording", "start": start, "detected_at": detected_at,
            "triggers": [trigger], "pre_roll_s": self.pre_roll_s, "post_roll_s": self.post_roll_s,
        })
        clip_path = self._clip_path(event_id, start)
        rec = _Recording(event_id, start, detected_at, {trigger}, None, None, clip_path)
        try:
            make_private_dirs(clip_path.parent)  # camera/day folders are private whatever the umask
            rec.writer = writer = ClipWriter(clip_path, audio=True)
            for f in self.buffer.frames_since(start - self.pre_roll_s):
                self._write(rec, writer, f)
            if rec.write_error is None:
                rec.unsubscribe = self.buffer.subscribe(lambda f: self._write(rec, writer, f))
        except (OSError, ClipError) as exc:
            self._give_up_clip(rec, exc)
        if rec.writer is None:
            rec.clip_path = None
        self.current = rec
        self.store.update_event(event_id, clip_path=str(rec.clip_path) if rec.clip_path else None)
        self.bus.publish("event.started", event_id=event_id, camera_id=self.camera_id, start=start,
                         detected_at=detected_at, triggers=[trigger])
        log.info("event started", extra={"camera_id": self.camera_id, "event_id": event_id, "trigger": trigger,
                                         "latency_s": round(detected_at - start, 3)})
        return event_id

    def _clip_path(self, event_id: str, start: float) -> Path:
        day = time.strftime("%Y-%m-%d", time.localtime(start))
        suffix = ".webm" if self.codec == "vp8" else ".mp4"
        return self.clips_dir / self.camera_id / day / f"{event_id}{suffix}"

    def _write(self, rec: _Recording, writer: ClipWriter, frame: EncodedFrame) -> None:
        if rec.write_error is not None:
            return
        try:
            writer.write(frame)
        except (OSError, ClipError) as exc:
            # A full disk or a broken stream must not take the camera down: the event keeps its row and
            # snapshot; the clip is recovered up to the last complete GOP or dropped. The refused frame is no
            # picture for the snapshot either (decoding it would fail and leave the event without one).
            self._give_up_clip(rec, exc)
            return
        if frame.kind == "video":
            if frame.keyframe:
                rec.prev_gop, rec.gop = rec.gop, []
            rec.gop.append(frame)
            # The snapshot shows the last frame at or before the peak: the GOP of a frame after it, even a
            # keyframe just after, would show a later moment.
            if rec.peak_t is not None and frame.t <= rec.peak_t:
                rec.peak_gop = rec.gop

    def _give_up_clip(self, rec: _Recording, exc: Exception) -> None:
        rec.write_error = str(exc)
        full = _is_disk_full(exc)
        log.error("disk full: clip cut short, running retention to make room" if full else "clip writing failed",
                  extra={"camera_id": self.camera_id, "event_id": rec.event_id, "error": str(exc)})
        if full and self.on_disk_full is not None:
            self.on_disk_full()
        if rec.unsubscribe is not None:
            rec.unsubscribe()
            rec.unsubscribe = None

    def update(self, *, motion: float | None = None, t: float | None = None,
               boxes: list[tuple[float, float, float, float]] | None = None, audio_dbfs: float | None = None,
               trigger: str | None = None) -> None:
        rec = self.current
        if rec is None:
            return
        if trigger:
            rec.triggers.add(trigger)
        if motion is not None and motion > rec.peak_motion:
            rec.peak_motion = motion
            rec.peak_t = t
            # A late reading (a keyframe already came after its frame) belongs to the previous GOP.
            late = t is not None and bool(rec.gop) and rec.gop[0].t > t and bool(rec.prev_gop)
            rec.peak_gop = rec.prev_gop if late else rec.gop
        if boxes and t is not None and len(rec.boxes) < _MAX_BOX_SAMPLES:
            rec.boxes.append([round(t - rec.start, 2), *[round(v, 4) for b in boxes[:4] for v in b]])
        if audio_dbfs is not None and (rec.audio_peak_dbfs is None or audio_dbfs > rec.audio_peak_dbfs):
            rec.audio_peak_dbfs = audio_dbfs

    def end(self, end: float, reason: str) -> asyncio.Task[dict[str, Any]] | None:
        rec, self.current = self.current, None
        if rec is None:
            return None
        if rec.unsubscribe is not None:
            rec.unsubscribe()
        task = asyncio.ensure_future(self._finish(rec, end, reason))
        self._finishing.add(task)
        task.add_done_callback(self._finishing.discard)
        return task

    async def _finish(self, rec: _Recording, end: float, reason: str) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "end": end, "triggers": sorted(rec.triggers), "peak_motion": round(rec.peak_motion, 4),
            "audio_peak_dbfs": rec.audio_peak_dbfs, "boxes": rec.boxes, "status": "complete",
        }
        if rec.writer is not None and rec.clip_path is not None:
            try:
                if rec.write_error is not None:
                    # keep whatever whole GOPs made it to disk before the failure
                    info = await asyncio.to_thread(recover_partial, part_path_for(rec.clip_path))
                    if info is None:
                        raise ClipError(rec.clip_path, rec.write_error)
                    fields["status"] = "partial"
                else:
                    info = await asyncio.to_thread(rec.writer.close)
                fields.update(clip_path=str(info.path), clip_size=info.size, clip_codec=info.codec,
                              clip_duration_s=round(info.duration_s, 3))
            except (OSError, ClipError) as exc:
                if part_path_for(rec.clip_path).exists():
                    # Only the final remux failed for want of room: ClipWriter.close and recover_partial leave
                    # the .part (every whole GOP written), the only copy of the clip. It stays, and the row keeps
                    # the clip's final name, so start-up recovery (hub/recovery.py) finishes it once there is room.
                    fields.update(clip_path=str(rec.clip_path), status="partial")
                    log.error("clip could not be finished; its complete .part is kept for recovery at the next "
                              "start", extra={"event_id": rec.event_id, "error": str(exc),
                                              "part": str(part_path_for(rec.clip_path))})
                else:
                    await asyncio.to_thread(rec.writer.abort)
                    fields.update(clip_path=None, status="partial")
                    log.error("clip could not be finished", extra={"event_id": rec.event_id, "error": str(exc)})
                if _is_disk_full(exc) and self.on_disk_full is not None:
                    self.on_disk_full()
            frames = rec.peak_gop or rec.gop
            if frames and rec.clip_path is not None:
                jpeg = rec.clip_path.with_suffix(".jpg")
                thumb = rec.clip_path.with_name(rec.clip_path.stem + "-thumb.jpg")
                try:
                    snap = await asyncio.to_thread(write_snapshot, frames, rec.peak_t or frames[-1].t, jpeg, thumb)
                    fields.update(snapshot_path=str(snap.jpeg_path), thumb_path=str(snap.thumb_path))
                except (OSError, ClipError) as exc:
                    log.warning("snapshot failed", extra={"event_id": rec.event_id, "error": str(exc)})
        try:
            self.store.update_event(rec.event_id, **fields)
        except sqlite3.OperationalError as exc:  # "database or disk is full": the row is repaired at next start
            log.error("could not record the event's end", extra={"event_id": rec.event_id, "error": str(exc)})
            if self.on_disk_full is not None:
                self.on_disk_full()
        event = self.store.get_event(rec.event_id) or {}
        self.bus.publish("event.ended", event=event, camera_id=self.camera_id, event_id=rec.event_id, reason=reason)
        log.info("event ended", extra={"camera_id": self.camera_id, "event_id": rec.event_id, "reason": reason,
                                       "duration_s": round(end - rec.start, 2), "clip": fields.get("clip_path")})
        return event

    async def close(self, t: float) -> None:
        """Shutdown: cut an open event short and wait for every clip to be finished."""
        if self.current is not None:
            self.end(t, "shutdown")
        if self._finishing:
            await asyncio.gather(*list(self._finishing), return_exceptions=True)

