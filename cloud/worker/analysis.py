"""``analyse()``: one clip in, labels + counts + times + summary + alert decision out.

Steps: decode only the planned frames (sampling.py) -> detect on each frame's region (model.py), the most
informative frames first, stopping once the answer has been stable for a few frames -> track (tracker.py) ->
labels, counts, first/last seen, best snapshots -> one sentence (summary.py) -> the local decision against the
user's rules (rules.py). The optional VLM (vlm.py) runs after this, never before an alert.

``mode="naive"`` is the benchmark's baseline: every decoded frame, full size, one at a time.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import av
import av.error
import numpy as np

from cloud.worker import sampling, summary
from cloud.worker.errors import ClipError
from cloud.worker.model import Detection, Detector
from cloud.worker.rules import NIGHT, Decision, Found, HourRange, Rules, decide, local_time, parse_prompt
from cloud.worker.snapshot import draw_box, encode_jpeg
from cloud.worker.tracker import Track, TrackerConfig, track_all

log = logging.getLogger(__name__)

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class AnalysisConfig:
    model_path: str | None = None  # None: $PINGWATCH_WORKER_MODEL, else the bundled person model
    providers: tuple[str, ...] | None = None  # None: CUDA when available, else CPU
    aliases: Mapping[str, str] | None = None  # None: model.DEFAULT_ALIASES
    batch_size: int = 1  # > 1 only pays on a GPU (docs/worker.md)
    detect_confidence: float = 0.25  # candidates kept for tracking
    min_confidence: float = 0.6  # a label is reported only at or above this (the bundled model calls cats people
    #                              at 0.52-0.55 and real people 0.78-0.86)
    iou: float = 0.45
    sampling: sampling.SamplingConfig = field(default_factory=sampling.SamplingConfig)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    min_samples: int = 6  # early stop: never before this many frames ...
    patience: int = 3  # ... and only when the last this-many frames changed nothing
    timezone: str = "UTC"  # the user's, for hours in rules and "night"
    boxes_offset_s: float = 0.0  # added to the hub's box times (its times start at the event, after pre-roll)
    mode: Literal["guided", "naive"] = "guided"


@dataclass
class FrameResult:
    t: float
    region: tuple[float, float, float, float]
    detections: list[dict[str, Any]]  # {label, score, box (normalised xyxy), track}


@dataclass
class LabelResult:
    label: str
    count: int
    max_confidence: float
    first_seen_s: float
    last_seen_s: float
    snapshot_t: float
    snapshot_box: Box  # normalised


@dataclass
class AnalysisResult:
    summary: str
    notify: bool
    reason: str
    labels: list[LabelResult]
    tags: list[str]
    frames: list[FrameResult]
    rules: dict[str, Any]
    provider: str
    model: str
    clip: dict[str, Any]
    frames_decoded: int
    detector_runs: int
    detector_images: int
    samples_planned: int
    stopped_early: bool
    guided: bool
    timings: dict[str, float]
    best_guess: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)
    # JPEG bytes, not part of the JSON: the caller stores them (Blob) and keeps the names
    snapshots: dict[str, bytes] = field(default_factory=dict, repr=False)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("snapshots")
        data["snapshot_sizes"] = {k: len(v) for k, v in self.snapshots.items()}
        return data

    def dumps(self) -> str:
        return json.dumps(self.to_json())

    @property
    def top_score(self) -> float | None:
        """The best score seen, reported or not: what decides whether a VLM is worth asking."""
        if self.labels:
            return max(lab.max_confidence for lab in self.labels)
        return float(self.best_guess["score"]) if self.best_guess else None

    @property
    def key_frames(self) -> list[bytes]:
        """The best snapshot of each label, most confident first (else the below-threshold candidate's): what a VLM
        is shown."""
        order = sorted(self.labels, key=lambda lab: -lab.max_confidence)
        frames = [self.snapshots[lab.label] for lab in order if lab.label in self.snapshots]
        return frames or ([self.snapshots["candidate"]] if "candidate" in self.snapshots else [])


@dataclass
class _Seen:
    t: float
    region: sampling.Region
    frame: av.VideoFrame | None
    detections: list[Detection]


_detectors: dict[tuple[Any, ...], Detector] = {}
_detectors_lock = threading.Lock()


def detector_for(config: AnalysisConfig) -> Detector:
    """One loaded model per (path, providers, aliases, batch, thresholds), reused across clips."""
    key = (config.model_path, config.providers, tuple(sorted((config.aliases or {}).items())) if config.aliases
           is not None else None, config.batch_size, config.detect_confidence, config.iou)
    with _detectors_lock:  # analyses may run in several threads; load each model once
        if key not in _detectors:
            _detectors[key] = Detector(config.model_path, aliases=config.aliases, providers=config.providers,
                                       conf=config.detect_confidence, iou=config.iou, batch_size=config.batch_size)
        return _detectors[key]


def _rgb_region(frame: av.VideoFrame, region: sampling.Region) -> tuple[np.ndarray, tuple[float, float]]:
    rgb = frame.to_ndarray(format="rgb24")
    if region.full:
        return rgb, (0.0, 0.0)
    x0, y0, x1, y1 = region.pixels(rgb.shape[1], rgb.shape[0])
    return np.ascontiguousarray(rgb[y0:y1, x0:x1]), (float(x0), float(y0))


def _confirmed(tracks: Sequence[Track], min_conf: float) -> list[Track]:
    return [t for t in tracks if t.best_score >= min_conf]


def _signature(seen: Sequence[_Seen], cfg: AnalysisConfig) -> tuple[tuple[str, int], ...]:
    tracks = _confirmed(track_all([(s.t, [(d.label, d.score, d.box) for d in s.detections]) for s in seen],
                                  cfg.tracker), cfg.min_confidence)
    counts: dict[str, int] = {}
    for tr in tracks:
        counts[tr.label] = counts.get(tr.label, 0) + 1
    return tuple(sorted(counts.items()))


def _guided(path: Path, boxes: Sequence[sampling.MotionBox], detector: Detector, cfg: AnalysisConfig
            ) -> tuple[sampling.Decoded, list[_Seen], int, bool, float]:
    decoded = sampling.decode(path, lambda info: sampling.plan(info.duration_s, boxes, info.width, info.height,
                                                               cfg.sampling))
    t0 = time.perf_counter()
    seen: list[_Seen] = []
    history: list[tuple[tuple[str, int], ...]] = []
    stopped = False
    todo = decoded.samples
    step = detector.batch_size
    for i in range(0, len(todo), step):
        chunk = todo[i:i + step]
        crops = [_rgb_region(d.frame, d.sample.region) for d in chunk]
        found = detector.detect([c for c, _ in crops], [o for _, o in crops])
        seen.extend(_Seen(d.t, d.sample.region, d.frame, dets) for d, dets in zip(chunk, found, strict=False))
        sig = _signature(seen, cfg)
        history.extend([sig] * len(chunk))
        n = len(seen)
        if (n >= cfg.min_samples and n < len(todo) and sig and len(history) > cfg.patience
                and history[-1 - cfg.patience] == sig):
            stopped = True
            break
    return decoded, seen, len(decoded.samples), stopped, time.perf_counter() - t0


def _naive(path: Path, detector: Detector) -> tuple[sampling.ClipInfo, list[_Seen], int, float, list[str]]:
    """Every frame, full size, one at a time; only the best frame per label is kept (for its snapshot)."""
    container, stream = sampling.open_clip(path)
    seen: list[_Seen] = []
    decoded = 0
    detect_s = 0.0
    best: dict[str, float] = {}
    warnings: list[str] = []
    try:
        info = sampling.clip_info(container, stream)
        stream.thread_type = "AUTO"
        try:
            for frame in container.decode(stream):
                decoded += 1
                t = float(frame.time) if frame.time is not None else decoded / (info.fps or 15.0)
                t0 = time.perf_counter()
                dets = detector.detect([frame.to_ndarray(format="rgb24")])[0]
                detect_s += time.perf_counter() - t0
                keep = None
                for d in dets:
                    if d.score > best.get(d.label, -1.0):
                        best[d.label] = d.score
                        keep = frame
                seen.append(_Seen(t, sampling.FULL, keep, dets))
        except (av.error.FFmpegError, ValueError) as exc:
            if decoded == 0:
                raise ClipError(f"the clip cannot be decoded: {exc}", "the file is corrupt or truncated") from exc
            warnings.append(f"decoding stopped after {decoded} frames: {exc}")
    finally:
        container.close()
    if decoded == 0:
        raise ClipError("the clip has no decodable video frames", "the file is corrupt or truncated")
    return info, seen, decoded, detect_s, warnings


def _norm(box: Box, w: int, h: int) -> Box:
    return (round(box[0] / w, 4), round(box[1] / h, 4), round(box[2] / w, 4), round(box[3] / h, 4))


def analyse(clip_path: str | Path, boxes: Any = None, prompt: str | Rules | None = None, camera_name: str = "",
            started_at: datetime | None = None, config: AnalysisConfig = AnalysisConfig(),
            zones: Mapping[str, Sequence[Sequence[float]]] | None = None,
            detector: Detector | None = None) -> AnalysisResult:
    """Analyse one clip. ``boxes``: the hub's motion boxes (see sampling.parse_boxes) or None; ``prompt``: the
    user's text or already-parsed Rules; ``zones``: the camera's named zones (normalised polygons) for rules
    that name one. Raises ClipError / NoVideoError / ModelError / BoxesError (cloud/worker/errors.py)."""
    t_start = time.perf_counter()
    path = Path(clip_path)
    rules = prompt if isinstance(prompt, Rules) else parse_prompt(prompt)
    motion = sampling.parse_boxes(boxes, config.boxes_offset_s)
    det = detector or detector_for(config)
    warnings: list[str] = []
    if config.mode == "naive":
        info, seen, frames_decoded, detect_s, warnings = _naive(path, det)
        planned, stopped, guided = frames_decoded, False, False
    else:
        decoded, seen, planned, stopped, detect_s = _guided(path, motion, det, config)
        info, frames_decoded, warnings = decoded.info, decoded.frames_decoded, decoded.warnings
        guided = bool(motion)
    w, h = info.width, info.height
    frames_in = [(s.t, [(d.label, d.score, d.box) for d in s.detections]) for s in seen]
    tracks = track_all(frames_in, config.tracker)
    confirmed = _confirmed(tracks, config.min_confidence)
    track_of: dict[tuple[float, Box], int] = {}
    for tr in tracks:
        for t, box, _score in tr.boxes:
            track_of[(t, box)] = tr.id
    frames = [FrameResult(round(s.t, 3), (s.region.x0, s.region.y0, s.region.x1, s.region.y1),
                          [{"label": d.label, "score": round(d.score, 4), "box": _norm(d.box, w, h),
                            "track": track_of.get((s.t, d.box))} for d in s.detections])
              for s in sorted(seen, key=lambda s: s.t)]
    labels, found, summaries, snapshots = _labels(confirmed, seen, w, h)
    guess: dict[str, Any] | None = None
    if not labels:
        weak = [(d.score, d.label, d.box, s.frame) for s in seen for d in s.detections]
        if weak:
            score, label, box, frame = max(weak, key=lambda x: x[0])
            guess = {"label": label, "score": round(score, 4), "box": _norm(box, w, h)}
            if frame is not None:  # a picture of the doubtful thing, for a VLM or a human to judge
                snapshots["candidate"] = encode_jpeg(draw_box(frame.to_ndarray(format="rgb24"), box))
    when = started_at or datetime.now(UTC)
    decision: Decision = decide(found, rules, when, config.timezone, zones)
    local = local_time(when, config.timezone)
    night = HourRange(*NIGHT).contains(local.hour * 60 + local.minute)
    text = summary.sentence(summaries, camera_name, info.duration_s,
                            (str(guess["label"]), float(guess["score"])) if guess else None,
                            config.min_confidence)
    result = AnalysisResult(
        summary=text, notify=decision.notify, reason=decision.reason, labels=labels,
        tags=summary.tags(summaries, night), frames=frames, rules=rules.to_json(), provider=det.provider,
        model=det.path.name,
        clip={"codec": info.codec, "width": w, "height": h, "duration_s": round(info.duration_s, 3),
              "fps": info.fps},
        frames_decoded=frames_decoded, detector_images=len(seen),
        detector_runs=len(seen) if config.mode == "naive" else -(-len(seen) // det.batch_size),
        samples_planned=planned, stopped_early=stopped, guided=guided,
        timings={"detect_s": round(detect_s, 3), "total_s": round(time.perf_counter() - t_start, 3)},
        best_guess=guess, warnings=warnings, snapshots=snapshots)
    log.info("clip analysed", extra={"clip": str(path), "labels": [lab.label for lab in labels],
                                     "notify": result.notify, "provider": det.provider,
                                     "detector_images": result.detector_images, "frames_decoded": frames_decoded})
    return result


def _labels(confirmed: Sequence[Track], seen: Sequence[_Seen], w: int, h: int
            ) -> tuple[list[LabelResult], list[Found], list[summary.LabelSummary], dict[str, bytes]]:
    by_label: dict[str, list[Track]] = {}
    for tr in confirmed:
        by_label.setdefault(tr.label, []).append(tr)
    frame_at = {s.t: s.frame for s in seen if s.frame is not None}
    labels: list[LabelResult] = []
    found: list[Found] = []
    summaries: list[summary.LabelSummary] = []
    snapshots: dict[str, bytes] = {}
    for label, trs in by_label.items():
        best = max(trs, key=lambda tr: tr.best_score)
        best_box = next(b for t, b, s in best.boxes if t == best.best_t and s == best.best_score)
        first = min(tr.first_t for tr in trs)
        last = max(tr.last_t for tr in trs)
        labels.append(LabelResult(label, len(trs), round(best.best_score, 4), round(first, 2), round(last, 2),
                                  round(best.best_t, 3), _norm(best_box, w, h)))
        points = tuple(((b[0] + b[2]) / 2 / w, b[3] / h) for tr in trs for _t, b, _s in tr.boxes)
        found.append(Found(label, len(trs), best.best_score, points))
        main = max(trs, key=lambda tr: (len(tr.boxes), tr.best_score))
        summaries.append(summary.LabelSummary(label, len(trs), best.best_score, first, last,
                                              tuple(_norm(b, w, h) for _t, b, _s in main.boxes)))
        frame = frame_at.get(best.best_t)
        if frame is not None:
            snapshots[label] = encode_jpeg(draw_box(frame.to_ndarray(format="rgb24"), best_box))
    # people first, then by confidence: the sentence leads with what matters most
    order = sorted(range(len(labels)), key=lambda i: (labels[i].label != "person", -labels[i].max_confidence))
    return ([labels[i] for i in order], [found[i] for i in order], [summaries[i] for i in order], snapshots)
