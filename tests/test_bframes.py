"""H.264 with B-frames (High profile, what many IP cameras send): clips keep the source's pts and dts.

Issue 14: the clip writer set pts = dts, so such a stream was written in decode order with stretched times
(a 12 s source gave a 17.5 s clip through ``pingwatch replay FILE --clips DIR``). Clips are read back with PyAV
and compared with the source: keyframe first, the same packets in decode order, presentation times in order and
one frame apart, and as many frames as the source has in the clip's window.
"""

from __future__ import annotations

import json
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from hub.buffer import RingBuffer
from hub.clips import ClipWriter
from hub.ingest.file import FileCamera
from hub.media.h264 import avcc_to_annexb, split_annexb
from tests import scenes
from tests.sinks import RecordingSink

FPS = 15


def encode_bframes(path: Path, frames: list[np.ndarray], fps: int = FPS, gop: int = 15, bframes: int = 3) -> Path:
    """H.264 High profile with B-frames (and B-pyramid): pts != dts for most packets."""
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=fps)
        s.width, s.height = frames[0].shape[1], frames[0].shape[0]
        s.pix_fmt = "yuv420p"
        s.options = {"profile": "high", "g": str(gop), "keyint_min": str(gop), "bf": str(bframes),
                     "preset": "veryfast", "crf": "26", "sc_threshold": "0"}
        for i, y in enumerate(frames):
            f = av.VideoFrame.from_ndarray(y, format="gray").reformat(format="yuv420p")
            f.pts = i
            f.time_base = Fraction(1, fps)
            out.mux(s.encode(f))
        out.mux(s.encode())
    return path


def slices(avcc: bytes) -> bytes:
    """The coded slices of a length-prefixed H.264 sample (no SPS/PPS/SEI/AUD)."""
    nals = split_annexb(avcc_to_annexb(avcc))
    return b"".join(n for n in nals if n and (n[0] & 0x1F) not in (6, 7, 8, 9))


def source_packets(path: Path) -> list[tuple[bytes, float, float]]:
    """(slices, pts s, dts s) of every video packet, in decode order."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        return [(slices(bytes(p)), float(p.pts * s.time_base), float(p.dts * s.time_base))
                for p in c.demux(s) if p.size]


def read_clip(path: Path) -> tuple[list[tuple[bytes, float, float, bool]], list[float], float]:
    """(packets in decode order: slices, pts s, dts s, keyframe), decoded frame times, stream duration s."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        pkts = [(slices(bytes(p)), float(p.pts * s.time_base), float(p.dts * s.time_base), p.is_keyframe)
                for p in c.demux(s) if p.size]
        duration = float(s.duration * s.time_base)
    with av.open(str(path)) as c:
        shown = [float(f.pts * f.time_base) for f in c.decode(video=0)]
    return pkts, shown, duration


def check_clip_matches_source(clip: Path, src: list[tuple[bytes, float, float]]) -> tuple[int, int]:
    """Assert the clip is a run of the source's packets with the source's timing; returns (start, count)."""
    got, shown, duration = read_clip(clip)
    assert got[0][3], "the clip does not start on a keyframe"
    start = [p[0] for p in src].index(got[0][0])
    n = len(got)
    assert [g[0] for g in got] == [p[0] for p in src[start:start + n]]  # same packets, decode order
    assert any(p[1] != p[2] for p in src[start:start + n]), "fixture has no B-frames"
    # presentation times: the source's, shifted so that the first keyframe is shown at 0
    base = src[start][1]
    assert [round(g[1], 4) for g in got] == [round(p[1] - base, 4) for p in src[start:start + n]]
    assert [round(g[2] - g[1], 4) for g in got] == [round(p[2] - p[1], 4) for p in src[start:start + n]]
    # decoded in presentation order, every frame once, one frame interval apart: no stretched times
    assert len(shown) == n
    assert shown == sorted(shown) and shown[0] == pytest.approx(0, abs=1e-3)
    assert np.allclose(np.diff(shown), 1 / FPS, atol=2e-3), np.diff(shown)
    assert duration == pytest.approx(n / FPS, abs=1.5 / FPS)
    return start, n


@pytest.fixture(scope="module")
def walk_b(tmp_path_factory) -> tuple[Path, scenes.VideoScene]:
    scene = scenes.person_near(size=(640, 360), fps=FPS)
    return encode_bframes(tmp_path_factory.mktemp("bframes") / "walk_b.mp4", scene.frames), scene


async def test_file_camera_keeps_pts_and_dts(walk_b, tmp_path) -> None:
    path, scene = walk_b
    src = source_packets(path)
    sink = RecordingSink()
    await FileCamera(path, sink, realtime=False, detect_fps=5).run()
    video = sink.video()
    assert len(video) == len(src) == len(scene.frames)
    base = src[0][1]
    assert [round(f.pts / 90000, 4) for f in video] == [round(p[1] - base, 4) for p in src]
    assert [round((f.pts if f.dts is None else f.dts) / 90000, 4) for f in video] == \
        [round(p[2] - base, 4) for p in src]
    ts = [f.t for f in video]
    assert ts == sorted(ts) and video[0].t == 0.0  # decode order: what the ring buffer needs

    # through the ring buffer into a clip, as live: a pre-roll from a keyframe in the middle of the file
    buf = RingBuffer(window_s=60)
    for f in sink.frames:
        buf.push(f)
    with ClipWriter(tmp_path / "c.mp4", durable=False) as w:
        w.write_many(buf.frames_since(4.0))
    start, n = check_clip_matches_source(tmp_path / "c.mp4", src)
    assert src[start][1] - base == pytest.approx(4.0, abs=1 / FPS) and start + n == len(src)


def test_replay_clip_of_a_bframe_file_is_not_stretched(walk_b, tmp_path) -> None:
    path, scene = walk_b
    clips = tmp_path / "clips"
    r = subprocess.run([sys.executable, "-m", "hub.cli", "replay", str(path), "--json", "--clips", str(clips)],
                       cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr
    evs = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    assert len(evs) == 1 and evs[0]["clip"], evs
    start, n = check_clip_matches_source(Path(evs[0]["clip"]), source_packets(path))
    # the window: from the keyframe at or before (start - 5 s pre-roll) to the end of the post-roll or file
    expected = min(evs[0]["end"] + 5.0, len(scene.frames) / FPS) - start / FPS
    assert n / FPS <= expected + 1 / FPS and n / FPS >= expected - 1.0  # within one GOP (the post-roll cut)
