"""A small IoU tracker over the sampled frames, so one person walking through the clip is one person.

Frames are sparse (2 per second or fewer), so a walker's boxes in consecutive samples may not overlap. A
detection joins a track when its IoU with the track's last box is high enough, or when its centre is within
reach of it: half a box diagonal plus ``reach_per_s`` diagonals per second since the track was last seen.
Matching is greedy, best pair first, one detection per track per frame; tracks unseen for ``max_gap_s`` end.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class TrackerConfig:
    iou: float = 0.3
    reach_per_s: float = 1.0
    max_gap_s: float = 5.0


@dataclass
class Track:
    id: int
    label: str
    first_t: float
    last_t: float
    best_score: float
    best_t: float
    boxes: list[tuple[float, Box, float]] = field(default_factory=list)  # (t, box, score)
    vx: float = 0.0  # centre velocity, pixels per second
    vy: float = 0.0

    @property
    def last_box(self) -> Box:
        return self.boxes[-1][1]


def iou(a: Box, b: Box) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _centre(b: Box) -> tuple[float, float]:
    return (b[0] + b[2]) / 2, (b[1] + b[3]) / 2


def _diag(b: Box) -> float:
    return math.hypot(b[2] - b[0], b[3] - b[1])


class Tracker:
    """Feed frames in time order with ``update``; ``tracks`` holds every track made."""

    def __init__(self, cfg: TrackerConfig = TrackerConfig()) -> None:
        self.cfg = cfg
        self.tracks: list[Track] = []

    def _affinity(self, track: Track, box: Box, t: float) -> float:
        """> 0 when the detection may continue the track; higher is a better match."""
        dt = max(t - track.last_t, 0.0)
        lx0, ly0, lx1, ly1 = track.last_box
        pred = (lx0 + track.vx * dt, ly0 + track.vy * dt, lx1 + track.vx * dt, ly1 + track.vy * dt)
        o = iou(pred, box)
        if o >= self.cfg.iou:
            return 1.0 + o
        (ax, ay), (bx, by) = _centre(pred), _centre(box)
        diag = (_diag(pred) + _diag(box)) / 2
        reach = diag * (0.5 + self.cfg.reach_per_s * dt)
        dist = math.hypot(ax - bx, ay - by)
        return 1.0 - dist / reach if dist < reach else 0.0

    def update(self, t: float, detections: Sequence[tuple[str, float, Box]]) -> list[int]:
        """Add one frame's (label, score, box) detections; returns the track id of each."""
        live = [tr for tr in self.tracks if t - tr.last_t <= self.cfg.max_gap_s and tr.last_t < t]
        pairs = []
        for di, (label, _score, box) in enumerate(detections):
            for tr in live:
                if tr.label == label:
                    a = self._affinity(tr, box, t)
                    if a > 0:
                        pairs.append((a, di, tr.id))
        pairs.sort(reverse=True)
        assigned: dict[int, int] = {}
        used_tracks: set[int] = set()
        for _a, di, tid in pairs:
            if di not in assigned and tid not in used_tracks:
                assigned[di] = tid
                used_tracks.add(tid)
        by_id = {tr.id: tr for tr in self.tracks}
        ids = []
        for di, (label, score, box) in enumerate(detections):
            if di in assigned:
                tr = by_id[assigned[di]]
            else:
                tr = Track(len(self.tracks) + 1, label, t, t, score, t)
                self.tracks.append(tr)
            if tr.boxes and t > tr.last_t:
                (ax, ay), (bx, by) = _centre(tr.last_box), _centre(box)
                tr.vx, tr.vy = (bx - ax) / (t - tr.last_t), (by - ay) / (t - tr.last_t)
            tr.boxes.append((t, box, score))
            tr.last_t = t
            if score > tr.best_score:
                tr.best_score, tr.best_t = score, t
            ids.append(tr.id)
        return ids


def track_all(frames: Sequence[tuple[float, Sequence[tuple[str, float, Box]]]],
              cfg: TrackerConfig = TrackerConfig()) -> list[Track]:
    """Tracks over frames given in any order (they are sorted by time first)."""
    tracker = Tracker(cfg)
    for t, dets in sorted(frames, key=lambda f: f[0]):
        tracker.update(t, dets)
    return tracker.tracks
