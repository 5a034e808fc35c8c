"""The motion detector (with the engine's debounce) against generated scenes with known truth."""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest

from hub.media.frames import DetectFrame
from hub.triggers.engine import EngineConfig, EventStarted, TriggerEngine
from hub.triggers.motion import MotionConfig, MotionDetector, MotionResult
from hub.triggers.zones import active_area
from tests import scenes

LATENCY_S = 0.5
ORDER = ["low", "medium", "high"]
EVENT_SCENES = ["person_near", "person_far", "night_person", "person_shake", "lights_person", "cat"]
QUIET_SCENES = [n for n in scenes.VIDEO_SCENES if n not in EVENT_SCENES]


@cache
def scene(name: str, size: tuple[int, int] = scenes.SIZE) -> scenes.VideoScene:
    return scenes.VIDEO_SCENES[name](size=size)


def run(sc: scenes.VideoScene, sensitivity: str, mask: np.ndarray | None = None) -> \
        tuple[list[EventStarted], list[MotionResult]]:
    det = MotionDetector(MotionConfig(sensitivity=sensitivity), mask=mask)
    eng = TriggerEngine("cam", EngineConfig(cooldown_s=0, post_roll_s=2))
    started, results = [], []
    for f in sc.detect_frames():
        r = det.process(f)
        results.append(r)
        started += [e for e in eng.feed_motion(f.t, r) if isinstance(e, EventStarted)]
    return started, results


def test_scene_lists_cover_everything() -> None:
    assert set(EVENT_SCENES) | set(QUIET_SCENES) == set(scenes.VIDEO_SCENES)
    for name in EVENT_SCENES:
        assert scene(name).onsets
    for name in QUIET_SCENES:
        assert not scene(name).onsets


@pytest.mark.parametrize("name", EVENT_SCENES)
def test_movers_are_detected_within_half_a_second(name: str) -> None:
    sc = scene(name)
    for sens in ORDER[ORDER.index(sc.sensitivity):]:
        started, _ = run(sc, sens)
        assert started, f"{name} missed at {sens}"
        first = started[0]
        assert first.detected_at >= sc.onsets[0] - LATENCY_S, f"{name} at {sens}: event before the mover"
        assert first.detected_at - sc.onsets[0] <= LATENCY_S, f"{name} at {sens}: {first.detected_at:.1f} s"
        assert first.t_start <= first.detected_at


@pytest.mark.parametrize("name", QUIET_SCENES)
def test_no_events_without_a_mover(name: str) -> None:
    sc = scene(name)
    for sens in ORDER[: ORDER.index(sc.sensitivity) + 1]:
        started, results = run(sc, sens)
        assert not started, f"{name} at {sens}: false event at {started[0].detected_at:.1f} s"
        # Not just debounced away: the detector itself stays quiet on almost every frame.
        assert sum(r.motion for r in results) <= 1


def test_cat_is_ignored_at_low_sensitivity() -> None:
    started, _ = run(scene("cat"), "low")
    assert not started


def test_boxes_sit_on_the_mover() -> None:
    sc = scene("person_near")
    _, results = run(sc, "medium")
    checked = 0
    for r, truth in zip(results, sc.truth_boxes, strict=False):
        if r.motion and truth is not None:
            x0, y0, x1, y1 = r.boxes[0]
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            assert truth[0] - 0.05 <= cx <= truth[2] + 0.05 and truth[1] - 0.05 <= cy <= truth[3] + 0.05
            assert 0 < r.score < 0.5
            checked += 1
    assert checked >= 10


def test_mask_suppresses_motion_in_masked_area() -> None:
    sc = scene("person_near")
    w, h = scenes.SIZE
    # The person walks along the bottom 80 % of the frame; mask all of it.
    masked = active_area(w, h, masks=["0,0.15 1,0.15 1,1 0,1"])
    started, results = run(sc, "high", mask=masked)
    assert not started and not any(r.motion for r in results)


def test_zone_limits_motion_to_its_area() -> None:
    sc = scene("person_near")
    w, h = scenes.SIZE
    left = active_area(w, h, zones=["0,0 0.4,0 0.4,1 0,1"])
    _, results = run(sc, "medium", mask=left)
    seen = [(r, t) for r, t in zip(results, sc.truth_boxes, strict=False) if r.motion]
    assert seen
    for r, _ in seen:
        assert all(b[2] <= 0.42 for b in r.boxes)
    # Once the person is entirely right of the zone, nothing is reported.
    for r, truth in zip(results, sc.truth_boxes, strict=False):
        if truth is not None and truth[0] > 0.45:
            assert not r.motion


def test_works_at_640x360() -> None:
    sc = scene("person_far", (640, 360))
    started, _ = run(sc, "medium")
    assert started and started[0].detected_at - sc.onsets[0] <= LATENCY_S
    quiet, _ = run(scene("shake", (640, 360)), "medium")
    assert not quiet


def test_lighting_change_rebaselines() -> None:
    _, results = run(scene("lights"), "medium")
    assert any(r.recalibrated for r in results)


def test_reset_and_resolution_change() -> None:
    det = MotionDetector()
    rng = np.random.default_rng(0)
    for i in range(10):
        det.process(DetectFrame(rng.integers(90, 110, (180, 320), dtype=np.uint8), i * 0.2))
    r = det.process(DetectFrame(rng.integers(90, 110, (360, 640), dtype=np.uint8), 2.0))
    assert not r.motion  # a new size restarts learning instead of comparing mismatched frames
    with pytest.raises(ValueError):
        det.process(DetectFrame(np.zeros((180, 320, 3), np.uint8), 2.2))


def test_presets_and_overrides() -> None:
    assert MotionConfig(sensitivity="high").knob("threshold") < MotionConfig().knob("threshold")
    assert MotionConfig(threshold=40).knob("threshold") == 40
    with pytest.raises(ValueError):
        MotionConfig(sensitivity="extreme")  # type: ignore[arg-type]


# The detector's cost per frame is speed, not behaviour: scripts/bench triggers measures it (target 0.3 ms).
