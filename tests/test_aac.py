"""AAC audio from IP cameras (issue 14, RTSP item 5): recorded into MP4 clips as it came, never re-encoded.

Sources are encoded here with the FFmpeg in PyAV's wheel (libx264 + its native AAC encoder at 16 kHz mono, what
IP cameras typically send); clips are read back with PyAV and their AAC packets compared byte for byte with the
source's.
"""

from __future__ import annotations

import itertools
import json
import logging
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from hub.buffer import RingBuffer
from hub.clips import ClipWriter, probe_clip, recover_partial, write_snapshot
from hub.ingest.file import FileCamera
from hub.media.frames import EncodedFrame
from tests import scenes
from tests.sinks import RecordingSink

RATE = 16000


def _tone(start: int, n: int, rate: int, amp: float = 0.3) -> np.ndarray:
    t = (start + np.arange(n)) / rate
    return (np.sin(2 * np.pi * 440 * t) * amp).astype(np.float32).reshape(1, -1)


def make_av(path: Path, frames: list[np.ndarray] | None = None, *, seconds: float = 4.0, fps: int = 15, gop: int = 15,
            fmt: str | None = None, vcodec: str = "libx264", amp: float = 0.3) -> Path:
    """Video (a moving box, or ``frames`` of luma) + AAC-LC 16 kHz mono."""
    if frames is not None:
        seconds = len(frames) / fps
    out = av.open(str(path), "w", format=fmt)
    v = out.add_stream(vcodec, rate=fps)
    h, w = (frames[0].shape if frames is not None else (240, 320))
    v.width, v.height = w, h
    v.pix_fmt = "yuv420p"
    v.options = ({"g": str(gop), "bf": "0", "preset": "ultrafast", "profile": "baseline"} if vcodec == "libx264"
                 else {"g": str(gop)})
    a = out.add_stream("aac", rate=RATE)
    a.layout = "mono"
    for i in range(int(seconds * fps)):
        if frames is not None:
            vf = av.VideoFrame.from_ndarray(frames[i], format="gray").reformat(format="yuv420p")
        else:
            img = np.zeros((h, w, 3), np.uint8)
            img[100:140, (i * 5) % (w - 40): (i * 5) % (w - 40) + 40] = 255
            vf = av.VideoFrame.from_ndarray(img, format="rgb24")
        vf.pts = i
        vf.time_base = Fraction(1, fps)
        out.mux(v.encode(vf))
    out.mux(v.encode())
    for start in range(0, int(seconds * RATE), 1024):
        af = av.AudioFrame.from_ndarray(_tone(start, 1024, RATE, amp), format="fltp", layout="mono")
        af.sample_rate = RATE
        af.pts = start
        af.time_base = Fraction(1, RATE)
        out.mux(a.encode(af))
    out.mux(a.encode())
    out.close()
    return path


def source_aac(path: Path) -> tuple[bytes, list[tuple[float, bytes]]]:
    """(AudioSpecificConfig, [(seconds, packet bytes)]) of the file's AAC track, as the demuxer gives them."""
    with av.open(str(path)) as c:
        s = c.streams.audio[0]
        asc = bytes(s.codec_context.extradata or b"")
        return asc, [(float(p.pts * p.time_base), bytes(p)) for p in c.demux(s) if p.size]


def read_clip(path: Path) -> dict:
    with av.open(str(path)) as c:
        v, a = c.streams.video[0], (c.streams.audio[0] if c.streams.audio else None)
        out: dict = {"vcodec": v.codec_context.name, "acodec": a.codec_context.name if a else None,
                     "asc": bytes(a.codec_context.extradata or b"") if a else None,
                     "rate": a.codec_context.sample_rate if a else None, "audio": [], "vend": 0.0, "aend": 0.0}
        for p in c.demux():
            if not p.size or p.pts is None:
                continue
            end = float((p.pts + (p.duration or 0)) * p.time_base)
            if p.stream.type == "video":
                out["vend"] = max(out["vend"], end)
            else:
                out["audio"].append(bytes(p))
                out["aend"] = max(out["aend"], end)
        return out


@pytest.fixture(scope="module")
def src(tmp_path_factory) -> Path:
    return make_av(tmp_path_factory.mktemp("aac") / "cam.mp4")


async def ingest(path: Path, **kw) -> tuple[FileCamera, RecordingSink]:
    sink = RecordingSink()
    cam = FileCamera(path, sink, realtime=False, detect_fps=5, **kw)
    await cam.run()
    return cam, sink


async def test_file_camera_passes_aac_through_with_its_config(src) -> None:
    asc, packets = source_aac(src)
    _, sink = await ingest(src)
    af = sink.audio_frames()
    assert af, "AAC packets were not passed on for the clips"
    assert all(f.codec == "aac" and f.time_base == Fraction(1, RATE) and f.config == asc for f in af)
    assert [f.data for f in af] == [d for _, d in packets]  # as they came, not re-encoded
    assert {b.pts - a.pts for a, b in itertools.pairwise(af)} == {1024}  # samples
    # the sound trigger's level path still decodes it
    assert len(sink.audio) >= len(af) - 2
    rms = float(np.sqrt(np.mean(sink.audio[len(sink.audio) // 2].samples ** 2)))
    assert 0.1 < rms < 0.3


async def test_sound_trigger_off_still_records_aac(src) -> None:
    cam, sink = await ingest(src, decode_audio=False)
    assert sink.audio == [] and cam.audio_chunks == 0  # nothing decoded
    assert len(sink.audio_frames()) > 50  # the clips still get it


def _clip_from(frames: list[EncodedFrame], path: Path, start_t: float) -> ClipWriter:
    """A clip as the recorder cuts one: the ring buffer's frames from the keyframe at ``start_t`` on."""
    buf = RingBuffer(window_s=60)
    for f in frames:
        buf.push(f)
    w = ClipWriter(path)
    w.write_many(buf.frames_since(start_t))
    return w


async def test_mp4_clip_holds_the_source_aac_packets(src, tmp_path) -> None:
    asc, packets = source_aac(src)
    _, sink = await ingest(src)
    key_t = next(f.t for f in sink.video() if f.keyframe and f.t >= 1.0)
    w = _clip_from(sink.frames, tmp_path / "clip.mp4", key_t)
    info = w.close()
    clip = read_clip(info.path)
    assert clip["vcodec"] == "h264" and clip["acodec"] == "aac"
    assert clip["asc"] == asc and clip["rate"] == RATE  # the source's config, not an encoder's
    in_window = [d for t, d in packets if t >= key_t - 1e-6]
    assert clip["audio"] == in_window, "AAC packets differ from the source's in the clip's window"
    assert info.audio_frames == len(in_window)
    assert clip["aend"] == pytest.approx(clip["vend"], abs=0.1)  # picture and sound last as long
    assert probe_clip(info.path).audio_frames == len(in_window)
    # a snapshot from the same frames (AAC among them) is unaffected
    snap = write_snapshot(sink.frames, key_t + 0.5, tmp_path / "s.jpg", tmp_path / "t.jpg")
    assert snap.width == 320 and (tmp_path / "s.jpg").stat().st_size > 0


async def test_crash_recovery_keeps_the_aac_track(src, tmp_path) -> None:
    asc, packets = source_aac(src)
    _, sink = await ingest(src)
    dst = tmp_path / "crashed.mp4"
    w = _clip_from([f for f in sink.frames if f.t < 3.5], dst, 0.0)  # never closed: the hub "died"
    try:
        info = recover_partial(w.part_path)
    finally:
        w.abort()
    assert info is not None and info.audio_frames > 0
    clip = read_clip(dst)
    assert clip["acodec"] == "aac" and clip["asc"] == asc
    key_t = sink.video()[0].t
    in_window = [d for t, d in packets if t >= key_t - 1e-6]
    assert clip["audio"] == in_window[: len(clip["audio"])]  # an intact prefix, byte for byte
    assert clip["aend"] == pytest.approx(clip["vend"], abs=0.15)


async def test_vp8_camera_drops_aac_with_a_log_line(tmp_path, caplog) -> None:
    vp8 = make_av(tmp_path / "vp8.mkv", vcodec="libvpx", seconds=2.0)
    _, sink = await ingest(vp8)
    assert sink.audio_frames() and sink.audio_frames()[0].codec == "aac"
    caplog.set_level(logging.INFO, logger="hub.clips")
    w = _clip_from(sink.frames, tmp_path / "clip.webm", 0.0)
    info = w.close()
    assert info.video_frames == 30 and info.audio_frames == 0
    assert read_clip(info.path)["acodec"] is None
    lines = [r.getMessage() for r in caplog.records if "AAC" in r.getMessage()]
    assert len(lines) == 1 and "WebM" in lines[0]


async def test_mpegts_adts_aac_is_recorded_without_its_headers(tmp_path) -> None:
    # MPEG-TS (udp://, srt://, HLS) carries AAC as ADTS frames and no config: the header is taken off and its
    # config kept; the raw frames are what an MP4 holds.
    from hub.ingest.file import adts_to_raw

    ts = make_av(tmp_path / "cam.ts", fmt="mpegts", seconds=3.0)
    _, packets = source_aac(ts)
    assert packets[0][1][:2] in (b"\xff\xf1", b"\xff\xf9")  # the condition: ADTS
    raw = [adts_to_raw(d) for _, d in packets]
    assert all(r is not None and r[1] == bytes.fromhex("1408") and r[2] == RATE for r in raw)
    _, sink = await ingest(ts)
    af = sink.audio_frames()
    assert [f.data for f in af] == [r[0] for r in raw if r is not None]
    info = _clip_from(sink.frames, tmp_path / "ts.mp4", 0.0).close()
    clip = read_clip(info.path)
    assert clip["acodec"] == "aac" and clip["asc"] == bytes.fromhex("1408")
    assert clip["audio"] == [f.data for f in af if f.t >= next(v.t for v in sink.video() if v.keyframe) - 1e-6]
    # and it decodes: the clip's sound is the source's tone
    with av.open(str(info.path)) as c:
        pcm = np.concatenate([f.to_ndarray().reshape(-1) for f in c.decode(audio=0)])
    assert 0.15 < float(np.sqrt(np.mean(pcm[RATE // 2:] ** 2))) < 0.3


def test_replay_clips_keep_the_aac_track(tmp_path) -> None:
    scene = scenes.person_near(size=(320, 180), fps=15)
    path = make_av(tmp_path / "walk.mp4", scene.frames, fps=15, amp=0.01)
    asc, packets = source_aac(path)
    clips = tmp_path / "clips"
    r = subprocess.run([sys.executable, "-m", "hub.cli", "replay", str(path), "--json", "--clips", str(clips)],
                       cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr
    evs = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    assert evs and evs[0]["clip"] and evs[0]["clip"].endswith(".mp4")
    clip = read_clip(Path(evs[0]["clip"]))
    assert clip["acodec"] == "aac" and clip["asc"] == asc
    sources = [d for _, d in packets]
    start = sources.index(clip["audio"][0])
    assert clip["audio"] == sources[start: start + len(clip["audio"])]  # a run of the source's packets
    assert clip["aend"] == pytest.approx(clip["vend"], abs=0.15)
