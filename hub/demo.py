"""`pingwatch hub run --demo`: a synthetic camera for trying the hub without a phone.

A generated scene (a textured room; someone walks across every minute; a knock a little later) is encoded once
into the data folder as H.264 + Opus and played in a loop through the same file-camera path as any IP camera,
so cameras, events, clips and Home Assistant entities appear within a minute of the first start.
"""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

DEMO_ID = "demo"
WIDTH, HEIGHT, FPS = 640, 360, 15
PERIOD_S = 60  # one walk per loop
WALK_START_S, WALK_S = 12.0, 6.0
KNOCK_S = 15.0  # during the walk: the cooldown after an event would swallow a separate knock
SAMPLE_RATE = 48000


def _background(rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    img = 90 + 35 * np.sin(xx / 53.0) * np.cos(yy / 41.0) + 0.08 * xx
    img[int(HEIGHT * 0.7):, :] *= 0.75  # floor
    img[60:200, 80:200] = 150  # a picture on the wall
    img[180:300, 420:560] = 60  # a cabinet
    return img + rng.normal(0, 4, img.shape).astype(np.float32)


def _frame(bg: np.ndarray, t: float, rng: np.random.Generator) -> np.ndarray:
    img = bg.copy()
    tt = t % PERIOD_S
    if WALK_START_S <= tt <= WALK_START_S + WALK_S:
        x = int(-60 + (tt - WALK_START_S) / WALK_S * (WIDTH + 120))
        body_w, body_h = 50, 200
        y0 = HEIGHT - 40 - body_h
        x0, x1 = max(0, x), min(WIDTH, x + body_w)
        if x1 > x0:
            img[y0:y0 + body_h, x0:x1] = 35  # a dark figure
            cx = (x0 + x1) // 2
            img[y0 - 40:y0, max(0, cx - 18):min(WIDTH, cx + 18)] = 200  # head
    img += rng.normal(0, 2, img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def _audio(rng: np.random.Generator) -> np.ndarray:
    n = PERIOD_S * SAMPLE_RATE
    x = rng.normal(0, 10 ** (-60 / 20), n).astype(np.float32)  # a quiet room
    k = int(KNOCK_S * SAMPLE_RATE)
    for i in range(3):  # three knocks
        s = k + i * SAMPLE_RATE // 4
        burst = rng.normal(0, 0.3, 2400).astype(np.float32) * np.exp(-np.arange(2400) / 300.0).astype(np.float32)
        x[s:s + burst.size] += burst
    return np.clip(x, -1, 1)


def make_demo_video(path: Path) -> Path:
    """Encode the demo scene once (about a minute of video; a few seconds of CPU on a Pi 4)."""
    import av

    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    rng = np.random.default_rng(7)
    bg = _background(rng)
    audio = _audio(rng)
    log.info("making the demo camera's video", extra={"path": str(path)})
    with av.open(str(tmp), "w", format="mp4") as out:
        v = out.add_stream("libx264", rate=FPS)
        v.width, v.height, v.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        v.options = {"profile": "baseline", "preset": "veryfast", "g": str(FPS * 2), "bf": "0", "crf": "28"}
        a = out.add_stream("libopus", rate=SAMPLE_RATE)
        a.layout = "mono"
        samples_done = 0
        frame_samples = SAMPLE_RATE // 50
        for i in range(PERIOD_S * FPS):
            t = i / FPS
            vf = av.VideoFrame.from_ndarray(_frame(bg, t, rng), format="gray").reformat(format="yuv420p")
            vf.pts, vf.time_base = i, Fraction(1, FPS)
            out.mux(v.encode(vf))
            while samples_done < (i + 1) * SAMPLE_RATE // FPS:
                chunk = audio[samples_done:samples_done + frame_samples]
                af = av.AudioFrame.from_ndarray((chunk * 32767).astype(np.int16)[None, :], format="s16",
                                                layout="mono")
                af.sample_rate, af.pts, af.time_base = SAMPLE_RATE, samples_done, Fraction(1, SAMPLE_RATE)
                out.mux(a.encode(af))
                samples_done += chunk.size
        out.mux(v.encode())
        out.mux(a.encode())
    tmp.replace(path)
    return path
