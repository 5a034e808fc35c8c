"""Generated media for the fake camera: Y4M video and WAV audio files, and a simple synthetic scene.

Files are generated into temp dirs by tests rather than committed (a 1280x720 Y4M frame is ~1.4 MB).
"""

from __future__ import annotations

import wave
from collections.abc import Iterable
from pathlib import Path

import numpy as np


def rgb_to_i420(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """RGB uint8 HxWx3 → (Y HxW, U H/2xW/2, V H/2xW/2), BT.601 limited range (what Chromium assumes for I420)."""
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"expected an RGB uint8 HxWx3 frame, got {frame.dtype} {frame.shape}")
    h, w, _ = frame.shape
    if h % 2 or w % 2:
        raise ValueError(f"4:2:0 needs even dimensions, got {w}x{h}")
    rgb = frame.astype(np.float32) / 255.0
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = 16.0 + 65.481 * r + 128.553 * g + 24.966 * b
    u = 128.0 - 37.797 * r - 74.203 * g + 112.0 * b
    v = 128.0 + 112.0 * r - 93.786 * g - 18.214 * b
    # 2x2 box average for the chroma planes (centred siting, as C420jpeg says).
    u = u.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
    v = v.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))

    def q(a: np.ndarray) -> np.ndarray:
        return np.clip(np.rint(a), 0, 255).astype(np.uint8)

    return q(y), q(u), q(v)


def write_y4m(path: Path | str, frames: Iterable[np.ndarray], fps: int) -> Path:
    """Write RGB uint8 HxWx3 frames as a 4:2:0 (C420jpeg) Y4M file, streaming. Returns the absolute path."""
    path = Path(path).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    size: tuple[int, int] | None = None
    with open(path, "wb") as f:
        for frame in frames:
            h, w = frame.shape[:2]
            if size is None:
                size = (w, h)
                f.write(f"YUV4MPEG2 W{w} H{h} F{int(fps)}:1 Ip A1:1 C420jpeg XYSCSS=420JPEG\n".encode("ascii"))
            elif size != (w, h):
                raise ValueError(f"frame {n} is {w}x{h}, the first was {size[0]}x{size[1]}")
            y, u, v = rgb_to_i420(frame)
            f.write(b"FRAME\n")
            f.write(y.tobytes())
            f.write(u.tobytes())
            f.write(v.tobytes())
            n += 1
    if n == 0:
        path.unlink()
        raise ValueError("write_y4m needs at least one frame")
    return path


def write_wav(path: Path | str, samples: np.ndarray, rate: int = 48000) -> Path:
    """Write float32 mono samples in [-1, 1] as 16-bit PCM WAV. Returns the absolute path."""
    path = Path(path).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim != 1:
        raise ValueError(f"expected mono samples (1-D), got shape {samples.shape}")
    pcm = np.clip(np.rint(samples * 32767.0), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(int(rate))
        w.writeframes(pcm.tobytes())
    return path


def sine_wave(freq: float = 440.0, seconds: float = 2.0, rate: int = 48000, amplitude: float = 0.3) -> np.ndarray:
    """A float32 mono sine tone."""
    t = np.arange(round(seconds * rate), dtype=np.float64) / rate
    return (amplitude * np.sin(2.0 * np.pi * freq * t)).astype(np.float32)


def textured_background(w: int, h: int, seed: int = 7) -> np.ndarray:
    """A deterministic mid-grey textured background (gradients plus fixed noise), RGB uint8 HxWx3."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = 70.0 + 30.0 * np.sin(xx / 23.0) * np.cos(yy / 17.0) + 20.0 * (xx / max(w - 1, 1))
    noise = rng.normal(0.0, 8.0, size=(h, w, 3)).astype(np.float32)
    rgb = np.stack([base * 0.9, base, base * 1.1], axis=-1) + noise
    return np.clip(rgb, 0, 255).astype(np.uint8)


def moving_square_scene(w: int = 640, h: int = 360, fps: int = 15, seconds: float = 4) -> list[np.ndarray]:
    """Frames (RGB uint8 HxWx3) of a static textured background with a bright square crossing left to right.

    The square's side is h/5; its top-left x moves linearly from 0 to w - side over the clip, vertically centred.
    """
    bg = textured_background(w, h)
    n = max(1, round(fps * seconds))
    side = max(2, h // 5)
    y0 = (h - side) // 2
    frames = []
    for i in range(n):
        x0 = round((w - side) * (i / max(n - 1, 1)))
        f = bg.copy()
        f[y0:y0 + side, x0:x0 + side] = (250, 250, 240)
        frames.append(f)
    return frames


def read_y4m_header(path: Path | str) -> dict[str, str]:
    """The header tokens of a Y4M file ({'W': '640', 'H': '360', 'F': '15:1', 'C': '420jpeg', ...})."""
    with open(path, "rb") as f:
        line = f.readline().decode("ascii").split()
    if not line or line[0] != "YUV4MPEG2":
        raise ValueError(f"{path} is not a Y4M file")
    return {tok[0]: tok[1:] for tok in line[1:]}
