"""Draw the camera page's PNG icons (192 and 512 px) with numpy + zlib; the same design as icon.svg.

Full-bleed background so the 512 px icon also works as a maskable icon (the drawing stays in the central 80 %).
Run: python phone_pwa/icons/make_icons.py
"""

import struct
import zlib
from pathlib import Path

import numpy as np

BG = (11, 18, 32)
RING = (45, 212, 191)
BODY = (19, 28, 46)
GLASS = (30, 58, 95)
SHINE = (190, 230, 255)
REC = (239, 68, 68)

# (centre x, centre y, radius, colour) in units of the icon size, painted in order.
CIRCLES = [
    (0.5, 0.5, 0.30, RING),
    (0.5, 0.5, 0.235, BODY),
    (0.5, 0.5, 0.155, GLASS),
    (0.455, 0.455, 0.045, SHINE),
    (0.735, 0.265, 0.06, BG),
    (0.735, 0.265, 0.045, REC),
]


def draw(size: int) -> np.ndarray:
    img = np.empty((size, size, 3), np.float32)
    img[:] = BG
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    for cx, cy, r, colour in CIRCLES:
        d = np.hypot(xx - cx * size, yy - cy * size)
        cover = np.clip(r * size - d + 0.5, 0.0, 1.0)[..., None]  # 1 px anti-aliased edge
        img = img * (1 - cover) + np.asarray(colour, np.float32) * cover
    return np.round(img).astype(np.uint8)


def png(rgb: np.ndarray) -> bytes:
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[y].tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )


if __name__ == "__main__":
    here = Path(__file__).resolve().parent
    for size in (192, 512):
        out = here / f"icon-{size}.png"
        out.write_bytes(png(draw(size)))
        print(out, out.stat().st_size, "bytes")
