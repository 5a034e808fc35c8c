"""Synthetic camera clips with known truth for the worker: a shaded, person-shaped figure walking past a door.

No photograph of a person ships with any package in the venv, so the tests draw one. The figure (head, hair,
neck, torso, arms, hands, tapered legs, shoes, each shaded left to right) was tuned by measuring the real
bundled model: it scores about 0.7-0.83 as a person at 220-450 px tall in a 1280x720 frame, and the empty scene
about 0.01. Tests assert what the model really says about these frames, not what a person would.

``make_clip`` writes an H.264 MP4 or VP8 WebM with PyAV and returns the truth, including the motion boxes the hub
would send (normalised ``[t, x0, y0, x1, y1]`` rows at the hub's 5 fps detect rate).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

BGR = tuple[int, int, int]


def background(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A wall, a floor and a door (RGB), with a little sensor noise."""
    img = np.zeros((height, width, 3), np.uint8)
    img[:] = (185, 180, 170)
    img[int(height * 0.7):] = (120, 110, 90)
    cv2.rectangle(img, (int(width * 0.7), int(height * 0.15)), (int(width * 0.85), int(height * 0.7)),
                  (110, 80, 60), -1)
    noise = np.random.default_rng(seed).normal(0, 6, img.shape)
    return np.clip(img + noise, 0, 255).astype(np.uint8)


def _shade(roi: np.ndarray, mask: np.ndarray, color: BGR, light: float = 0.35) -> None:
    ys, xs = np.nonzero(mask)
    if xs.size == 0:
        return
    x0, x1 = xs.min(), xs.max() + 1
    gain = np.linspace(1 + light, 1 - light, x1 - x0)
    col = np.clip(np.asarray(color, np.float32)[None, :] * gain[:, None], 0, 255).astype(np.uint8)
    roi[ys, xs] = col[xs - x0]


def person_box(cx: float, foot: float, h: float) -> tuple[float, float, float, float]:
    """The figure's pixel box (x0, y0, x1, y1) as ``draw_person`` draws it (arms and shoes included)."""
    u = h / 7.5
    return cx - 1.6 * u, foot - h, cx + 1.6 * u, foot + 0.3 * u


def draw_person(img: np.ndarray, cx: float, foot: float, h: float, stride: float = 0.0,
                shirt: BGR = (150, 70, 60), pants: BGR = (40, 45, 50), skin: BGR = (200, 150, 120),
                hair: BGR = (35, 25, 20)) -> None:
    """Draw the figure (RGB colours) standing with its feet at ``foot``, ``h`` pixels tall, legs apart by
    ``stride`` (-1..1). Drawn in a region of interest so a frame costs little."""
    u = h / 7.5
    H, W = img.shape[:2]
    bx0, by0 = max(0, int(cx - 2.2 * u)), max(0, int(foot - h - u))
    bx1, by1 = min(W, int(cx + 2.2 * u) + 1), min(H, int(foot + u) + 1)
    if bx1 <= bx0 or by1 <= by0:
        return
    roi = img[by0:by1, bx0:bx1]
    ox, oy = bx0, by0

    def p(x: float, y: float) -> tuple[int, int]:
        return int(x - ox), int(y - oy)

    def part(draw: object, color: BGR) -> None:
        m = np.zeros(roi.shape[:2], np.uint8)
        draw(m)  # type: ignore[operator]
        _shade(roi, m > 0, color)

    top = foot - h
    for sgn in (-1, 1):
        hip = (cx + sgn * u * 0.35, top + u * 3.9)
        knee = (cx + sgn * (u * 0.38 + stride * sgn * u * 0.6), top + u * 5.7)
        ank = (cx + sgn * (u * 0.35 + stride * sgn * u * 1.2), top + u * 7.3)
        part(lambda m, hip=hip, knee=knee, ank=ank: (
            cv2.line(m, p(*hip), p(*knee), 255, max(1, int(u * 0.62))),
            cv2.line(m, p(*knee), p(*ank), 255, max(1, int(u * 0.45)))), pants)
        part(lambda m, ank=ank, sgn=sgn: cv2.ellipse(m, p(ank[0] + sgn * u * 0.12, ank[1] + u * 0.12),
                                                     (max(1, int(u * 0.38)), max(1, int(u * 0.16))), 0, 0, 360,
                                                     255, -1), (25, 25, 25))
    torso = np.array([p(cx - u * 0.95, top + u * 1.45), p(cx + u * 0.95, top + u * 1.45),
                      p(cx + u * 0.8, top + u * 2.8), p(cx + u * 0.75, top + u * 4.1),
                      p(cx - u * 0.75, top + u * 4.1), p(cx - u * 0.8, top + u * 2.8)], np.int32)
    part(lambda m: cv2.fillPoly(m, [torso], 255), shirt)
    for sgn in (-1, 1):
        sh = (cx + sgn * u * 0.85, top + u * 1.65)
        el = (cx + sgn * u * 1.05, top + u * 2.9)
        wr = (cx + sgn * u * 1.1, top + u * 4.0)
        part(lambda m, sh=sh, el=el, wr=wr: (
            cv2.line(m, p(*sh), p(*el), 255, max(1, int(u * 0.38))),
            cv2.line(m, p(*el), p(*wr), 255, max(1, int(u * 0.32)))), shirt)
        part(lambda m, wr=wr: cv2.circle(m, p(wr[0], wr[1] + u * 0.2), max(1, int(u * 0.19)), 255, -1), skin)
    part(lambda m: cv2.rectangle(m, p(cx - u * 0.17, top + u * 1.0), p(cx + u * 0.17, top + u * 1.5), 255, -1), skin)
    part(lambda m: cv2.ellipse(m, p(cx, top + u * 0.55), (max(1, int(u * 0.38)), max(1, int(u * 0.5))), 0, 0, 360,
                               255, -1), skin)
    part(lambda m: cv2.ellipse(m, p(cx, top + u * 0.42), (max(1, int(u * 0.41)), max(1, int(u * 0.42))), 0, 180,
                               360, 255, -1), hair)
    roi[:] = cv2.GaussianBlur(roi, (3, 3), 0)


@dataclass
class Walker:
    """Walks from ``x0`` to ``x1`` (fractions of the width) between ``t0`` and ``t1`` s, ``h`` of the height tall."""

    t0: float
    t1: float
    x0: float
    x1: float
    h: float = 0.45
    foot: float = 0.86

    def at(self, t: float, width: int, height: int) -> tuple[float, float, float, float] | None:
        """(cx, foot, height, stride) in pixels at time t, or None when the walker is not in view."""
        if not self.t0 <= t <= self.t1:
            return None
        a = (t - self.t0) / max(self.t1 - self.t0, 1e-6)
        cx = (self.x0 + (self.x1 - self.x0) * a) * width
        return cx, self.foot * height, self.h * height, 0.5 * math.sin(t * 2 * math.pi)


@dataclass
class ClipTruth:
    path: Path
    width: int
    height: int
    fps: int
    seconds: float
    walkers: list[Walker]
    boxes: list[list[float]] = field(default_factory=list)  # hub format rows [t, x0, y0, x1, y1, ...]


def make_clip(path: Path, walkers: list[Walker], seconds: float = 6.0, size: tuple[int, int] = (1280, 720),
              fps: int = 10, codec: str = "h264", motion_fps: float = 5.0) -> ClipTruth:
    """Encode the scene. ``codec``: "h264" (MP4) or "vp8" (WebM)."""
    width, height = size
    bg = background(width, height)
    truth = ClipTruth(path, width, height, fps, seconds, walkers)
    with av.open(str(path), "w", format="mp4" if codec == "h264" else "webm") as out:
        stream = out.add_stream("libx264" if codec == "h264" else "libvpx", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.time_base = Fraction(1, fps)
        if codec == "h264":
            stream.codec_context.options = {"preset": "ultrafast", "crf": "23", "g": str(2 * fps)}
        else:
            stream.codec_context.options = {"deadline": "realtime", "cpu-used": "8", "b": "2M"}
        next_motion = 0.0
        for i in range(int(seconds * fps)):
            t = i / fps
            img = bg.copy()
            row: list[float] = []
            for w in walkers:
                pose = w.at(t, width, height)
                if pose is None:
                    continue
                cx, foot, h, stride = pose
                draw_person(img, cx, foot, h, stride)
                x0, y0, x1, y1 = person_box(cx, foot, h)
                row += [round(max(0.0, x0 / width), 4), round(max(0.0, y0 / height), 4),
                        round(min(1.0, x1 / width), 4), round(min(1.0, y1 / height), 4)]
            if row and t >= next_motion - 1e-9:
                truth.boxes.append([round(t, 2), *row])
                next_motion = t + 1.0 / motion_fps
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return truth
