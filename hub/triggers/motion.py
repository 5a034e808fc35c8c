"""Motion detection on the detect track's luma plane.

The starting point is Frigate's "improved" detector (downscale, contrast normalisation, blur, running-average
background, threshold, contour area, recalibration on large changes). Its common failure modes are lighting
changes, dusk, camera shake, night noise and small animals; each step below exists to address one of them:

* **Illumination is modelled, not thresholded away.** The background is re-lit to the current frame before
  differencing: a global gain from the static pixels, refined by a smooth local gain (ratio of box-filtered
  frame and background over the static pixels). Lights on/off, auto exposure, dusk and cloud shadows are
  multiplicative and smooth, so they vanish; a person is neither. Pixels that moved in the previous frame are
  left out of the gain estimate, so a large mover cannot re-light itself away.
* **The threshold follows the noise.** A robust noise estimate (median absolute difference, fast attack, slow
  release) sets a floor under the threshold, so a grainy night picture does not fire; the nominal threshold is
  scaled by the scene's contrast so a dim, flat scene is not blind either.
* **Camera shake is tolerated spatially.** A pixel only differs if it is outside the min..max of the re-lit
  background in a small neighbourhood (a few pixels of jitter moves edges by that much, an object does more).
* **Weak evidence must persist.** A pixel above the threshold counts only if it (or a neighbour) was above it in
  the previous frame too; a pixel above twice the threshold counts at once, so real movers are not delayed.
* **Global change re-baselines.** If most of the active area changes at once (a scene cut, IR switching on),
  the background restarts from the current frame instead of reporting motion everywhere.

Everything runs on a ~90 px high copy of the frame with a handful of OpenCV calls; see
``scripts/bench_triggers.py`` for the cost and an accuracy comparison with OpenCV's MOG2.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Literal

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from hub.media.frames import DetectFrame

Sensitivity = Literal["low", "medium", "high"]
Box = tuple[float, float, float, float]  # x0, y0, x1, y1, normalised

# Per-preset knobs. threshold: 8-bit luma difference at nominal scene contrast; min_area: fraction of the
# active area a moving blob must cover; noise_k: threshold floor in noise sigmas; shake_px: jitter tolerance
# radius in detect pixels (one detect pixel is two at 320x180).
PRESETS: dict[str, dict[str, float]] = {
    "low": {"threshold": 26.0, "min_area": 0.006, "noise_k": 5.0, "shake_px": 2},
    "medium": {"threshold": 18.0, "min_area": 0.002, "noise_k": 4.5, "shake_px": 2},
    "high": {"threshold": 13.0, "min_area": 0.0012, "noise_k": 4.0, "shake_px": 2},
}


class MotionConfig(BaseModel):
    """Motion detector settings. ``sensitivity`` picks a preset; any raw knob set here overrides it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sensitivity: Sensitivity = "medium"
    threshold: float | None = Field(None, ge=1, le=255, description="Luma difference at nominal contrast.")
    min_area: float | None = Field(None, gt=0, lt=1, description="Smallest moving blob, fraction of the area.")
    noise_k: float | None = Field(None, ge=1, le=20, description="Threshold floor in noise sigmas.")
    shake_px: int | None = Field(None, ge=0, le=4, description="Jitter tolerance radius, detect pixels.")
    detect_height: int = Field(90, ge=32, le=360, description="Height of the working copy (frame is downscaled).")
    blur: int = Field(5, ge=1, le=9, description="Gaussian blur kernel (odd) against pixel noise.")
    alpha: float = Field(0.05, gt=0, le=1, description="Background learning rate per frame (5 fps: ~4 s).")
    alpha_motion: float = Field(0.02, ge=0, le=1, description="Learning rate where motion is seen.")
    alpha_calibrating: float = Field(0.3, gt=0, le=1, description="Learning rate while (re)calibrating.")
    calibration_frames: int = Field(5, ge=1, description="Frames learnt before motion is reported.")
    light_window: float = Field(0.35, gt=0.05, le=1, description="Local illumination window, fraction of height.")
    contrast_ref: float = Field(35.0, gt=0, description="Scene luma std at which threshold applies unscaled.")
    min_contrast_scale: float = Field(0.3, gt=0, le=1, description="Lower bound of the contrast scaling.")
    global_change: float = Field(0.6, gt=0, le=1, description="Changed fraction that means re-baseline.")
    max_boxes: int = Field(8, ge=1, description="Largest blobs reported.")

    def knob(self, name: str) -> float:
        value = getattr(self, name)
        return float(PRESETS[self.sensitivity][name] if value is None else value)


@dataclass(slots=True)
class MotionResult:
    motion: bool
    score: float  # fraction of the active area covered by moving blobs
    boxes: list[Box] = field(default_factory=list)
    recalibrated: bool = False  # a global change re-baselined the background this frame
    threshold: float = 0.0  # the effective threshold used (diagnostics)
    noise: float = 0.0  # the noise sigma estimate (diagnostics)


_NO_MOTION = MotionResult(False, 0.0)
_MAD_TO_SIGMA = 1.0 / 0.6745
_HIST_SCALE = 4.0  # quarter-level bins for the median of small differences
_GAIN_GRID = (16, 9)  # blocks for the robust global gain
_LIGHT_JUMP = float(np.log(1.2))  # frame-to-frame brightness step that counts as a lighting change
_RECALIBRATION_FRAMES = 2  # frames learnt quickly after a re-baseline before motion is reported again


class MotionDetector:
    """Stateful per-camera detector: feed every detect frame in order to ``process``.

    ``mask`` is a boolean array (any resolution, resized here) that is True where motion counts, as
    ``hub.triggers.zones.active_area`` builds it; None means the whole frame.
    """

    def __init__(self, config: MotionConfig | None = None, mask: np.ndarray | None = None) -> None:
        self.config = config or MotionConfig()
        c = self.config
        self._threshold = c.knob("threshold")
        self._min_area = c.knob("min_area")
        self._noise_k = c.knob("noise_k")
        r = int(c.knob("shake_px"))
        self._shake_kernel = np.ones((2 * r + 1, 2 * r + 1), np.uint8) if r > 0 else None
        self._blur = c.blur | 1
        self._k3 = np.ones((3, 3), np.uint8)
        self._mask_src = None if mask is None else np.asarray(mask, bool)
        self._size: tuple[int, int] | None = None  # working (w, h)
        self._in_size: tuple[int, int] | None = None
        self._bg: np.ndarray | None = None
        self.reset()

    # -- public -------------------------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget the background (e.g. after the camera moved or the stream restarted)."""
        self._bg = None
        self._frames = 0
        self._calibrate_until = self.config.calibration_frames
        self._sigma = 0.0
        self._prev_gain = 0.0
        self._bg_mean = 0.0
        if self._size is not None:
            self._usable = self._active  # static pixels the illumination estimate may use
            self._prev_weak = np.zeros((self._size[1], self._size[0]), np.uint8)
        self._sigmas: deque[float] = deque(maxlen=5)

    def set_mask(self, mask: np.ndarray | None) -> None:
        self._mask_src = None if mask is None else np.asarray(mask, bool)
        self._in_size = None  # rebuild the working-size mask at the next frame

    def process(self, frame: DetectFrame) -> MotionResult:
        y = frame.y
        if y.ndim != 2:
            raise ValueError(f"expected a 2-D luma plane, got shape {y.shape}")
        if y.dtype != np.uint8:
            y = np.clip(y, 0, 255).astype(np.uint8)
        if self._in_size != (y.shape[1], y.shape[0]):
            self._setup(y.shape[1], y.shape[0])
        f = self._prepare(y)
        self._frames += 1
        if self._bg is None:
            self._bg = f.copy()
            return _NO_MOTION
        return self._detect(f)

    # -- internals ----------------------------------------------------------------------------------------

    def _setup(self, width: int, height: int) -> None:
        c = self.config
        scale = min(1.0, c.detect_height / height)
        w, h = max(round(width * scale), 8), max(round(height * scale), 8)
        self._in_size, self._size = (width, height), (w, h)
        if self._mask_src is not None:
            m = cv2.resize(self._mask_src.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)
            self._active = (m > 0).astype(np.uint8) * 255
        else:
            self._active = np.full((h, w), 255, np.uint8)
        r = int(c.knob("shake_px"))
        if r:
            # Jitter slides unseen content in at the borders, which no tolerance can explain away.
            self._active[:r] = 0
            self._active[-r:] = 0
            self._active[:, :r] = 0
            self._active[:, -r:] = 0
        self._active_w = self._active.astype(np.float32) * (1.0 / 255.0)
        self._active_px = max(int(cv2.countNonZero(self._active)), 1)
        self._min_area_px = max(self._min_area * self._active_px, 4.0)
        lw = max(int(c.light_window * h) | 1, 3)
        self._light_ksize = (lw, lw)
        self.reset()

    def _prepare(self, y: np.ndarray) -> np.ndarray:
        assert self._size is not None
        small = y if (y.shape[1], y.shape[0]) == self._size else cv2.resize(y, self._size,
                                                                             interpolation=cv2.INTER_AREA)
        if self._blur > 1:
            small = cv2.GaussianBlur(small, (self._blur, self._blur), 0)
        return small.astype(np.float32)

    def _global_gain(self, f: np.ndarray, bg: np.ndarray) -> float:
        """Frame/background brightness ratio: the median over coarse blocks, so a large mover cannot bend it."""
        fb = cv2.resize(f, _GAIN_GRID, interpolation=cv2.INTER_AREA)
        bb = cv2.resize(bg, _GAIN_GRID, interpolation=cv2.INTER_AREA)
        return float(np.median((fb + 1.0) / (bb + 1.0)))

    def _relight(self, f: np.ndarray, bg: np.ndarray, gain: float) -> np.ndarray:
        """The background as it would look under the current frame's lighting."""
        # Most frames have no mover: the weights are then the (cached) active area.
        w = self._active_w if self._usable is self._active else self._usable.astype(np.float32) * (1.0 / 255.0)
        sf = cv2.boxFilter(f * w, -1, self._light_ksize)
        sb = cv2.boxFilter(bg * w, -1, self._light_ksize)
        # Pseudo-counts pull windows with few static pixels (a large mover, a masked area) to the global gain
        # and keep the ratio finite in the dark.
        prior = 0.05 * self._bg_mean + 2.0
        ratio = (sf + prior * gain) / (sb + prior)
        return bg * ratio

    def _noise(self, plain: np.ndarray, area: np.ndarray) -> float:
        """Noise sigma from the median absolute difference; a sustained rise counts at once, a spike once."""
        hist = cv2.calcHist([cv2.convertScaleAbs(plain, alpha=_HIST_SCALE)], [0], area, [256], [0, 256])
        cum = np.cumsum(hist.ravel())
        med = float(np.searchsorted(cum, cum[-1] * 0.5)) + 0.5
        now = med / _HIST_SCALE * _MAD_TO_SIGMA
        # The remembered level is the median of recent frames: one badly re-lit frame (a light switched on into
        # saturation) must not raise the threshold for the seconds after it, but real night noise should stay.
        self._sigmas.append(now)
        self._sigma = sorted(self._sigmas)[len(self._sigmas) // 2]
        return max(now, self._sigma)

    def _rebaseline(self, f: np.ndarray) -> MotionResult:
        self._bg = f.copy()
        self._prev_weak[:] = 0
        self._usable = self._active
        self._prev_gain = 1.0
        self._calibrate_until = self._frames + _RECALIBRATION_FRAMES
        return MotionResult(False, 0.0, [], recalibrated=True)

    def _detect(self, f: np.ndarray) -> MotionResult:
        c = self.config
        bg = self._bg
        assert bg is not None
        gain = self._global_gain(f, bg)
        jump = abs(np.log(gain / self._prev_gain)) > _LIGHT_JUMP if self._prev_gain else False
        self._prev_gain = gain
        if jump:
            # Lights switched, IR cut filter flipped, exposure stepped: the old background is of no use (clipped
            # highlights and crushed shadows cannot be re-lit), so learn the new picture from scratch.
            return self._rebaseline(f)
        self._bg_mean = cv2.mean(bg)[0]
        model = self._relight(f, bg, gain)

        _, std = cv2.meanStdDev(model, mask=self._usable)
        scale = min(1.0, max(c.min_contrast_scale, float(std[0, 0]) / c.contrast_ref))
        nominal = self._threshold * scale

        plain = cv2.absdiff(f, model)
        noise_area = self._usable
        if self._shake_kernel is not None:
            hi = cv2.dilate(model, self._shake_kernel)
            lo = cv2.erode(model, self._shake_kernel)
            diff = cv2.max(cv2.subtract(f, hi), cv2.subtract(lo, f))
            # Estimate noise where the background is locally flat: there jitter moves nothing, so what differs
            # is sensor noise. Near edges shake would pass for noise and blind the detector for seconds.
            flat = cv2.bitwise_and(cv2.compare(cv2.subtract(hi, lo), nominal, cv2.CMP_LT), self._usable)
            if cv2.countNonZero(flat) > 0.1 * self._active_px:
                noise_area = flat
        else:
            diff = plain
        noise = self._noise(plain, noise_area)
        thr = max(nominal, self._noise_k * noise, 2.0)

        weak = cv2.compare(diff, thr, cv2.CMP_GT)
        weak = cv2.bitwise_and(weak, self._active)
        calibrating = self._frames <= self._calibrate_until

        if not calibrating and cv2.countNonZero(weak) > c.global_change * self._active_px:
            # A change this large is the whole picture, not an object: start over from this frame.
            return self._rebaseline(f)

        strong = cv2.compare(diff, 2.0 * thr, cv2.CMP_GT)
        confirmed = cv2.bitwise_and(weak, cv2.dilate(self._prev_weak, self._k3))
        fg = cv2.bitwise_and(cv2.bitwise_or(strong, confirmed), self._active)
        self._prev_weak = weak

        if calibrating:
            cv2.accumulateWeighted(f, bg, c.alpha_calibrating)
            return MotionResult(False, 0.0, [], threshold=thr, noise=noise)

        boxes: list[Box] = []
        score = 0.0
        moving = cv2.countNonZero(fg)
        if moving >= self._min_area_px * 0.25:
            # Closing joins the fragments of one mover (limbs, edges of a uniform shirt) into one blob.
            blob = cv2.dilate(fg, self._k3)
            __, _, stats, _ = cv2.connectedComponentsWithStats(blob, connectivity=8)
            areas = stats[1:, cv2.CC_STAT_AREA]
            keep = np.nonzero(areas >= self._min_area_px)[0] + 1
            if keep.size:
                keep = keep[np.argsort(stats[keep, cv2.CC_STAT_AREA])[::-1]]
                w, h = self._size  # type: ignore[misc]
                for i in keep[: c.max_boxes]:
                    x, yy, bw, bh = (int(v) for v in stats[i, :4])
                    boxes.append((x / w, yy / h, (x + bw) / w, (yy + bh) / h))
                score = float(stats[keep, cv2.CC_STAT_AREA].sum()) / self._active_px
            # Keep movers out of the next illumination estimate, with a margin for their motion.
            self._usable = cv2.bitwise_and(self._active, cv2.bitwise_not(cv2.dilate(blob, self._k3,
                                                                                     iterations=2)))
            cv2.accumulateWeighted(f, bg, c.alpha, cv2.bitwise_not(fg))
            cv2.accumulateWeighted(f, bg, c.alpha_motion, fg)
        else:
            self._usable = self._active
            cv2.accumulateWeighted(f, bg, c.alpha)
        return MotionResult(bool(boxes), min(score, 1.0), boxes, threshold=thr, noise=noise)
