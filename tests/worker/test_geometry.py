"""Letterbox mapping, decode and NMS, the tracker: pure numpy, exact answers."""

from __future__ import annotations

import numpy as np
import pytest

from cloud.worker.letterbox import PAD_VALUE, letterbox, to_tensor
from cloud.worker.tracker import track_all
from cloud.worker.yolo import batched_nms, decode, iou_matrix, nms


@pytest.mark.parametrize("size", [(720, 1280), (1080, 1920), (480, 640), (641, 333), (200, 200), (1280, 720)])
def test_letterbox_round_trip(size: tuple[int, int]) -> None:
    h, w = size
    img = np.random.default_rng(1).integers(0, 255, (h, w, 3), dtype=np.uint8)
    canvas, lb = letterbox(img, (640, 640), offset=(10.0, 20.0))
    assert canvas.shape == (640, 640, 3)
    boxes = np.array([[10 + 0, 20 + 0, 10 + w, 20 + h], [10 + w * 0.25, 20 + h * 0.5, 10 + w * 0.5, 20 + h * 0.9]],
                     np.float32)
    back = lb.to_frame(lb.to_input(boxes))
    np.testing.assert_allclose(back, boxes, atol=1e-3)
    # the image's full extent lands exactly on the non-padded area
    full = lb.to_input(boxes[:1])[0]
    assert full[0] == lb.pad_x and full[1] == lb.pad_y
    assert full[2] - full[0] == pytest.approx(round(w * min(640 / h, 640 / w)), abs=0.01)
    if lb.pad_y >= 1:
        assert (canvas[0] == PAD_VALUE).all() and (canvas[-1] == PAD_VALUE).all()
    if lb.pad_x >= 1:
        assert (canvas[:, 0] == PAD_VALUE).all() and (canvas[:, -1] == PAD_VALUE).all()


def test_letterbox_720p_geometry_and_tensor() -> None:
    img = np.zeros((720, 1280, 3), np.uint8)
    img[:, :, 0] = 255
    canvas, lb = letterbox(img, (640, 640))
    assert (lb.scale_x, lb.scale_y, lb.pad_x, lb.pad_y) == (0.5, 0.5, 0, 140)
    t = to_tensor([canvas, canvas])
    assert t.shape == (2, 3, 640, 640) and t.dtype == np.float32
    assert t[0, 0, 320, 320] == 1.0 and t[0, 1, 320, 320] == 0.0  # RGB order kept, scaled to [0, 1]
    assert t[0, 0, 0, 0] == pytest.approx(PAD_VALUE / 255)
    # clipping: a box hanging off the image is cut to it
    np.testing.assert_allclose(lb.to_frame(np.array([[-50, 100, 700, 600]], np.float32)),
                               [[0, 0, 1280, 720]])


def _out(boxes: list[tuple[float, float, float, float, int, float]], nc: int, anchors: int = 8400) -> np.ndarray:
    out = np.zeros((4 + nc, anchors), np.float32)
    for i, (cx, cy, w, h, cls, score) in enumerate(boxes):
        out[:4, i * 7] = (cx, cy, w, h)
        out[4 + cls, i * 7] = score
    return out


def test_decode_threshold_xyxy_and_per_class_nms() -> None:
    out = _out([(100, 100, 40, 80, 0, 0.9), (102, 101, 40, 80, 0, 0.8),  # duplicate of the first: removed
                (101, 100, 40, 80, 2, 0.7),  # same place, other class: kept
                (400, 300, 50, 50, 1, 0.2)], nc=3)  # below the threshold
    d = decode(out, np.arange(3), 3, conf=0.25, iou=0.45)
    assert len(d) == 2
    assert d.labels.tolist() == [0, 2]
    np.testing.assert_allclose(d.scores, [0.9, 0.7], atol=1e-6)
    np.testing.assert_allclose(d.boxes[0], [80, 60, 120, 140])


def test_aliased_classes_are_one_label() -> None:
    """The bundled model's Normal and Fall on one person: one person, best score of the two."""
    out = _out([(100, 100, 40, 80, 0, 0.6), (101, 100, 40, 80, 1, 0.7)], nc=2)
    d = decode(out, np.array([0, 0]), 1, conf=0.25, iou=0.45)
    assert len(d) == 1 and d.labels.tolist() == [0] and float(d.scores[0]) == pytest.approx(0.7)


def test_nms_and_iou() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 10]], np.float32)
    scores = np.array([0.5, 0.9, 0.8, 0.4], np.float32)
    assert iou_matrix(boxes[:1], boxes[1:2])[0, 0] == pytest.approx(81 / 119)
    assert nms(boxes, scores, 0.5).tolist() == [1, 2]
    assert nms(boxes, scores, 0.9).tolist() == [1, 2, 0]  # 0 and 3 are identical: 3 goes
    labels = np.array([0, 1, 0, 0])
    assert batched_nms(boxes, scores, labels, 0.5).tolist() == [1, 2, 0]  # 1 has another label: no suppression
    assert batched_nms(boxes[:0], scores[:0], labels[:0], 0.5).size == 0


def _walker(t0: float, x0: float, speed: float, y: float = 300, fps: float = 2.0, seconds: float = 4.0,
            w: float = 80, h: float = 200) -> list[tuple[float, tuple[float, float, float, float]]]:
    out = []
    for i in range(int(seconds * fps) + 1):
        t = t0 + i / fps
        x = x0 + speed * (t - t0)
        out.append((t, (x, y, x + w, y + h)))
    return out


def _frames(*walkers: list[tuple[float, tuple[float, float, float, float]]]
            ) -> list[tuple[float, list[tuple[str, float, tuple[float, float, float, float]]]]]:
    by_t: dict[float, list[tuple[str, float, tuple[float, float, float, float]]]] = {}
    for walk in walkers:
        for t, box in walk:
            by_t.setdefault(t, []).append(("person", 0.8, box))
    return list(by_t.items())


def test_one_walker_is_one_track_even_without_overlap() -> None:
    # 300 px/s at 2 samples/s: consecutive boxes 150 px apart, 80 px wide, never overlapping
    tracks = track_all(_frames(_walker(1.0, 0, 300)))
    assert len(tracks) == 1
    assert (tracks[0].first_t, tracks[0].last_t) == (1.0, 5.0)
    assert len(tracks[0].boxes) == 9


def test_two_walkers_are_two_tracks() -> None:
    left_to_right = _walker(1.0, 0, 250, y=300)
    right_to_left = _walker(1.0, 1200, -250, y=320)
    tracks = track_all(_frames(left_to_right, right_to_left))
    assert len(tracks) == 2
    for tr in tracks:
        xs = [b[0] for _t, b, _s in tr.boxes]
        assert xs == sorted(xs) or xs == sorted(xs, reverse=True)  # each track follows one walker


def test_frames_out_of_order_and_a_return_after_a_long_gap() -> None:
    walk = _walker(0.0, 100, 0, seconds=1)
    later = _walker(20.0, 100, 0, seconds=1)  # same place, 19 s later: a new visit
    frames = _frames(walk, later)
    tracks = track_all(list(reversed(frames)))
    assert len(tracks) == 2
