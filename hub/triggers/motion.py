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
* **Camera shake is tolerated spatially, while the camera shakes.** Then a pixel only differs if it is outside
  the min..max of the re-lit background in a small neighbourhood, and the background outside the frame's own
  min..max there (a few pixels of jitter moves edges by that much, an object does more). A steady camera
  compares pixel to pixel: on texture (gravel, a patterned table) that neighbourhood range swallows a small
  person. Shake is recognised by where the differences are: edges all over the picture, not on one mover.
* **Weak evidence must persist.** A pixel above the threshold counts only if it (or a neighbour) was above it in
  the previous frame too; a pixel above twice the threshold counts at once, so real movers are not delayed.
* **Global change re-baselines.** If most of the active area changes at once (a scene cut, IR switching on),
  the background restarts from the current frame instead of reporting motion everywhere.

Everything runs on a ~90 px high copy of the frame with a handful of OpenCV calls (the smooth illumination
estimates on a half-resolution grid of it; the shake-tolerant difference is skipped on frames where even the plain
difference stays under the threshold everywhere); see
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
# cv2.compare takes a scalar as its second operand (any InputArray); the opencv stubs allow arrays only, hence
# the `type: ignore[call-overload]` on those calls below.
_LIGHT_JUMP = float(np.log(1.2))  # frame-to-frame brightness step that counts as a lighting change
_RECALIBRATION_FRAMES = 2  # frames learnt quickly after a re-baseline before motion is reported again
# Camera shake: the share of the 16x9 grid's cells with differences only jitter explains and no mover (a still
# camera has none outside a small mover swallowed whole; jitter lights up edges all over the picture), and how
# long a spell of shake lasts (10 s at 5 fps: a phone on a shelf by a washing machine, still frames in between).
_SHAKE_SPREAD = 0.15
_SHAKE_HOLD_FRAMES = 50


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
        self._gauss = cv2.getGaussianKernel(self._blur, 0, cv2.CV_32F)
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
            self._usable: np.ndarray = self._active  # static pixels the illumination estimate may use
            self._prev_weak: np.ndarray = self._empty
        self._sigmas: deque[float] = deque(maxlen=5)
        self._shake_until = 0  # frame number up to which the camera counts as shaking

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
        # Jitter slides unseen content in at the borders, which no tolerance can explain away: while the camera
        # shakes a border of r pixels does not count (nor is it used for the noise and illumination estimates).
        # With a steady camera it does count, or a person stepping in slowly at an edge would go unseen for the
        # first few pixels.
        self._whole = self._active.copy()
        if r:
            self._active[:r] = 0
            self._active[-r:] = 0
            self._active[:, :r] = 0
            self._active[:, -r:] = 0
        self._active_px = max(int(cv2.countNonZero(self._active)), 1)
        self._min_area_px = max(self._min_area * self._active_px, 4.0)
        lw = max(int(c.light_window * h) | 1, 3)
        # Illumination is smooth by construction (the local gain has a window a third of the height), so the
        # gain estimates and the contrast run on a half-resolution copy of frame and background (the window
        # halved, odd, nearest) and only the gain field is upsampled: a quarter of the pixels for the box
        # filters, the block medians and the std, with an error far below any threshold.
        step = 2 if lw >= 9 else 1
        self._light_size = (-(-w // step), -(-h // step))
        lwc = max(2 * round((lw / step - 1) / 2) + 1, 3)
        self._light_ksize = (lwc, lwc)
        self._active_c = self._coarse_mask(self._active)
        self._empty: np.ndarray = np.zeros((h, w), np.uint8)  # shared, never written: "no pixel"
        self._active_wc = self._coarse_weight(self._active)
        self.reset()

    def _prepare(self, y: np.ndarray) -> np.ndarray:
        assert self._size is not None
        small = y if (y.shape[1], y.shape[0]) == self._size else cv2.resize(y, self._size,
                                                                             interpolation=cv2.INTER_AREA)
        if self._blur > 1:
            # The Gaussian as a separable filter straight to float: one pass instead of blur + conversion, and
            # no rounding of the blurred picture to whole levels.
            return cv2.sepFilter2D(small, cv2.CV_32F, self._gauss, self._gauss)
        return small.astype(np.float32)

    def _coarse_mask(self, m: np.ndarray) -> np.ndarray:
        return m if self._light_size == self._size else cv2.resize(m, self._light_size,
                                                                   interpolation=cv2.INTER_NEAREST)

    def _coarse_weight(self, m: np.ndarray) -> np.ndarray:
        """Fraction of each coarse cell that a 0/255 mask covers."""
        if self._light_size != self._size:
            m = cv2.resize(m, self._light_size, interpolation=cv2.INTER_AREA)
        return m.astype(np.float32) * np.float32(1.0 / 255.0)

    def _global_gain(self, fc: np.ndarray, bc: np.ndarray) -> float:
        """Frame/background brightness ratio: the median over coarse blocks, so a large mover cannot bend it."""
        fb = cv2.resize(fc, _GAIN_GRID, interpolation=cv2.INTER_AREA)
        bb = cv2.resize(bc, _GAIN_GRID, interpolation=cv2.INTER_AREA)
        # The mean of the block means is the background's mean: the relighting prior needs it, for free here.
        self._bg_mean = cv2.mean(bb)[0]
        r = ((fb + 1.0) / (bb + 1.0)).ravel()
        # np.median costs ~50 us in overhead for 144 values; a partial sort around the middle does the same.
        mid = r.size // 2
        if r.size % 2:
            return float(np.partition(r, mid)[mid])
        part = np.partition(r, (mid - 1, mid))
        return float((part[mid - 1] + part[mid]) * np.float32(0.5))

    def _relight(self, fc: np.ndarray, bc: np.ndarray, bg: np.ndarray, gain: float) -> tuple[np.ndarray, float]:
        """The background as it would look under the current frame's lighting, and its luma std over the static
        pixels (the scene's contrast, taken on the coarse grid)."""
        # Most frames have no mover: the weights are then the (cached) active area.
        if self._usable is self._active:
            wc, usable_c = self._active_wc, self._active_c
        else:
            wc, usable_c = self._coarse_weight(self._usable), self._coarse_mask(self._usable)
        k = self._light_ksize
        sf: np.ndarray = cv2.boxFilter(cv2.multiply(fc, wc), -1, k)
        sb: np.ndarray = cv2.boxFilter(cv2.multiply(bc, wc), -1, k)
        # Pseudo-counts pull windows with few static pixels (a large mover, a masked area) to the global gain
        # and keep the ratio finite in the dark.
        prior = 0.05 * self._bg_mean + 2.0
        sf += prior * gain
        sb += prior
        ratio = cv2.divide(sf, sb, dst=sf)
        _, std = cv2.meanStdDev(cv2.multiply(bc, ratio), mask=usable_c)
        if self._light_size != self._size:
            ratio = cv2.resize(ratio, self._size, interpolation=cv2.INTER_LINEAR)
        return cv2.multiply(bg, ratio), float(std[0, 0])

    def _noise(self, plain: np.ndarray, area: np.ndarray) -> float:
        """Noise sigma from the median absolute difference; a sustained rise counts at once, a spike once."""
        hist = cv2.calcHist([cv2.convertScaleAbs(plain, alpha=_HIST_SCALE)], [0], area, [256], [0, 256])
        # The median bin: the first whose running count reaches half. A plain loop beats cumsum + searchsorted
        # (numpy's per-call overhead) because the median sits in the first few dozen bins.
        counts = hist.ravel().tolist()
        half = sum(counts) * 0.5
        acc = 0.0
        med = len(counts) - 0.5
        for i, n in enumerate(counts):
            acc += n
            if acc >= half:
                med = i + 0.5
                break
        now = med / _HIST_SCALE * _MAD_TO_SIGMA
        # The remembered level is the median of recent frames: one badly re-lit frame (a light switched on into
        # saturation) must not raise the threshold for the seconds after it, but real night noise should stay.
        self._sigmas.append(now)
        self._sigma = sorted(self._sigmas)[len(self._sigmas) // 2]
        return max(now, self._sigma)

    def _shaking(self, weak: np.ndarray, weak_t: np.ndarray) -> bool:
        """Whether the camera shakes: the pixels that only the jitter tolerance explains away are spread over the
        picture (texture edges everywhere move), not gathered on a mover. Tolerance is used only then: on a
        textured scene (gravel, foliage, a patterned rug) the local min..max of the background is wide enough to
        swallow a small or low-contrast person, so a steady camera compares pixel to pixel. A shaking camera stays
        "shaking" for a couple of seconds: jitter comes in spells and a still frame inside one proves nothing."""
        explained = cv2.subtract(weak, weak_t)
        cells = cv2.resize(explained, _GAIN_GRID, interpolation=cv2.INTER_AREA)
        # Cells where a mover stands (the tolerant difference still sees something) do not count: only those
        # that hold nothing but jitter.
        mover_cells = cv2.resize(weak_t, _GAIN_GRID, interpolation=cv2.INTER_AREA)
        mover = cv2.compare(mover_cells, 0, cv2.CMP_GT)  # type: ignore[call-overload]
        spread = cv2.countNonZero(cv2.subtract(cells, mover)) / (_GAIN_GRID[0] * _GAIN_GRID[1])
        if spread >= _SHAKE_SPREAD:
            self._shake_until = self._frames + _SHAKE_HOLD_FRAMES
        return self._frames <= self._shake_until

    def _rebaseline(self, f: np.ndarray) -> MotionResult:
        self._bg = f.copy()
        self._prev_weak = self._empty
        self._usable = self._active
        self._prev_gain = 1.0
        self._calibrate_until = self._frames + _RECALIBRATION_FRAMES
        return MotionResult(False, 0.0, [], recalibrated=True)

    def _detect(self, f: np.ndarray) -> MotionResult:
        c = self.config
        bg = self._bg
        assert bg is not None
        size = self._light_size
        fc = f if size == self._size else cv2.resize(f, size, interpolation=cv2.INTER_AREA)
        bc = bg if size == self._size else cv2.resize(bg, size, interpolation=cv2.INTER_AREA)
        gain = self._global_gain(fc, bc)
        jump = abs(np.log(gain / self._prev_gain)) > _LIGHT_JUMP if self._prev_gain else False
        self._prev_gain = gain
        if jump:
            # Lights switched, IR cut filter flipped, exposure stepped: the old background is of no use (clipped
            # highlights and crushed shadows cannot be re-lit), so learn the new picture from scratch.
            return self._rebaseline(f)
        model, std = self._relight(fc, bc, bg, gain)
        scale = min(1.0, max(c.min_contrast_scale, std / c.contrast_ref))
        nominal = self._threshold * scale

        plain = cv2.absdiff(f, model)
        noise_area = self._usable
        if self._shake_kernel is not None:
            hi = cv2.dilate(model, self._shake_kernel)
            lo = cv2.erode(model, self._shake_kernel)
            # Estimate noise where the background is locally flat: there jitter moves nothing, so what differs
            # is sensor noise. Near edges shake would pass for noise and blind the detector for seconds.
            flat = cv2.compare(cv2.subtract(hi, lo), nominal, cv2.CMP_LT)  # type: ignore[call-overload]
            cv2.bitwise_and(flat, self._usable, dst=flat)
            if cv2.countNonZero(flat) > 0.1 * self._active_px:
                noise_area = flat
        noise = self._noise(plain, noise_area)
        thr = max(nominal, self._noise_k * noise, 2.0)

        # The shake-tolerant difference (distance outside the local min..max of the model) never exceeds the
        # plain one, so when no pixel's plain difference is above the threshold (most frames: nothing moves)
        # nothing can be weak or strong and the full-resolution min..max is skipped.
        if cv2.norm(plain, cv2.NORM_INF) <= thr:
            weak = self._empty
        else:
            diff = plain
            weak = cv2.compare(plain, thr, cv2.CMP_GT)  # type: ignore[call-overload]
            cv2.bitwise_and(weak, self._whole, dst=weak)
            if self._shake_kernel is not None:
                tolerant = cv2.max(cv2.subtract(f, hi), cv2.subtract(lo, f))
                weak_t = cv2.compare(tolerant, thr, cv2.CMP_GT)  # type: ignore[call-overload]
                cv2.bitwise_and(weak_t, self._active, dst=weak_t)
                if self._shaking(weak, weak_t):
                    # Both ways: the background averages jittered frames into a blur whose local range is
                    # narrower than a sharp frame's, so the frame is also asked whether *it* can explain the
                    # background pixel within its own neighbourhood. A mover fails both, a blurred edge neither.
                    back = cv2.max(cv2.subtract(model, cv2.dilate(f, self._shake_kernel)),
                                   cv2.subtract(cv2.erode(f, self._shake_kernel), model))
                    diff = cv2.min(tolerant, back)
                    weak = cv2.compare(diff, thr, cv2.CMP_GT)  # type: ignore[call-overload]
                    cv2.bitwise_and(weak, self._active, dst=weak)
        calibrating = self._frames <= self._calibrate_until

        if not calibrating and cv2.countNonZero(weak) > c.global_change * self._active_px:
            # A change this large is the whole picture, not an object: start over from this frame.
            return self._rebaseline(f)

        # fg = strong | (weak & near last frame's weak), inside the active area. strong implies weak (thr > 0),
        # so this is weak & (strong | dilated previous weak): one operation fewer.
        if weak is self._empty:
            fg = weak
        else:
            fg = cv2.dilate(self._prev_weak, self._k3)
            cv2.bitwise_or(fg, cv2.compare(diff, 2.0 * thr, cv2.CMP_GT), dst=fg)  # type: ignore[call-overload]
            cv2.bitwise_and(fg, weak, dst=fg)
        self._prev_weak = weak

        if calibrating:
            cv2.accumulateWeighted(f, bg, c.alpha_calibrating)
            return MotionResult(False, 0.0, [], threshold=thr, noise=noise)

        boxes: list[Box] = []
        score = 0.0
        moving = 0 if fg is self._empty else cv2.countNonZero(fg)
        if moving >= self._min_area_px * 0.25:
            # Closing joins the fragments of one mover (limbs, edges of a uniform shirt) into one blob.
            blob = cv2.dilate(fg, self._k3)
            # Components are labelled inside the movers' bounding rectangle only: the same components, and
            # labelling with stats costs per pixel scanned. Grana's BBDT is the cheapest variant at this size.
            x0, y0, rw, rh = cv2.boundingRect(blob)
            __, _, stats, _ = cv2.connectedComponentsWithStatsWithAlgorithm(
                blob[y0:y0 + rh, x0:x0 + rw], 8, cv2.CV_32S, cv2.CCL_BBDT)
            # A handful of rows: plain Python beats numpy's per-call overhead. Largest first; equal areas keep
            # the order the previous argsort gave them (reversed label order).
            keep = [r for r in stats.tolist()[1:] if r[4] >= self._min_area_px]
            if keep:
                keep.sort(key=lambda r: r[4])
                keep.reverse()
                w, h = self._size  # type: ignore[misc]
                for x, yy, bw, bh, _area in keep[: c.max_boxes]:
                    x += x0
                    yy += y0
                    boxes.append((x / w, yy / h, (x + bw) / w, (yy + bh) / h))
                score = sum(r[4] for r in keep) / self._active_px
            # Keep movers out of the next illumination estimate, with a margin for their motion (active and the
            # dilated blob are 0/255, so the saturating subtraction is active AND NOT blob).
            self._usable = cv2.subtract(self._active, cv2.dilate(blob, self._k3, iterations=2))
            cv2.accumulateWeighted(f, bg, c.alpha, cv2.bitwise_not(fg))
            cv2.accumulateWeighted(f, bg, c.alpha_motion, fg)
        else:
            self._usable = self._active
            cv2.accumulateWeighted(f, bg, c.alpha)
        return MotionResult(bool(boxes), min(score, 1.0), boxes, threshold=thr, noise=noise)
