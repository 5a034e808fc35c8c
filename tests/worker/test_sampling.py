"""Motion boxes from the hub, and the plan of which frames and regions the detector sees."""

from __future__ import annotations

from typing import Any

import pytest

from cloud.worker.errors import BoxesError
from cloud.worker.sampling import FULL, MotionBox, SamplingConfig, parse_boxes, plan, spread_order


def test_parse_hub_rows_and_dicts() -> None:
    rows = [[1.0, 0.1, 0.2, 0.3, 0.4], [1.2, 0.1, 0.2, 0.3, 0.4, 0.5, 0.5, 0.6, 0.7]]
    boxes = parse_boxes(rows, offset_s=2.0)
    assert boxes == [MotionBox(3.0, 0.1, 0.2, 0.3, 0.4), MotionBox(3.2, 0.1, 0.2, 0.3, 0.4),
                     MotionBox(3.2, 0.5, 0.5, 0.6, 0.7)]
    assert parse_boxes([{"t": 0.5, "x": 0.1, "y": 0.2, "w": 0.3, "h": 0.4}]) == [
        MotionBox(0.5, 0.1, 0.2, pytest.approx(0.4), pytest.approx(0.6))]  # type: ignore[arg-type]
    assert parse_boxes(None) == [] and parse_boxes([]) == []
    assert parse_boxes([[1.0, 0.5, 0.5, 0.5, 0.9]]) == []  # no area: dropped
    assert parse_boxes([[1.0, -0.2, 0.1, 1.3, 0.5]]) == [MotionBox(1.0, 0.0, 0.1, 1.0, 0.5)]  # clamped


@pytest.mark.parametrize("bad", [{"t": 1}, "boxes", [[1.0, 0.1, 0.2]], [[1.0, 0.1, 0.2, 0.3, "x"]],
                                 [{"t": 1, "x": 0.1, "y": 0.1, "w": None, "h": 0.1}], [[float("nan"), 0, 0, 1, 1]],
                                 [[-1.0, 0, 0, 1, 1]], [[True, 0, 0, 1, 1]]])
def test_bad_boxes_are_a_clear_error(bad: Any) -> None:
    with pytest.raises(BoxesError) as exc:
        parse_boxes(bad)
    assert exc.value.reason == "bad_motion_boxes" and exc.value.hint


def test_spread_order_covers_the_span_early() -> None:
    order = spread_order(9, first=4)
    assert sorted(order) == list(range(9)) and order[0] == 4
    assert {0, 8} <= set(order[:4])  # both ends within the first few
    assert spread_order(0) == [] and spread_order(1) == [0]


def test_guided_plan_looks_only_where_motion_was() -> None:
    # a person crossed the left half between 8 and 11 s of a 20 s clip
    boxes = [MotionBox(8 + i * 0.2, 0.05 + i * 0.01, 0.6, 0.11 + i * 0.012, 0.8) for i in range(16)]
    samples = plan(20.0, boxes, 1280, 720)
    times = sorted(s.t for s in samples)
    assert 7.0 <= times[0] and times[-1] <= 12.0
    assert len(samples) <= 9  # 2 per second over ~4.5 s, not 20 s of frames
    assert samples[0].t == pytest.approx(11.0, abs=0.6)  # the biggest box (the last) first
    for s in samples:  # small motion: a square crop around it, not the full frame
        assert not s.region.full and s.region.x0 < 0.3 and s.region.area < 0.45


def test_big_motion_uses_full_frames_and_no_boxes_falls_back() -> None:
    big = [MotionBox(2.0, 0.1, 0.1, 0.7, 0.9)]
    assert all(s.region == FULL for s in plan(10.0, big, 1280, 720))
    sparse = plan(20.0, [], 1280, 720, SamplingConfig(fallback_fps=0.5))
    assert len(sparse) == 10 and all(s.region == FULL for s in sparse)
    assert plan(20.0, [], 1280, 720, SamplingConfig(max_samples=4)).__len__() == 4


def test_long_motion_is_capped() -> None:
    boxes = [MotionBox(t / 5, 0.4, 0.4, 0.5, 0.6) for t in range(300)]  # motion for a whole minute
    samples = plan(60.0, boxes, 1280, 720, SamplingConfig(max_samples=16))
    assert len(samples) == 16
    assert max(s.t for s in samples) - min(s.t for s in samples) > 55
