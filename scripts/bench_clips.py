"""Benchmark of the encoded media core: clip finishing latency, ring buffer push cost and memory.

Usage: .venv/bin/python scripts/bench_clips.py

Builds 20 s of 1280x720 15 fps H.264 (~2.5 Mbps, 2 s GOP) + Opus 20 ms frames in memory, then measures:
* ClipWriter: time from writing the last frame to the final file renamed into place (target <= 100 ms), wall
  and process CPU time, with and without fsync;
* RingBuffer.push: microseconds per frame (with one listener, as during a clip's post-roll);
* memory of a 15 s 2.5 Mbps buffer (tracemalloc: frame objects and their payloads included);
* write_snapshot at 720p, worst case (last frame of a GOP).
"""

from __future__ import annotations

import math
import statistics
import sys
import tempfile
import time
import tracemalloc
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hub.buffer import RingBuffer
from hub.clips import ClipWriter, write_snapshot
from hub.media import h264
from hub.media.frames import AUDIO_TIME_BASE, VIDEO_TIME_BASE, EncodedFrame

W, H, FPS, SECONDS, GOP, BITRATE = 1280, 720, 15, 20, 30, 2_500_000
T0 = 1_700_000_000.0


def make_frames() -> list[EncodedFrame]:
    ctx = av.CodecContext.create("libx264", "w")
    ctx.width, ctx.height, ctx.pix_fmt = W, H, "yuv420p"
    ctx.time_base = Fraction(1, 90000)
    ctx.framerate = FPS
    ctx.gop_size = GOP
    ctx.bit_rate = BITRATE
    ctx.options = {"profile": "baseline", "preset": "ultrafast", "tune": "zerolatency", "bf": "0"}
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:H, 0:W]
    base = ((xx // 8 + yy // 8) % 2 * 120 + 60).astype(np.uint8)
    frames: list[EncodedFrame] = []
    for i in range(FPS * SECONDS):
        # moving checkerboard plus a little sensor noise: keeps the encoder at its target bitrate
        y = np.roll(base, 3 * i, axis=1) + rng.integers(0, 6, (H, W), dtype=np.uint8)
        f = av.VideoFrame.from_ndarray(np.stack([y, y, y], -1), format="rgb24").reformat(format="yuv420p")
        f.pts, f.time_base = i * 90000 // FPS, ctx.time_base
        for p in ctx.encode(f):
            data = h264.join_annexb(h264.split_annexb(bytes(p)))
            frames.append(EncodedFrame("video", "h264", data, int(p.pts), VIDEO_TIME_BASE, T0 + p.pts / 90000,
                                       p.is_keyframe))
    for p in ctx.encode(None):
        data = h264.join_annexb(h264.split_annexb(bytes(p)))
        frames.append(EncodedFrame("video", "h264", data, int(p.pts), VIDEO_TIME_BASE, T0 + p.pts / 90000,
                                   p.is_keyframe))
    a = av.CodecContext.create("libopus", "w")
    a.sample_rate, a.layout, a.format, a.bit_rate = 48000, "mono", "s16", 32000
    apk: list[bytes] = []
    for i in range(SECONDS * 50):
        s = (np.sin(2 * math.pi * 440 * (np.arange(960) + i * 960) / 48000) * 6000).astype(np.int16)[None]
        af = av.AudioFrame.from_ndarray(s, format="s16", layout="mono")
        af.sample_rate, af.pts = 48000, i * 960
        apk += [bytes(p) for p in a.encode(af)]
    for i, d in enumerate(apk):
        frames.append(EncodedFrame("audio", "opus", d, i * 960, AUDIO_TIME_BASE, T0 + 0.01 + i * 0.02))
    frames.sort(key=lambda f: f.t)
    return frames


def bench_close(frames: list[EncodedFrame], folder: Path, suffix: str, durable: bool, runs: int = 7) -> dict:
    walls, cpus, writes = [], [], []
    size = 0
    for r in range(runs):
        out = folder / f"clip{r}{suffix}"
        w = ClipWriter(out, durable=durable)
        t = time.perf_counter()
        w.write_many(frames[:-1])
        writes.append(time.perf_counter() - t)
        c0, t0 = time.process_time(), time.perf_counter()
        w.write(frames[-1])
        info = w.close()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
        size = info.size
        out.unlink()
    return {
        "wall_ms": statistics.median(walls) * 1000,
        "max_ms": max(walls) * 1000,
        "cpu_ms": statistics.median(cpus) * 1000,
        "write_ms": statistics.median(writes) * 1000,
        "size": size,
    }


def shifted(frames: list[EncodedFrame], loops: int) -> list[EncodedFrame]:
    """The 20 s list repeated on a continuing clock (fresh frame objects, shared payloads)."""
    out = []
    for k in range(loops):
        dt = k * SECONDS
        out += [EncodedFrame(f.kind, f.codec, f.data, f.pts, f.time_base, f.t + dt, f.keyframe) for f in frames]
    return out


def bench_push(frames: list[EncodedFrame]) -> tuple[float, float]:
    stream = shifted(frames, 6)  # 2 min: eviction runs throughout
    results = []
    for listen in (False, True):
        buf = RingBuffer(window_s=15.0)
        if listen:
            sink: list[EncodedFrame] = []
            buf.subscribe(sink.append)
        push = buf.push
        t = time.perf_counter()
        for f in stream:
            push(f)
        results.append((time.perf_counter() - t) / len(stream) * 1e6)
    return results[0], results[1]


def bench_memory(frames: list[EncodedFrame]) -> tuple[int, int, int]:
    """Peak-free steady state: only the buffer holds the frames, which are made inside the trace."""
    sizes = [(f.kind, len(f.data), f.keyframe, f.t, f.pts) for f in frames]
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    buf = RingBuffer(window_s=15.0)
    for k in range(3):
        for kind, n, key, t, pts in sizes:
            tb = VIDEO_TIME_BASE if kind == "video" else AUDIO_TIME_BASE
            buf.push(EncodedFrame(kind, "h264" if kind == "video" else "opus", bytes(n), pts, tb, t + k * SECONDS, key))
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    s = buf.stats()
    return used, s.bytes, s.frames


def bench_snapshot(frames: list[EncodedFrame], folder: Path) -> float:
    video = [f for f in frames if f.kind == "video"]
    target = video[2 * GOP - 1]  # the last frame of the second GOP: 30 frames to decode
    times = []
    for _ in range(3):
        t = time.perf_counter()
        write_snapshot(frames, target.t, folder / "s.jpg", folder / "t.jpg")
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def main() -> None:
    t = time.perf_counter()
    frames = make_frames()
    gen_s = time.perf_counter() - t
    video = [f for f in frames if f.kind == "video"]
    vbytes = sum(len(f.data) for f in video)
    kbps = vbytes * 8 / SECONDS / 1000
    print(f"# bench_clips: {W}x{H} {FPS} fps, {SECONDS} s, {len(video)} video frames ({kbps:.0f} kbps), "
          f"{len(frames) - len(video)} Opus packets; generated in {gen_s:.1f} s; PyAV {av.__version__}\n")
    rows = []
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d)
        for suffix, durable in ((".mp4", False), (".mp4", True)):
            r = bench_close(frames, folder, suffix, durable)
            rows.append((
                f"ClipWriter.close() {suffix} ({'fsync' if durable else 'no fsync'}), last frame -> renamed",
                f"{r['wall_ms']:.1f} ms wall (max {r['max_ms']:.1f}), {r['cpu_ms']:.1f} ms CPU",
                "<= 100 ms",
            ))
        rows.append(("ClipWriter.write() of the other 1299 frames (fragmented .part)", f"{r['write_ms']:.1f} ms", ""))
        rows.append(("final clip size", f"{r['size'] / 1e6:.2f} MB", ""))
        rows.append(("write_snapshot 720p (30 frames decoded) + JPEG + thumb",
                     f"{bench_snapshot(frames, folder):.1f} ms", ""))
    plain, listened = bench_push(frames)
    rows.append(("RingBuffer.push per frame (eviction active)", f"{plain:.2f} us", "cheap"))
    rows.append(("RingBuffer.push per frame, one listener", f"{listened:.2f} us", ""))
    used, payload, n = bench_memory(frames)
    rows.append((
        "15 s buffer memory (tracemalloc, frames included)",
        f"{used / 1e6:.2f} MB ({payload / 1e6:.2f} MB payload, {(used - payload) / n:.0f} B/frame overhead, "
        f"{n} frames)",
        "<= 12 MB per camera",
    ))
    print("| measurement | result | target |")
    print("| --- | --- | --- |")
    for name, value, target in rows:
        print(f"| {name} | {value} | {target} |")


if __name__ == "__main__":
    main()
