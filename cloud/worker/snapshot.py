"""Best-frame snapshots: the frame with a box drawn around the object, as JPEG bytes (PyAV's MJPEG encoder)."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np

from cloud.worker.letterbox import resize

MAX_WIDTH = 1280  # Telegram and the web UI show snapshots small; keep them light
COLOR = np.array([255, 64, 0], np.uint8)


def draw_box(image: np.ndarray, box: tuple[float, float, float, float], thickness: int = 3) -> np.ndarray:
    """A copy of the RGB image with a rectangle outline at ``box`` (x0, y0, x1, y1 pixels)."""
    out = image.copy()
    h, w = out.shape[:2]
    x0, y0 = max(0, int(box[0])), max(0, int(box[1]))
    x1, y1 = min(w - 1, int(box[2])), min(h - 1, int(box[3]))
    if x1 <= x0 or y1 <= y0:
        return out
    t = max(1, thickness)
    out[y0:y0 + t, x0:x1 + 1] = COLOR
    out[max(y1 - t + 1, 0):y1 + 1, x0:x1 + 1] = COLOR
    out[y0:y1 + 1, x0:x0 + t] = COLOR
    out[y0:y1 + 1, max(x1 - t + 1, 0):x1 + 1] = COLOR
    return out


def encode_jpeg(image: np.ndarray, quality: int = 4) -> bytes:
    """RGB uint8 (H, W, 3) -> JPEG bytes. ``quality`` is MJPEG's qscale: 2 (best) .. 31 (worst)."""
    h, w = image.shape[:2]
    if w > MAX_WIDTH:
        h, w = max(2, round(h * MAX_WIDTH / w)), MAX_WIDTH
        image = resize(image, w, h)
    w2, h2 = w - w % 2, h - h % 2  # 4:2:0 wants even sizes
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image[:h2, :w2]), format="rgb24")
    ctx = av.CodecContext.create("mjpeg", "w")
    ctx.width, ctx.height = w2, h2
    ctx.pix_fmt = "yuvj420p"
    ctx.time_base = Fraction(1, 25)
    ctx.options = {"qmin": str(quality), "qmax": str(quality)}
    packets = list(ctx.encode(frame.reformat(format="yuvj420p")))
    packets += list(ctx.encode(None))
    return b"".join(bytes(p) for p in packets)
