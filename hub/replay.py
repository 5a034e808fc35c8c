"""`pingwatch replay`: run a file through the live trigger code and report the events it would make.

Frames are taken at the live detect rate and size (every decoded frame is *not* analysed: the live detect track
is 5 fps, and the detector's time constants assume it), then go through the same TriggerChain as a live camera.
With ``clips_dir`` and an H.264/H.265/VP8 file, clips are cut exactly as live: pre-roll from a ring buffer,
remuxed. Frames get their times as a file camera gives them (``hub.ingest.file``): packets without timestamps
are stamped, not dropped, B-frames keep their pts and dts, Opus and AAC go into the clips as they are, and the
detect frames are picked by the same ``DetectThrottle``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import av
import numpy as np

from hub.buffer import RingBuffer
from hub.bus import Bus
from hub.ingest.file import RECORD_CODECS, AnnexBConverter, DetectThrottle, _AacPassthrough, _Stamper
from hub.ingest.tap import audio_frame_to_mono
from hub.media.frames import AUDIO_TIME_BASE, VIDEO_TIME_BASE, AudioChunk, DetectFrame, EncodedFrame
from hub.media.h264 import vp8_is_keyframe
from hub.pipeline import TriggerChain
from hub.recorder import EventRecorder
from hub.store import Store
from hub.triggers.engine import EngineEvent, EventEnded, EventStarted, EventSuppressed, EventUpdated

log = logging.getLogger(__name__)


class ReplayError(Exception):
    pass


@dataclass
class ReplayEvent:
    start: float  # activity onset, seconds from the file start
    detected_at: float
    trigger: str
    end: float | None = None
    reason: str | None = None
    triggers: list[str] = field(default_factory=list)
    peak_motion: float = 0.0
    audio_peak_dbfs: float | None = None
    boxes: list[list[float]] = field(default_factory=list)  # [t, x0, y0, x1, y1] at each new motion peak
    clip: str | None = None
    snapshot: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"start": round(self.start, 3), "detected_at": round(self.detected_at, 3),
                "end": None if self.end is None else round(self.end, 3), "trigger": self.trigger,
                "triggers": self.triggers, "reason": self.reason, "peak_motion": round(self.peak_motion, 4),
                "audio_peak_dbfs": None if self.audio_peak_dbfs is None else round(self.audio_peak_dbfs, 1),
                "boxes": self.boxes, "clip": self.clip, "snapshot": self.snapshot}


def read_wav(path: Path) -> Iterator[AudioChunk]:
    try:
        with av.open(str(path)) as c:
            stream = c.streams.audio[0] if c.streams.audio else None
            if stream is None:
                raise ReplayError(f"{path}: no audio stream")
            for frame in c.decode(stream):
                t = float(frame.pts * frame.time_base) if frame.pts is not None and frame.time_base else 0.0
                yield AudioChunk(samples=audio_frame_to_mono(frame), sample_rate=frame.sample_rate, t=t)
    except av.FFmpegError as exc:
        raise ReplayError(f"{path}: cannot read audio ({exc})") from None


class _Replayer:
    def __init__(self, chain: TriggerChain, recorder: EventRecorder | None, buffer: RingBuffer | None,
                 extra_audio: Iterator[AudioChunk] | None, on_event: Callable[[ReplayEvent], None] | None) -> None:
        self.chain = chain
        self.recorder = recorder
        self.buffer = buffer
        self.extra_audio = extra_audio
        self._pending_audio: deque[AudioChunk] = deque()
        self.events: list[ReplayEvent] = []
        self.current: ReplayEvent | None = None
        self.on_event = on_event
        self.finishing: list[asyncio.Task[Any]] = []

    def feed_extra_audio_until(self, t: float) -> None:
        if self.extra_audio is None:
            return
        for chunk in self.extra_audio:
            self.handle(self.chain.hear(chunk))
            if chunk.t >= t:
                return
        self.extra_audio = None

    def handle(self, outputs: list[EngineEvent]) -> None:
        for o in outputs:
            if isinstance(o, EventStarted):
                self.current = ReplayEvent(start=o.t_start, detected_at=o.detected_at, trigger=o.trigger,
                                           triggers=[o.trigger])
                if self.recorder is not None:
                    self.recorder.start(o.t_start, o.detected_at, o.trigger)
            elif isinstance(o, EventUpdated) and self.current is not None:
                ev = self.current
                ev.triggers = list(o.triggers)
                if o.score is not None and o.score >= o.peak_motion and o.boxes:
                    ev.boxes.append([round(o.t, 2), *[round(v, 4) for v in o.boxes[0]]])
                ev.peak_motion, ev.audio_peak_dbfs = o.peak_motion, o.audio_peak_dbfs
                if self.recorder is not None:
                    self.recorder.update(motion=o.score, t=o.t, boxes=list(o.boxes), audio_dbfs=o.level_dbfs,
                                         trigger=o.trigger)
            elif isinstance(o, EventEnded) and self.current is not None:
                ev, self.current = self.current, None
                ev.end, ev.reason, ev.triggers = o.t_end, o.reason, list(o.triggers)
                ev.peak_motion, ev.audio_peak_dbfs = o.peak_motion, o.audio_peak_dbfs
                self.events.append(ev)
                if self.recorder is not None:
                    task = self.recorder.end(o.t_end, o.reason)
                    if task is not None:
                        self.finishing.append(task)
                        task.add_done_callback(functools.partial(self._clip_done, ev))
                elif self.on_event:
                    self.on_event(ev)
            elif isinstance(o, EventSuppressed):
                log.info("hourly cap reached at %.1fs", o.t)

    def _clip_done(self, ev: ReplayEvent, task: asyncio.Task[Any]) -> None:
        if not task.cancelled() and task.exception() is None:
            row = task.result()
            ev.clip, ev.snapshot = row.get("clip_path"), row.get("snapshot_path")
        if self.on_event:
            self.on_event(ev)


async def replay(path: Path, chain: TriggerChain, *, audio: Path | None = None, clips_dir: Path | None = None,
                 detect_fps: float = 5.0, detect_width: int = 320, pre_roll_s: float = 5.0,
                 post_roll_s: float = 5.0, on_event: Callable[[ReplayEvent], None] | None = None,
                 on_progress: Callable[[float, float], None] | None = None) -> list[ReplayEvent]:
    """Replay ``path``; returns the events (also passed one by one to ``on_event`` as they end)."""
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError) as exc:
        raise ReplayError(f"{path}: cannot open ({exc})") from None
    with container:
        video = container.streams.video[0] if container.streams.video else None
        if video is None:
            raise ReplayError(f"{path}: no video stream")
        astream = (container.streams.audio[0] if container.streams.audio else None) if audio is None else None
        codec = video.codec_context.name
        duration = float(container.duration / av.time_base) if container.duration else 0.0
        recorder = buffer = None
        store = None
        if clips_dir is not None:
            if codec not in RECORD_CODECS:
                raise ReplayError(f"{path}: --clips needs an H.264, H.265 or VP8 file (clips are remuxed, never "
                                  f"re-encoded); this one is {codec}")
            buffer = RingBuffer(window_s=max(15.0, pre_roll_s + 5))
            store = Store(":memory:")
            recorder = EventRecorder("replay", buffer, store, Bus(), clips_dir, pre_roll_s, post_roll_s)
            recorder.codec = codec
        r = _Replayer(chain, recorder, buffer, read_wav(audio) if audio else None, on_event)
        conv = (AnnexBConverter(codec, video.codec_context.extradata)
                if (buffer is not None and codec in ("h264", "hevc")) else None)
        throttle = DetectThrottle(detect_fps)
        acodec = astream.codec_context.name if astream is not None else None
        aac = (_AacPassthrough(astream.codec_context.extradata, astream.codec_context.sample_rate)
               if astream is not None and acodec == "aac" else None)
        t0: float | None = None
        last_t = 0.0
        packets = 0
        streams: list[av.VideoStream | av.AudioStream] = [video] + ([astream] if astream is not None else [])
        vcodec = cast(Literal["h264", "hevc", "vp8"], codec)  # checked above wherever frames are buffered
        fps = float(video.average_rate or video.guessed_rate or 30)
        stampers: dict[int, _Stamper] = {}
        for s in streams:  # default durations: one frame interval, 20 ms of audio
            stb = float(s.time_base) if s.time_base else 1 / 90000
            stampers[s.index] = _Stamper(round((1 / fps if s is video else 0.02) / stb), s.start_time)
        delay: int | None = None  # video reorder delay (first packet's pts - dts), as in hub.ingest.file

        def stamped() -> Iterator[av.Packet]:
            for p in container.demux(streams):
                if p.size:  # not the demuxer's flush packets
                    yield from (q for q, _ in stampers[p.stream.index].push(p, 0.0))
            for st in stampers.values():
                yield from (q for q, _ in st.flush())

        try:
            for packet in stamped():
                assert packet.pts is not None and packet.dts is not None  # _Stamper's promise
                packets += 1
                tb = float(packet.time_base)
                if packet.stream is video:
                    if delay is None:
                        delay = max(0, packet.pts - packet.dts)
                    ts = (packet.dts + delay) * tb  # decode order, like the live path: the buffer needs it
                else:
                    ts = packet.pts * tb
                if t0 is None:
                    t0 = ts
                t = ts - t0
                if packet.stream is video:
                    if buffer is not None:
                        data = bytes(packet)
                        key = vp8_is_keyframe(data)
                        if conv is not None:
                            data, key = conv.convert(data)
                        pts90 = round((packet.pts * tb - t0) * 90000)
                        dts90 = round((packet.dts * tb - t0) * 90000)
                        buffer.push(EncodedFrame("video", vcodec, data, pts90, VIDEO_TIME_BASE, t, key,
                                                 dts=None if dts90 == pts90 else dts90))
                    for frame in video.decode(packet):
                        ft = float(frame.pts * frame.time_base) - t0 if frame.pts is not None and frame.time_base else t
                        if not throttle.take(ft):
                            continue
                        w = detect_width
                        h = max(2, round(frame.height * w / frame.width / 2) * 2)
                        y = frame.reformat(width=w, height=h, format="gray").to_ndarray()
                        r.feed_extra_audio_until(ft)
                        r.handle(chain.detect(DetectFrame(y=np.ascontiguousarray(y), t=ft)))
                        last_t = max(last_t, ft)
                        if on_progress:
                            on_progress(ft, duration)
                else:
                    assert astream is not None  # only the video and this stream are demuxed
                    if buffer is not None and acodec == "opus":
                        buffer.push(EncodedFrame("audio", "opus", bytes(packet), round(t * 48000), AUDIO_TIME_BASE, t))
                    elif buffer is not None and aac is not None:
                        aframe = aac.frame(bytes(packet), t, t)
                        if aframe is not None:
                            buffer.push(aframe)
                    for afr in astream.decode(packet):
                        r.handle(chain.hear(AudioChunk(audio_frame_to_mono(afr), afr.sample_rate, t)))
                await asyncio.sleep(0)  # let finished clips' threads report back
        except av.FFmpegError as exc:
            raise ReplayError(f"{path}: corrupt or truncated media at {last_t:.2f} s (after {packets} packets): "
                              f"{exc}") from None
        if packets == 0 or t0 is None:
            raise ReplayError(f"{path}: no decodable packets (empty or corrupt file)")
        r.feed_extra_audio_until(float("inf"))
        # The file ended: let the post-roll run out as it would have live.
        r.handle(chain.engine.tick(last_t + post_roll_s + chain.engine.config.max_length_s))
        if r.finishing:
            await asyncio.gather(*r.finishing)
        if store is not None:
            store.close()
        return r.events
