"""Which frames and which regions of a clip the detector looks at, and decoding just those with PyAV.

The hub sends its motion boxes with the event (normalised, with times). Frames are sampled where motion was,
at ``guided_fps``, each cropped to the union of the motion boxes near its time (plus a margin) when that is much
smaller than the frame, and ordered so that any prefix is spread over the activity: the moment of the largest
motion first, then coarse-to-fine. The caller can then stop as soon as it is confident. Without boxes the clip
is sampled sparsely as full frames.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import av.error

from cloud.worker.errors import BoxesError, ClipError, NoVideoError, TruncatedClipError

TRUNCATED_S = 1.0  # video ending this much before a planned sample (inside the stated duration) is a cut file


@dataclass(frozen=True)
class MotionBox:
    """Motion at clip time ``t`` (seconds): a box in normalised coordinates (x0, y0, x1, y1 in [0, 1])."""

    t: float
    x0: float
    y0: float
    x1: float
    y1: float

    @property
    def area(self) -> float:
        return (self.x1 - self.x0) * (self.y1 - self.y0)


@dataclass(frozen=True)
class Region:
    """A normalised crop of the frame; the full frame is (0, 0, 1, 1)."""

    x0: float = 0.0
    y0: float = 0.0
    x1: float = 1.0
    y1: float = 1.0

    @property
    def full(self) -> bool:
        return (self.x0, self.y0, self.x1, self.y1) == (0.0, 0.0, 1.0, 1.0)

    @property
    def area(self) -> float:
        return (self.x1 - self.x0) * (self.y1 - self.y0)

    def pixels(self, width: int, height: int) -> tuple[int, int, int, int]:
        x0, y0 = math.floor(self.x0 * width), math.floor(self.y0 * height)
        x1, y1 = math.ceil(self.x1 * width), math.ceil(self.y1 * height)
        return max(0, x0), max(0, y0), min(width, max(x1, x0 + 1)), min(height, max(y1, y0 + 1))


FULL = Region()


@dataclass(frozen=True)
class Sample:
    t: float
    region: Region


@dataclass(frozen=True)
class SamplingConfig:
    guided_fps: float = 2.0  # samples per second where motion was
    fallback_fps: float = 0.5  # without boxes: one full frame every 2 s
    max_samples: int = 16  # the most frames the detector sees per clip
    near_s: float = 0.75  # a sample belongs to motion within this many seconds
    context: float = 2.2  # crop side = this many times the motion union's longer side: the object then fills
    #                       at most ~45% of the model input, where the bundled model scores best (measured: it
    #                       misses people who fill a crop, and finds small ones far better when cropped)
    max_crop_area: float = 0.45  # crop only when the region is at most this share of the frame
    min_crop_px: int = 320  # never crop below this many frame pixels on a side (the model would see mush)


def _num(v: Any, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise BoxesError(f"motion boxes: {what} must be a finite number, got {v!r}",
                         "send [[t, x0, y0, x1, y1, ...], ...] or [{t, x, y, w, h}, ...] (normalised)")
    return float(v)


def _box(t: float, x0: float, y0: float, x1: float, y1: float) -> MotionBox:
    if t < 0:
        raise BoxesError(f"motion boxes: negative time {t}", "times are seconds from the clip start")
    cx0, cy0 = min(max(min(x0, x1), 0.0), 1.0), min(max(min(y0, y1), 0.0), 1.0)
    cx1, cy1 = min(max(max(x0, x1), 0.0), 1.0), min(max(max(y0, y1), 0.0), 1.0)
    return MotionBox(t, cx0, cy0, cx1, cy1)


def parse_boxes(data: Any, offset_s: float = 0.0) -> list[MotionBox]:
    """Motion boxes as the hub stores them, ``[[t, x0, y0, x1, y1, (x0, y0, x1, y1)...], ...]`` with up to four
    boxes per row, or as ``[{"t", "x", "y", "w", "h"}, ...]``. ``offset_s`` is added to every time (the hub's
    times start at the event, the clip ``pre_roll_s`` earlier). Empty boxes are dropped; malformed input raises.
    """
    if data is None:
        return []
    if not isinstance(data, list):
        raise BoxesError("motion boxes must be a JSON list", "send [[t, x0, y0, x1, y1], ...] or [] for none")
    out: list[MotionBox] = []
    for i, row in enumerate(data):
        if isinstance(row, dict):
            t = _num(row.get("t"), f"row {i} t") + offset_s
            x, y = _num(row.get("x"), f"row {i} x"), _num(row.get("y"), f"row {i} y")
            w, h = _num(row.get("w"), f"row {i} w"), _num(row.get("h"), f"row {i} h")
            out.append(_box(t, x, y, x + w, y + h))
        elif isinstance(row, list) and len(row) >= 5 and (len(row) - 1) % 4 == 0:
            vals = [_num(v, f"row {i}") for v in row]
            for k in range(1, len(vals), 4):
                out.append(_box(vals[0] + offset_s, *vals[k:k + 4]))
        else:
            raise BoxesError(f"motion boxes: row {i} is neither [t, x0, y0, x1, y1, ...] nor {{t, x, y, w, h}}",
                             "send normalised boxes with their time in seconds")
    return sorted((b for b in out if b.area > 0), key=lambda b: b.t)


def spread_order(n: int, first: int = 0) -> list[int]:
    """0..n-1 with ``first`` first, then coarse to fine (bit-reversed), so every prefix covers the span."""
    if n <= 0:
        return []
    bits = max(1, (n - 1).bit_length())
    rev = sorted(range(1 << bits), key=lambda i: int(format(i, f"0{bits}b")[::-1], 2))
    order = [first] + [i for i in rev if i < n and i != first]
    return order


def region_for(boxes: Sequence[MotionBox], width: int, height: int, cfg: SamplingConfig) -> Region:
    """A square crop around the union of ``boxes`` with context, or the full frame when that saves little."""
    if not boxes:
        return FULL
    x0, y0 = min(b.x0 for b in boxes) * width, min(b.y0 for b in boxes) * height
    x1, y1 = max(b.x1 for b in boxes) * width, max(b.y1 for b in boxes) * height
    side = max(max(x1 - x0, y1 - y0) * cfg.context, cfg.min_crop_px)
    cw, ch = min(side, width), min(side, height)
    if cw * ch > cfg.max_crop_area * width * height:
        return FULL
    cx0 = min(max((x0 + x1) / 2 - cw / 2, 0.0), width - cw)
    cy0 = min(max((y0 + y1) / 2 - ch / 2, 0.0), height - ch)
    return Region(cx0 / width, cy0 / height, (cx0 + cw) / width, (cy0 + ch) / height)


def _thin(times: list[float], n: int) -> list[float]:
    if len(times) <= n:
        return times
    step = (len(times) - 1) / max(n - 1, 1)
    return [times[round(i * step)] for i in range(n)]


def plan(duration_s: float, boxes: Sequence[MotionBox], width: int, height: int,
         cfg: SamplingConfig = SamplingConfig()) -> list[Sample]:
    """The frames to look at, in the order to look at them."""
    duration_s = max(duration_s, 0.0)
    inside = [b for b in boxes if b.t <= duration_s + cfg.near_s]
    if not inside:
        n = max(1, min(cfg.max_samples, math.ceil(duration_s * cfg.fallback_fps)))
        step = duration_s / n
        times = [min(duration_s, (i + 0.5) * step) for i in range(n)]
        return [Sample(times[i], FULL) for i in spread_order(len(times), len(times) // 2)]
    step = 1.0 / cfg.guided_fps
    grid = [i * step for i in range(int(duration_s / step) + 1)]
    times = [t for t in grid if any(abs(b.t - t) <= cfg.near_s for b in inside)]
    if not times:  # motion only between grid points: take the motion times themselves
        times = sorted({min(b.t, duration_s) for b in inside})
    times = _thin(times, cfg.max_samples)
    peak = max(inside, key=lambda b: b.area)
    first = min(range(len(times)), key=lambda i: abs(times[i] - peak.t))
    samples = []
    for t in times:
        near = [b for b in inside if abs(b.t - t) <= cfg.near_s]
        samples.append(Sample(t, region_for(near or inside, width, height, cfg)))
    return [samples[i] for i in spread_order(len(samples), first)]


@dataclass
class ClipInfo:
    width: int
    height: int
    duration_s: float
    codec: str
    fps: float | None


@dataclass
class DecodedSample:
    sample: Sample
    t: float  # the frame's real time
    frame: av.VideoFrame


@dataclass
class Decoded:
    info: ClipInfo
    samples: list[DecodedSample]  # in the plan's order
    frames_decoded: int = 0
    warnings: list[str] = field(default_factory=list)


def open_clip(path: Path) -> tuple[Any, Any]:
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ClipError(f"clip not found: {path}", "check the path / that the upload finished") from exc
    if size == 0:
        raise ClipError("the clip is empty (0 bytes)", "the upload did not complete; the hub will retry")
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise ClipError(f"the clip is not a readable video file: {exc}",
                        "upload an MP4 (H.264) or WebM (VP8) clip as the hub records them") from exc
    if not container.streams.video:
        container.close()
        raise NoVideoError("the clip has no video stream", "the hub's clip must contain its camera's video track")
    return container, container.streams.video[0]


def probe(path: Path) -> ClipInfo:
    """Size, codec and duration (from the container, else from the last packet's time)."""
    container, stream = open_clip(path)
    try:
        return clip_info(container, stream)
    finally:
        container.close()


def clip_info(container: Any, stream: Any) -> ClipInfo:
    width, height = int(stream.codec_context.width or 0), int(stream.codec_context.height or 0)
    duration: float | None = None
    if stream.duration is not None and stream.time_base is not None:
        duration = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        duration = container.duration / 1_000_000
    if duration is None or duration <= 0:  # some WebM muxers write no duration: read packet times (no decoding)
        last = 0.0
        try:
            for packet in container.demux(stream):
                if packet.pts is not None and packet.time_base is not None:
                    last = max(last, float(packet.pts * packet.time_base))
        except av.error.FFmpegError:
            pass
        container.seek(0)
        duration = last
    rate = stream.average_rate or stream.guessed_rate
    if width <= 0 or height <= 0:
        raise ClipError("the clip's video stream has no frame size", "the file is corrupt")
    return ClipInfo(width, height, duration, stream.codec_context.name, float(rate) if rate else None)


def decode(path: Path, make_plan: Any) -> Decoded:
    """Decode the frames nearest each planned time, once, in file order.

    ``make_plan(info) -> list[Sample]`` is called with the clip's size and duration once the file is open.
    Decoding seeks to the keyframe before the first sample and stops after the last one.
    """
    container, stream = open_clip(path)
    try:
        info = clip_info(container, stream)
        samples: list[Sample] = make_plan(info)
        stream.thread_type = "AUTO"
        by_time = sorted(range(len(samples)), key=lambda i: samples[i].t)
        got: dict[int, DecodedSample] = {}
        decoded = 0
        warnings: list[str] = []
        half = 0.5 / info.fps if info.fps else 0.02
        k = 0
        prev: tuple[float, Any] | None = None
        if by_time and samples[by_time[0]].t > 2.0 and stream.time_base is not None:
            try:
                container.seek(int((samples[by_time[0]].t - 1.0) / stream.time_base), stream=stream, backward=True)
            except av.error.FFmpegError:
                container.seek(0)
        try:
            for frame in container.decode(stream):
                decoded += 1
                t = float(frame.time) if frame.time is not None else decoded / (info.fps or 15.0)
                while k < len(by_time) and t >= samples[by_time[k]].t - half:
                    target = samples[by_time[k]].t
                    # the nearer of this frame and the previous one
                    use_prev = prev is not None and abs(prev[0] - target) < abs(t - target)
                    ft, fr = prev if use_prev and prev is not None else (t, frame)
                    got[by_time[k]] = DecodedSample(samples[by_time[k]], ft, fr)
                    k += 1
                if k >= len(by_time):
                    break
                prev = (t, frame)
        except (av.error.FFmpegError, ValueError) as exc:
            if not got and prev is None:
                raise ClipError(f"the clip cannot be decoded: {exc}", "the file is corrupt or truncated") from exc
            warnings.append(f"decoding stopped at {prev[0] if prev else 0:.1f} s: {exc}")
        if k < len(by_time) and prev is not None:
            if samples[by_time[-1]].t > prev[0] + TRUNCATED_S and not warnings:
                raise TruncatedClipError(
                    f"the clip's video ends at {prev[0]:.1f} s although its container says {info.duration_s:.1f} s",
                    "the file is cut short (an incomplete upload?); upload the whole clip again")
            for i in by_time[k:]:  # planned just past the last frame: the last frame stands in
                got.setdefault(i, DecodedSample(samples[i], prev[0], prev[1]))
        if decoded == 0:
            raise ClipError("the clip has no decodable video frames", "the file is corrupt or truncated")
        out: list[DecodedSample] = []
        seen: set[float] = set()
        for i in range(len(samples)):  # one frame is looked at once, even when two planned times share it
            if i in got and got[i].t not in seen:
                seen.add(got[i].t)
                out.append(got[i])
        return Decoded(info, out, decoded, warnings)
    finally:
        container.close()
