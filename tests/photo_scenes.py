"""Video scenes on real photographs, through the H.264 path a detect track takes, with known truth.

tests/scenes.py draws its backgrounds: smooth blobs and flat furniture, kinder than a real room. Here the
background is a photograph that scikit-image ships inside its wheel (no download), cropped to 16:9 and scaled to
the detect size; a figure is a walking silhouette (legs swinging, a little bob) cut out of *another* photograph, so
its texture is as real as the room's. It enters from any edge, near or far, slow or fast, with sensor noise, a slow
drift of the light, and every frame goes through libx264 at a phone-like bitrate and back (blocking, ringing,
smeared edges: what the hub's decoder hands the detector).

Scenes come in two splits over disjoint photographs: ``tune`` (what the detector's knobs may be tuned on, and what
tests/test_motion.py uses) and ``heldout`` (reported by ``scripts/bench triggers --heldout``, never tuned on).
Everything is seeded: the same spec gives the same frames.

Truth: ``onsets`` are the times at which half of a figure's area is in view (the same definition as
tests/scenes.py); a returning visitor has two.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from fractions import Fraction
from functools import cache
from pathlib import Path
from typing import Literal

import av
import cv2
import numpy as np

from tests.scenes import FPS, SIZE, VideoScene

Edge = Literal["left", "right", "top", "bottom"]

# Photographs of scikit-image's wheel (skimage/data/*.png|jpg), split so nothing tuned on is reported. Textures for
# the figures come from the same split as the background. motorcycle_right is the stereo twin of motorcycle_left:
# it is used by neither split.
TUNE_PHOTOS = ("camera", "coffee", "brick", "gravel", "chelsea")
HELDOUT_PHOTOS = ("rocket", "motorcycle_left", "grass", "astronaut", "hubble_deep_field")
_FILES = {"rocket": "rocket.jpg", "hubble_deep_field": "hubble_deep_field.jpg"}


def _data_dir() -> Path:
    try:
        import skimage
    except ImportError as exc:  # the dev extra has it; say what is missing rather than fail obscurely
        raise RuntimeError("scikit-image is needed for the photo scenes: pip install -e '.[dev]'") from exc
    return Path(skimage.__file__).parent / "data"


@cache
def photo(name: str) -> np.ndarray:
    """The photograph's luma (uint8), as shipped."""
    path = _data_dir() / _FILES.get(name, f"{name}.png")
    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise RuntimeError(f"cannot read {path}: is scikit-image installed with its bundled data?")
    return img


def photo_background(name: str, size: tuple[int, int] = SIZE, margin: int = 0) -> np.ndarray:
    """Centre 16:9 crop of the photograph at ``size`` (plus ``margin`` px around it for shake), float32."""
    src = photo(name)
    w, h = size[0] + 2 * margin, size[1] + 2 * margin
    sh, sw = src.shape
    cw, ch = (sw, round(sw * h / w)) if sw * h <= sh * w else (round(sh * w / h), sh)
    y0, x0 = (sh - ch) // 2, (sw - cw) // 2
    crop = src[y0:y0 + ch, x0:x0 + cw]
    return cv2.resize(crop, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32)


@dataclass
class PhotoScene(VideoScene):
    """A VideoScene that also knows each visit's span: (first, last) time any of the figure is in view."""

    visits: list[tuple[float, float]] = field(default_factory=list)
    group: str = ""


# -- the figure ---------------------------------------------------------------------------------------------------


def _silhouette(h: int, phase: float) -> np.ndarray:
    """Alpha (float32, h x ~0.4h) of a walking person: head, torso, arms, two legs swinging with ``phase``."""
    ss = 4  # drawn 4x larger and area-averaged: soft, sub-pixel edges
    H = h * ss
    W = max(round(0.42 * H), 4)
    a = np.zeros((H, W), np.uint8)
    cx = W / 2
    swing = 0.35 * math.sin(phase)  # radians, legs and arms in opposition

    def limb(x: float, y: float, length: float, width: float, angle: float) -> None:
        dx, dy = math.sin(angle) * length, math.cos(angle) * length
        px, py = math.cos(angle) * width / 2, -math.sin(angle) * width / 2
        pts = np.array([[x - px, y - py], [x + px, y + py], [x + px + dx, y + py + dy],
                        [x - px + dx, y - py + dy]], np.int32)
        cv2.fillConvexPoly(a, pts, 255)

    cv2.ellipse(a, (int(cx), int(0.075 * H)), (int(0.065 * H), int(0.075 * H)), 0, 0, 360, 255, -1)
    cv2.rectangle(a, (int(cx - 0.11 * H), int(0.15 * H)), (int(cx + 0.11 * H), int(0.55 * H)), 255, -1)
    for sgn in (1, -1):
        limb(cx + sgn * 0.045 * H, 0.52 * H, 0.46 * H, 0.09 * H, sgn * swing)
        limb(cx + sgn * 0.12 * H, 0.17 * H, 0.36 * H, 0.06 * H, -sgn * swing * 0.8)
    small = cv2.resize(a, (max(W // ss, 2), h), interpolation=cv2.INTER_AREA)
    return small.astype(np.float32) / 255.0


@dataclass(frozen=True)
class Walk:
    """One crossing: enters from ``edge`` at ``enter_at`` and keeps going at ``speed`` (frame sizes per second)."""

    edge: Edge
    enter_at: float
    speed: float  # along the direction of travel, in frame widths (left/right) or heights (top/bottom) per s
    lane: float  # where across the frame it walks: feet height (left/right) or centre x (top/bottom), 0..1


@dataclass(frozen=True)
class FigureSpec:
    height: float  # figure height, fraction of the frame height
    texture: str  # photograph the clothing is cut from
    contrast: float  # luma offset of the figure's mean from the background it covers (signed)
    walks: tuple[Walk, ...]


@dataclass(frozen=True)
class PhotoSpec:
    name: str
    photo: str
    seconds: float
    figure: FigureSpec | None = None
    noise: float = 2.5  # sensor noise sigma, luma levels
    drift: float = 0.06  # slow light drift: peak relative gain change over the scene
    fade: float = 0.0  # dusk: the light falls by this fraction over the scene while the noise doubles
    kbps: int = 150  # the detect track's bitrate
    lights_at: float | None = None  # a light switched on (x1.6) at this time
    shake_px: float = 0.0  # camera jitter amplitude at 320x180 (a phone on a shelf)
    seed: int = 1
    group: str = ""
    sensitivity: str = "medium"


def _texture(name: str, w: int, h: int, rng: np.random.Generator) -> np.ndarray:
    """A w x h patch of a photograph, zero-mean, its contrast kept (a shirt's folds and prints)."""
    src = photo(name)
    scale = rng.uniform(0.3, 0.6)
    pw, ph = min(int(w / scale) + 1, src.shape[1]), min(int(h / scale) + 1, src.shape[0])
    x0, y0 = rng.integers(0, src.shape[1] - pw + 1), rng.integers(0, src.shape[0] - ph + 1)
    patch = cv2.resize(src[y0:y0 + ph, x0:x0 + pw], (w, h), interpolation=cv2.INTER_AREA).astype(np.float32)
    return (patch - patch.mean()) * 0.8


def _place(walk: Walk, t: float, fw: int, fh: int, w: int, h: int) -> tuple[float, float]:
    """Top-left of a fw x fh figure at time t on ``walk`` (it starts just outside its edge)."""
    d = t - walk.enter_at
    if walk.edge in ("left", "right"):
        travelled = d * walk.speed * w
        x = -fw + travelled if walk.edge == "left" else w - travelled
        return x, walk.lane * h - fh
    travelled = d * walk.speed * h
    y = -fh + travelled if walk.edge == "top" else h - travelled
    return walk.lane * w - fw / 2, y


def _tone(bg: np.ndarray, walk: Walk, fw: int, fh: int, contrast: float) -> float:
    """The figure's mean luma: ``contrast`` away from the median of the band it walks through (the other way if
    that would leave the range): clothing is one colour whatever it passes in front of."""
    h, w = bg.shape
    if walk.edge in ("left", "right"):
        band = bg[max(round(walk.lane * h) - fh, 0):max(round(walk.lane * h), 1)]
    else:
        c = round(walk.lane * w)
        band = bg[:, max(c - fw // 2, 0):c + fw // 2 + 1]
    med = float(np.median(band))
    base = med + contrast
    return base if 20 <= base <= 235 else med - contrast


def _blend(img: np.ndarray, alpha: np.ndarray, tex: np.ndarray, base: float, x: float, y: float) -> float:
    """Composite the figure (alpha, texture around ``base``) at (x, y); returns the visible alpha area in px."""
    h, w = img.shape
    fh, fw = alpha.shape
    x0, y0 = round(x), round(y)
    ax0, ay0, ax1, ay1 = max(x0, 0), max(y0, 0), min(x0 + fw, w), min(y0 + fh, h)
    if ax0 >= ax1 or ay0 >= ay1:
        return 0.0
    a = alpha[ay0 - y0:ay1 - y0, ax0 - x0:ax1 - x0]
    region = img[ay0:ay1, ax0:ax1]
    figure = np.clip(base + tex[ay0 - y0:ay1 - y0, ax0 - x0:ax1 - x0], 5, 250)
    region[:] = region * (1 - a) + figure * a
    return float(a.sum())


def _h264(frames: list[np.ndarray], fps: float, kbps: int) -> list[np.ndarray]:
    """Encode the luma frames with libx264 (grey chroma) at ``kbps`` and decode them again."""
    h, w = frames[0].shape
    enc = av.CodecContext.create("libx264", "w")
    enc.width, enc.height, enc.pix_fmt = w, h, "yuv420p"
    enc.time_base = Fraction(1, round(fps))
    enc.framerate = Fraction(round(fps))
    enc.bit_rate = kbps * 1000
    # A real-time encoder: no B-frames, no look-ahead, a keyframe every 10 s, as a phone's WebRTC encoder.
    enc.options = {"preset": "veryfast", "tune": "zerolatency", "g": str(round(10 * fps)), "threads": "1"}
    dec = av.CodecContext.create("h264", "r")
    out: list[np.ndarray] = []
    chroma = np.full((h // 2, w // 2), 128, np.uint8)

    def drain(packets: list[av.Packet]) -> None:
        for p in packets:
            for f in dec.decode(p):
                out.append(f.to_ndarray()[:h].copy())

    for i, y in enumerate(frames):
        vf = av.VideoFrame.from_ndarray(np.concatenate([y, chroma.reshape(h // 4, w), chroma.reshape(h // 4, w)]),
                                        format="yuv420p")
        vf.pts = i
        drain(list(enc.encode(vf)))
    drain(list(enc.encode(None)))
    for f in dec.decode(None):
        out.append(f.to_ndarray()[:h].copy())
    assert len(out) == len(frames), (len(out), len(frames))
    return out


def render(spec: PhotoSpec, size: tuple[int, int] = SIZE, fps: float = FPS) -> PhotoScene:
    w, h = size
    rng = np.random.default_rng(spec.seed)
    m = math.ceil(spec.shake_px * w / 320) + 2 if spec.shake_px else 0
    bg = photo_background(spec.photo, size, margin=m)
    n = round(spec.seconds * fps)
    fig = spec.figure
    frames: list[np.ndarray] = []
    boxes: list[tuple[float, float, float, float] | None] = []
    onsets: list[float] = []
    drift_phase = rng.uniform(0, 2 * math.pi)
    if fig is not None:
        fh = max(round(fig.height * h), 8)
        fw = _silhouette(fh, 0.0).shape[1]
        tex = _texture(fig.texture, fw, fh, rng)
        full_area = float(_silhouette(fh, 0.0).sum())
        half_in = [False] * len(fig.walks)
        spans: list[list[float]] = [[] for _ in fig.walks]
        tones = [_tone(bg[m:m + h, m:m + w], wk, fw, fh, fig.contrast) for wk in fig.walks]
    for i in range(n):
        t = i / fps
        img = bg.copy()
        view = img[m:m + h, m:m + w]
        box = None
        if fig is not None:
            for k, walk in enumerate(fig.walks):
                if t < walk.enter_at:
                    continue
                alpha = _silhouette(fh, 2 * math.pi * 1.8 * (t - walk.enter_at))  # ~1.8 strides per second
                x, y = _place(walk, t, fw, fh, w, h)
                y += 0.02 * fh * math.sin(4 * math.pi * 1.8 * (t - walk.enter_at))  # the bob of each step
                x += rng.normal(0, 0.5)
                seen = _blend(view, alpha, tex, tones[k], x, y)
                if seen > 0:
                    spans[k].append(t)
                    box = (max(x, 0) / w, max(y, 0) / h, min(x + fw, w) / w, min(y + fh, h) / h)
                if not half_in[k] and seen >= 0.5 * full_area:
                    half_in[k] = True
                    onsets.append(t)
        if m:
            amp = rng.uniform(0.5, 1.0) * spec.shake_px * w / 320
            ang = rng.uniform(0, 2 * math.pi)
            M = np.float32([[1, 0, m - amp * math.cos(ang)], [0, 1, m - amp * math.sin(ang)]])
            img = cv2.warpAffine(img, M, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
        else:
            img = view
        gain = 1.0 + spec.drift * math.sin(2 * math.pi * t / max(spec.seconds, 1.0) + drift_phase)
        if spec.lights_at is not None and t >= spec.lights_at:
            gain *= 1.6
        dusk = t / spec.seconds
        gain *= 1.0 - spec.fade * dusk
        noise = spec.noise * (1.0 + dusk) if spec.fade else spec.noise
        img = img * gain + rng.normal(0, noise, img.shape).astype(np.float32)
        frames.append(np.clip(img, 0, 255).astype(np.uint8))
        boxes.append(box)
    frames = _h264(frames, fps, spec.kbps)
    visits = [(sp[0], sp[-1]) for sp in spans if sp] if fig is not None else []
    return PhotoScene(spec.name, frames, fps, onsets, spec.sensitivity, spec.group, boxes, visits, spec.group)


# -- the scene sets -----------------------------------------------------------------------------------------------

_EDGES: tuple[Edge, ...] = ("left", "right", "top", "bottom")


def _walk(edge: Edge, at: float, speed: float, rng: np.random.Generator, height: float) -> Walk:
    if edge in ("left", "right"):
        lane = rng.uniform(max(0.55, height + 0.05), 1.0) if height < 0.9 else 1.0
    else:
        lane = rng.uniform(0.25, 0.75)
    return Walk(edge, at, speed, lane)


def scene_specs(split: Literal["tune", "heldout"]) -> list[PhotoSpec]:
    """The scene set of a split: walkers (near/far x slow/fast x every edge), returning visitors, quiet scenes."""
    photos = TUNE_PHOTOS if split == "tune" else HELDOUT_PHOTOS
    rng = np.random.default_rng(101 if split == "tune" else 202)
    specs: list[PhotoSpec] = []
    # Figure heights: far (about 25 px tall at 320x180), mid, near (most of the frame); speeds in frame sizes
    # per second: a far walker crosses slowly, a near one fast, a runner faster.
    kinds = {"far": (0.14, (0.04, 0.08)), "mid": (0.35, (0.1, 0.2)), "near": (0.75, (0.25, 0.5)),
             "run": (0.4, (0.5, 0.8))}
    for p, bg in enumerate(photos):
        textures = [x for x in photos if x != bg]
        for kind, (height, (slow, fast)) in kinds.items():
            for j, pace in enumerate(("slow", "fast")):
                edge = _EDGES[(p + 2 * list(kinds).index(kind) + j) % 4]
                speed = slow if pace == "slow" else fast
                fig = FigureSpec(height * rng.uniform(0.9, 1.1), textures[rng.integers(len(textures))],
                                 float(rng.choice([-1, 1]) * rng.uniform(25, 55)),
                                 (_walk(edge, 3.0, speed, rng, height),))
                specs.append(PhotoSpec(f"{split}-{bg}-{kind}-{pace}-{edge}", bg, 9.0, fig,
                                       noise=float(rng.uniform(1.5, 4.0)), kbps=int(rng.choice([100, 150, 300])),
                                       seed=int(rng.integers(1 << 30)), group=f"walk {kind}"))
        # A returning visitor: crosses, is gone for 30 s, comes back from the other side.
        edge = _EDGES[p % 4]
        back: Edge = {"left": "right", "right": "left", "top": "bottom", "bottom": "top"}[edge]  # type: ignore[assignment]
        first = _walk(edge, 2.0, 0.3, rng, 0.45)
        # It has left when its far side is past the opposite edge: frame plus its own size, at 0.3 frames per s.
        cross = 2.0 + (1.0 + (0.45 * 0.42 * 9 / 16 if edge in ("left", "right") else 0.45)) / 0.3
        fig = FigureSpec(0.45, textures[0], float(rng.choice([-1, 1]) * rng.uniform(30, 50)),
                         (first, _walk(back, cross + 30.0, 0.3, rng, 0.45)))
        specs.append(PhotoSpec(f"{split}-{bg}-returning", bg, cross + 30.0 + 6.0, fig, seed=int(rng.integers(1 << 30)),
                               group="returning visitor"))
        # Nothing moves: noise and compression; a light switched on; dusk; a shaking phone.
        quiet = [PhotoSpec(f"{split}-{bg}-static", bg, 12.0, noise=3.0),
                 PhotoSpec(f"{split}-{bg}-lights", bg, 12.0, lights_at=5.0),
                 PhotoSpec(f"{split}-{bg}-dusk", bg, 20.0, fade=0.6, noise=3.0, kbps=100),
                 PhotoSpec(f"{split}-{bg}-shake", bg, 12.0, shake_px=3.0)]
        specs += [replace(q, seed=int(rng.integers(1 << 30)), group="quiet") for q in quiet]
    return specs


# -- scoring ------------------------------------------------------------------------------------------------------


@dataclass
class Score:
    expected: int
    detected: int
    false: int
    latencies: list[float]  # per detected visit: detection time - onset, never below 0 (no credit for early)


def score(sc: PhotoScene, starts: list[float]) -> Score:
    """Match event detection times to the scene's visits: the first start between a visit's first sight and 3 s
    after its last is that visit's detection; every other start is false."""
    used: set[int] = set()
    lat: list[float] = []
    for onset, (first, last) in zip(sc.onsets, sc.visits, strict=True):
        for i, t in enumerate(starts):
            if i not in used and first - 0.2 <= t <= last + 3.0:
                used.add(i)
                lat.append(max(t - onset, 0.0))
                break
    return Score(len(sc.onsets), len(lat), len(starts) - len(used), lat)
