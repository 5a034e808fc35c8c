"""Letterbox: fit a frame into the model's square input keeping its aspect, pad with grey 114 (as Ultralytics
trains), and map boxes found in that input back to the original frame.

Resizing uses PyAV's swscale (already a worker dependency) rather than OpenCV, which the worker does not need.
"""

from __future__ import annotations

from dataclasses import dataclass

import av
import numpy as np

PAD_VALUE = 114


@dataclass(frozen=True)
class Letterbox:
    """How one image was placed in the model input: input = image * (scale_x, scale_y) + (pad_x, pad_y).

    ``offset_x``/``offset_y`` locate the image inside the full frame when it is a crop, so ``to_frame`` maps
    model-input boxes straight to full-frame pixels.
    """

    scale_x: float
    scale_y: float
    pad_x: float
    pad_y: float
    width: int  # size of the letterboxed image (the crop), before scaling
    height: int
    offset_x: float = 0.0
    offset_y: float = 0.0

    def to_frame(self, boxes: np.ndarray) -> np.ndarray:
        """(N, 4) xyxy in model-input pixels -> xyxy in frame pixels, clipped to the letterboxed image."""
        out = np.empty_like(boxes, dtype=np.float32)
        out[:, [0, 2]] = np.clip((boxes[:, [0, 2]] - self.pad_x) / self.scale_x, 0, self.width)
        out[:, [1, 3]] = np.clip((boxes[:, [1, 3]] - self.pad_y) / self.scale_y, 0, self.height)
        out[:, [0, 2]] += self.offset_x
        out[:, [1, 3]] += self.offset_y
        return out

    def to_input(self, boxes: np.ndarray) -> np.ndarray:
        """Inverse of ``to_frame`` (without clipping): frame pixels -> model-input pixels."""
        out = np.empty_like(boxes, dtype=np.float32)
        out[:, [0, 2]] = (boxes[:, [0, 2]] - self.offset_x) * self.scale_x + self.pad_x
        out[:, [1, 3]] = (boxes[:, [1, 3]] - self.offset_y) * self.scale_y + self.pad_y
        return out


def resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize an RGB uint8 (H, W, 3) image with swscale (area filter when shrinking, bilinear otherwise)."""
    h, w = image.shape[:2]
    if (w, h) == (width, height):
        return image
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
    interp = "AREA" if width < w else "BILINEAR"
    return frame.reformat(width=width, height=height, format="rgb24", interpolation=interp).to_ndarray()


def letterbox(image: np.ndarray, size: tuple[int, int], offset: tuple[float, float] = (0.0, 0.0)
              ) -> tuple[np.ndarray, Letterbox]:
    """Place an RGB uint8 image into a (height, width) = ``size`` canvas; returns the canvas and its mapping."""
    in_h, in_w = size
    h, w = image.shape[:2]
    if h == 0 or w == 0:
        raise ValueError("empty image")
    scale = min(in_h / h, in_w / w)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    # Same split of the padding as Ultralytics' LetterBox, so boxes land where the model was trained to see them.
    dw, dh = (in_w - new_w) / 2, (in_h - new_h) / 2
    left, top = round(dw - 0.1), round(dh - 0.1)
    canvas = np.full((in_h, in_w, 3), PAD_VALUE, np.uint8)
    canvas[top:top + new_h, left:left + new_w] = resize(image, new_w, new_h)
    # Rounding makes the effective scale differ slightly per axis; keep both so round trips are exact.
    return canvas, Letterbox(scale_x=new_w / w, scale_y=new_h / h, pad_x=left, pad_y=top, width=w, height=h,
                             offset_x=offset[0], offset_y=offset[1])


def to_tensor(canvases: list[np.ndarray]) -> np.ndarray:
    """Stack (H, W, 3) uint8 RGB canvases into the model's float32 NCHW input in [0, 1]."""
    batch = np.stack(canvases).astype(np.float32)
    batch *= 1.0 / 255.0
    return np.ascontiguousarray(batch.transpose(0, 3, 1, 2))
