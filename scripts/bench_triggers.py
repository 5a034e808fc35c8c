"""Benchmark of the triggers: cost and accuracy on the generated scenes (tests/scenes.py).

Usage: .venv/bin/python scripts/bench_triggers.py [--repeat N]
       scripts/bench triggers --heldout        (or --split tune): the photo and sound scene sets

With --heldout/--split, instead of the cost tables: per scene group of tests/photo_scenes.py (real photographs
through libx264) and tests/scenes.sound_set (fans and HVAC under claps, knocks, glass), events expected /
detected / false and mean / p95 latency, for ping-watch (medium) and the Frigate-style baseline in the same run,
through the engine with its default settings (EngineConfig()).

* motion: ms per 320x180 frame for ping-watch's detector next to OpenCV's MOG2 on the same frames in the same
  run (MOG2 at full 320x180 and on the same 160x90 working copy our detector uses), plus a simple re-implementation
  of the Frigate-style baseline described in the design notes (percentile stretch, running average, threshold 30);
* accuracy per scene through the same engine debounce (2 of 3 frames): false events, missed events, latency
  from the truth's onset to the event's detection;
* audio: microseconds per 20 ms frame.

Prints markdown tables. Timings are best-of-N passes (other processes on a small machine only ever add time).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hub.media.frames import DetectFrame
from hub.triggers.audio import AudioTrigger
from hub.triggers.engine import EngineConfig, EventStarted, TriggerEngine
from hub.triggers.motion import MotionConfig, MotionDetector, MotionResult
from tests import photo_scenes, scenes

Detector = Callable[[DetectFrame], MotionResult]


class Mog2:
    """MOG2 foreground, opened, blobs over the same minimum area as our medium preset."""

    def __init__(self, downscale: bool, min_area: float = 0.002) -> None:
        self.mog = cv2.createBackgroundSubtractorMOG2(history=500, varThreshold=16, detectShadows=False)
        self.downscale = downscale
        self.min_area = min_area
        self.k = np.ones((3, 3), np.uint8)

    def __call__(self, frame: DetectFrame) -> MotionResult:
        y = frame.y
        if self.downscale:
            y = cv2.resize(y, (y.shape[1] // 2, y.shape[0] // 2), interpolation=cv2.INTER_AREA)
        fg = self.mog.apply(y)
        fg = cv2.morphologyEx(fg, cv2.MORPH_OPEN, self.k)
        __, _, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
        area = stats[1:, cv2.CC_STAT_AREA]
        big = area[area >= self.min_area * fg.size]
        return MotionResult(bool(big.size), float(big.sum()) / fg.size, [])


class FrigateStyle:
    """The reference design from the notes, re-implemented from its description (not from its code)."""

    def __init__(self) -> None:
        self.bg: np.ndarray | None = None
        self.lo, self.hi = 0.0, 255.0
        self.frames = 0

    def __call__(self, frame: DetectFrame) -> MotionResult:
        y = frame.y
        h = 100
        small = cv2.resize(y, (int(y.shape[1] * h / y.shape[0]), h), interpolation=cv2.INTER_AREA)
        lo, hi = np.percentile(small, (4, 96))
        # Rolling stretch bounds: smooth over frames, which is why a light switch reads as motion.
        self.lo, self.hi = (lo, hi) if self.frames == 0 else (0.9 * self.lo + 0.1 * lo, 0.9 * self.hi + 0.1 * hi)
        stretched = np.clip((small - self.lo) * (255.0 / max(self.hi - self.lo, 1.0)), 0, 255).astype(np.float32)
        stretched = cv2.GaussianBlur(stretched, (3, 3), 0)
        self.frames += 1
        if self.bg is None:
            self.bg = stretched.copy()
            return MotionResult(False, 0.0, [])
        calibrating = self.frames <= 10
        diff = cv2.absdiff(stretched, self.bg)
        fg = (diff > 30).astype(np.uint8)
        fg = cv2.dilate(fg, None, iterations=1)
        cv2.accumulateWeighted(stretched, self.bg, 0.2 if calibrating else 0.01)
        frac = float(fg.mean())
        if frac > 0.8:  # recalibrate on a near-total change
            self.bg = stretched.copy()
            self.frames = 1
            return MotionResult(False, 0.0, [])
        if calibrating:
            return MotionResult(False, 0.0, [])
        __, _, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
        big = stats[1:, cv2.CC_STAT_AREA] > 10
        return MotionResult(bool(big.any()), frac, [])


def time_detector(make: Callable[[], Detector], frames: list[DetectFrame], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        det = make()
        t0 = time.perf_counter()
        for f in frames:
            det(f)
        best = min(best, (time.perf_counter() - t0) / len(frames))
    return best * 1e3


def accuracy(make: Callable[[], Detector], sc: scenes.VideoScene) -> tuple[int, int, float | None]:
    """(false events, missed events, latency of the first true detection in s)."""
    det = make()
    eng = TriggerEngine("bench", EngineConfig(cooldown_s=0, post_roll_s=2))
    starts = []
    for f in sc.detect_frames():
        starts += [e for e in eng.feed_motion(f.t, det(f)) if isinstance(e, EventStarted)]
    if not sc.onsets:
        return len(starts), 0, None
    onset = sc.onsets[0]
    # Events while the mover is in view are the true event and its continuations; anything else is false.
    seen = [i / sc.fps for i, b in enumerate(sc.truth_boxes) if b is not None]
    last = (seen[-1] if seen else onset) + 3.0
    true = [s for s in starts if onset - 0.5 <= s.detected_at <= last]
    false = len(starts) - len(true)
    return false, 0 if true else 1, (true[0].detected_at - onset) if true else None


def _p95(xs: list[float]) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(0.95 * (len(xs) - 1)))] if xs else float("nan")


def _row(group: str, who: str, expected: int, detected: int, false: int, lat: list[float]) -> str:
    mean = statistics.mean(lat) if lat else float("nan")
    return f"| {group} | {who} | {expected} | {detected} | {false} | {mean:.2f} | {_p95(lat):.2f} |"


def scene_sets(split: str) -> None:
    """Per-group accuracy on the photo scenes and the sound set of one split."""
    t0 = time.perf_counter()
    specs = photo_scenes.scene_specs(split)  # type: ignore[arg-type]
    detectors: dict[str, Callable[[], Detector]] = {
        "ping-watch medium": lambda: MotionDetector(MotionConfig(sensitivity="medium")).process,
        "Frigate-style": FrigateStyle,
    }
    cfg = EngineConfig()
    groups: dict[tuple[str, str], list] = {}
    for spec in specs:
        sc = photo_scenes.render(spec)
        for who, make in detectors.items():
            det, eng, starts = make(), TriggerEngine("bench", cfg), []
            for f in sc.detect_frames():
                starts += [e.detected_at for e in eng.feed_motion(f.t, det(f)) if isinstance(e, EventStarted)]
            r = photo_scenes.score(sc, starts)
            g = groups.setdefault((sc.group, who), [0, 0, 0, []])
            g[0] += r.expected
            g[1] += r.detected
            g[2] += r.false
            g[3] += r.latencies
    print(f"## Motion, {split} photo scenes ({len(specs)} scenes, {time.perf_counter() - t0:.0f} s; engine "
          f"post_roll {cfg.post_roll_s:g} s, cooldown {cfg.cooldown_s:g} s, debounce {cfg.debounce_hits} of "
          f"{cfg.debounce_window})\n")
    print("| group | detector | events expected | detected | false | mean latency s | p95 latency s |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    walk: dict[str, list] = {}
    for (group, who), g in groups.items():
        print(_row(group, who, *g[:3], g[3]))
        if group.startswith("walk"):
            w = walk.setdefault(who, [0, 0, 0, []])
            for i in range(3):
                w[i] += g[i]
            w[3] += g[3]
    for who, w in walk.items():
        print(_row("**all walking**", who, *w[:3], w[3]))

    print(f"\n## Sound, {split} set (latency: first trigger after the sound's start)\n")
    print("| group | events expected | detected | false | mean latency s | p95 latency s |")
    print("| --- | --- | --- | --- | --- | --- |")
    sgroups: dict[str, list] = {}
    for case in scenes.sound_set(split):
        sc = case.scene
        trig = AudioTrigger()
        hits = [c.t for c in sc.chunks() if trig.process(c).triggered]
        g = sgroups.setdefault(case.group, [0, 0, 0, []])
        g[0] += len(sc.onsets)
        if sc.onsets:
            onset = sc.onsets[0]
            true = [h for h in hits if onset - 0.05 <= h <= onset + 1.5]
            g[1] += bool(true)
            g[2] += bool(len(true) < len(hits))
            g[3] += [max(true[0] - onset, 0.0)] if true else []
        else:
            g[2] += bool(hits)
    for group, g in sgroups.items():
        print(_row(group, "", *g[:3], g[3]).replace("|  |", "|", 1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5, help="timing passes (best is reported)")
    ap.add_argument("--heldout", action="store_true", help="the held-out photo and sound sets (never tuned on)")
    ap.add_argument("--split", choices=["tune", "heldout"], help="the photo and sound sets of this split")
    args = ap.parse_args()
    if args.heldout or args.split:
        scene_sets(args.split or "heldout")
        return

    video = {name: make() for name, make in scenes.VIDEO_SCENES.items()}
    detectors: dict[str, Callable[[], Detector]] = {
        "ping-watch medium": lambda: MotionDetector(MotionConfig(sensitivity="medium")).process,
        "ping-watch high": lambda: MotionDetector(MotionConfig(sensitivity="high")).process,
        "MOG2 320x180": lambda: Mog2(downscale=False),
        "MOG2 160x90": lambda: Mog2(downscale=True),
        "Frigate-style": FrigateStyle,
    }

    # -- cost ------------------------------------------------------------------------------------------------
    all_frames = [f for sc in video.values() for f in sc.detect_frames()]
    quiet = [f for f in video["static"].detect_frames()]
    busy = [f for f in video["person_near"].detect_frames()]
    print(f"## Motion cost per 320x180 frame (best of {args.repeat}, {len(all_frames)} frames, "
          f"cv2 threads {cv2.getNumThreads()})\n")
    print("| detector | all scenes ms | quiet scene ms | person scene ms |")
    print("| --- | --- | --- | --- |")
    for name, make in detectors.items():
        costs = [time_detector(make, fr, args.repeat) for fr in (all_frames, quiet, busy)]
        print(f"| {name} | " + " | ".join(f"{c:.3f}" for c in costs) + " |")
    # The hub may pin OpenCV to one thread (many small frames, several cameras): on 160x90 images a second
    # thread mostly adds hand-off cost, and on a busy 2-core box it waits for a core.
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        for name in ("ping-watch medium", "ping-watch high"):
            costs = [time_detector(detectors[name], fr, args.repeat) for fr in (all_frames, quiet, busy)]
            print(f"| {name}, cv2 1 thread | " + " | ".join(f"{c:.3f}" for c in costs) + " |")
    finally:
        cv2.setNumThreads(threads)
    big = [f for f in scenes.person_near(size=(640, 360)).detect_frames()]
    print(f"\nping-watch medium at 640x360: {time_detector(detectors['ping-watch medium'], big, args.repeat):.3f} ms"
          " per frame\n")

    # -- accuracy --------------------------------------------------------------------------------------------
    print("## Motion accuracy (events through the engine's 2-of-3 debounce; latency from the truth's onset)\n")
    names = list(detectors)
    print("| scene | truth | " + " | ".join(names) + " |")
    print("| --- | --- | " + " | ".join("---" for _ in names) + " |")
    totals = {n: [0, 0, []] for n in names}
    for sname, sc in video.items():
        cells = []
        for n in names:
            false, missed, lat = accuracy(detectors[n], sc)
            totals[n][0] += false
            totals[n][1] += missed
            if lat is not None:
                totals[n][2].append(lat)
            cell = "ok" if not false and not missed else ""
            if false:
                cell = f"{false} false"
            if missed:
                cell = (cell + ", " if cell else "") + "MISSED"
            if lat is not None:
                cell = (cell + " " if cell != "ok" else "") + f"{lat:+.1f} s"
            cells.append(cell)
        truth = f"onset {sc.onsets[0]:.0f} s (≥{sc.sensitivity})" if sc.onsets else "none"
        print(f"| {sname} | {truth} | " + " | ".join(cells) + " |")
    print("| **total** | | " + " | ".join(
        f"{t[0]} false, {t[1]} missed, mean {statistics.mean(t[2]) if t[2] else float('nan'):.2f} s"
        for t in totals.values()) + " |")

    # -- audio -----------------------------------------------------------------------------------------------
    print("\n## Audio\n")
    print("| scene | triggered at | µs per 20 ms frame |")
    print("| --- | --- | --- |")
    for name, make in scenes.AUDIO_SCENES.items():
        sc = make()
        chunks = list(sc.chunks())
        best, hits = float("inf"), []
        for _ in range(args.repeat):
            trig = AudioTrigger()
            t0 = time.perf_counter()
            hits = [c.t for c in chunks if trig.process(c).triggered]
            best = min(best, (time.perf_counter() - t0) / len(chunks))
        when = f"{hits[0]:.2f} s" if hits else "-"
        truth = f" (truth {sc.onsets[0]:.2f} s)" if sc.onsets else " (truth: none)"
        print(f"| {name} | {when}{truth} | {best * 1e6:.1f} |")


if __name__ == "__main__":
    main()
