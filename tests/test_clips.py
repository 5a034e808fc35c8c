"""ClipWriter / recover_partial / write_snapshot against real media made with PyAV's encoders."""

from __future__ import annotations

import itertools
import math
import os
import pickle
import signal
import subprocess
import sys
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from hub.buffer import RingBuffer
from hub.clips import (
    ClipError,
    ClipWriter,
    opus_packet_samples,
    part_path_for,
    probe_clip,
    recover_folder,
    recover_partial,
    write_snapshot,
)
from hub.media import h264
from hub.media.frames import AUDIO_TIME_BASE, VIDEO_TIME_BASE, EncodedFrame

REPO = Path(__file__).resolve().parents[1]
FPS = 15
GOP = 15  # one keyframe a second
SECONDS = 4
W, H = 320, 240
T0 = 1000.0  # camera clock at the first frame: frames carry wall-clock-like t, not 0
AUDIO_OFFSET_S = 0.03  # audio's first packet arrives a little after the first video frame


def _pattern(i: int, w: int = W, h: int = H) -> np.ndarray:
    """A moving diagonal gradient: cheap to make, easy to tell frames apart after decoding."""
    yy, xx = np.mgrid[0:h, 0:w]
    img = ((xx + yy + i * 4) % 256).astype(np.uint8)
    return np.stack([img, img[::-1], img[:, ::-1]], axis=-1)


def encode_video(codec: str, n: int = FPS * SECONDS, w: int = W, h: int = H) -> list[tuple[bytes, int, bool]]:
    ctx = av.CodecContext.create("libx264" if codec == "h264" else "libvpx", "w")
    ctx.width, ctx.height, ctx.pix_fmt = w, h, "yuv420p"
    ctx.time_base = Fraction(1, 90000)
    ctx.framerate = FPS
    ctx.gop_size = GOP
    if codec == "h264":
        ctx.options = {"profile": "baseline", "preset": "ultrafast", "tune": "zerolatency", "bf": "0"}
    else:
        ctx.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    out = []
    for i in range(n):
        f = av.VideoFrame.from_ndarray(_pattern(i, w, h), format="rgb24").reformat(format="yuv420p")
        f.pts, f.time_base = i * 90000 // FPS, ctx.time_base
        out += ctx.encode(f)
    out += ctx.encode(None)
    return [(bytes(p), int(p.pts), bool(p.is_keyframe)) for p in out]


def encode_opus(seconds: float = SECONDS) -> list[bytes]:
    ctx = av.CodecContext.create("libopus", "w")
    ctx.sample_rate, ctx.layout, ctx.format, ctx.bit_rate = 48000, "mono", "s16", 32000
    out = []
    for i in range(int(seconds * 50)):
        t = np.arange(960) + i * 960
        s = (np.sin(2 * math.pi * 440 * t / 48000) * 8000).astype(np.int16)[None]
        f = av.AudioFrame.from_ndarray(s, format="s16", layout="mono")
        f.sample_rate, f.pts = 48000, i * 960
        out += ctx.encode(f)
    out += ctx.encode(None)
    return [bytes(p) for p in out]


def to_frames(codec: str, video: list[tuple[bytes, int, bool]], audio: list[bytes]) -> list[EncodedFrame]:
    """EncodedFrames as the WebRTC tap makes them (Annex B with 4-byte start codes), merged by t."""
    frames = []
    for data, pts, key in video:
        if codec == "h264":
            data = h264.join_annexb(h264.split_annexb(data))
        frames.append(EncodedFrame("video", codec, data, pts, VIDEO_TIME_BASE, T0 + pts / 90000, key))
    for i, data in enumerate(audio):
        pts = i * 960
        frames.append(EncodedFrame("audio", "opus", data, pts, AUDIO_TIME_BASE, T0 + AUDIO_OFFSET_S + pts / 48000))
    frames.sort(key=lambda f: f.t)
    return frames


@pytest.fixture(scope="session")
def opus_packets() -> list[bytes]:
    return encode_opus()


@pytest.fixture(scope="session")
def h264_frames(opus_packets: list[bytes]) -> list[EncodedFrame]:
    return to_frames("h264", encode_video("h264"), opus_packets)


@pytest.fixture(scope="session")
def vp8_frames(opus_packets: list[bytes]) -> list[EncodedFrame]:
    return to_frames("vp8", encode_video("vp8"), opus_packets)


@dataclass
class Pkt:
    data: bytes
    pts: int
    dts: int
    time_base: Fraction
    is_keyframe: bool


def demux(path: Path) -> tuple[list[Pkt], list[Pkt], dict]:
    with av.open(str(path)) as c:
        vs = c.streams.video[0]
        info = {
            "codec": vs.codec_context.name,
            "width": vs.codec_context.width,
            "height": vs.codec_context.height,
            "audio": [(s.codec_context.name, s.codec_context.extradata) for s in c.streams.audio],
        }
        video, audio = [], []
        for p in c.demux():
            if p.size == 0:
                continue
            pkt = Pkt(bytes(p), p.pts, p.dts, p.time_base, p.is_keyframe)
            (video if p.stream.type == "video" else audio).append(pkt)
        return video, audio, info


def decode_count(path: Path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


def vdata(frames: list[EncodedFrame]) -> list[bytes]:
    return [f.data for f in frames if f.kind == "video"]


def adata(frames: list[EncodedFrame]) -> list[bytes]:
    return [f.data for f in frames if f.kind == "audio"]


# --- MP4 / WebM round trips ------------------------------------------------------------------------------------


def test_mp4_packets_identical_and_decodes(tmp_path: Path, h264_frames: list[EncodedFrame]) -> None:
    out = tmp_path / "clip.mp4"
    w = ClipWriter(out)
    w.write_many(h264_frames)
    info = w.close()

    assert info.path == out and out.exists()
    assert not part_path_for(out).exists()
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())
    assert (info.codec, info.width, info.height) == ("h264", W, H)
    assert info.video_frames == FPS * SECONDS
    assert info.audio_frames == len(adata(h264_frames))
    assert info.start_t == T0
    assert info.size == out.stat().st_size

    video, audio, meta = demux(out)
    # MP4 stores length-prefixed NALs; back to Annex B they are the very bytes that went in.
    assert [h264.avcc_to_annexb(p.data) for p in video] == vdata(h264_frames)
    assert [p.data for p in audio] == adata(h264_frames)
    assert meta["audio"][0][0] == "opus" and meta["audio"][0][1].startswith(b"OpusHead")
    assert [p.is_keyframe for p in video] == [f.keyframe for f in h264_frames if f.kind == "video"]

    assert decode_count(out) == FPS * SECONDS
    assert abs(info.duration_s - SECONDS) <= 1 / FPS
    assert abs(probe_clip(out).duration_s - SECONDS) <= 1 / FPS
    # Audio is aligned on the shared camera clock: it starts AUDIO_OFFSET_S after the video.
    assert abs(float(audio[0].pts * audio[0].time_base) - AUDIO_OFFSET_S) < 0.002
    # Strictly increasing DTS per stream, timestamps relative to the clip start.
    for pkts in (video, audio):
        dts = [p.dts for p in pkts]
        assert all(b > a for a, b in itertools.pairwise(dts))
    assert video[0].pts == 0


def test_mp4_is_faststart(tmp_path: Path, h264_frames: list[EncodedFrame]) -> None:
    out = tmp_path / "clip.mp4"
    w = ClipWriter(out)
    w.write_many(h264_frames)
    w.close()
    data = out.read_bytes()
    moov, mdat = data.find(b"moov"), data.find(b"mdat")
    assert 0 <= moov < mdat, (moov, mdat)  # the index first: a player starts before the whole clip arrived
    assert b"moof" not in out.read_bytes()  # the final file is a plain MP4, not the fragmented one


def test_webm_vp8(tmp_path: Path, vp8_frames: list[EncodedFrame]) -> None:
    out = tmp_path / "clip.webm"
    w = ClipWriter(out)
    w.write_many(vp8_frames)
    info = w.close()
    assert (info.codec, info.width, info.height) == ("vp8", W, H)
    video, audio, meta = demux(out)
    assert [p.data for p in video] == vdata(vp8_frames)
    assert [p.data for p in audio] == adata(vp8_frames)
    assert meta["codec"] == "vp8" and meta["audio"][0][0] == "opus"
    assert decode_count(out) == FPS * SECONDS
    assert abs(info.duration_s - SECONDS) <= 1 / FPS
    assert not part_path_for(out).exists()


def test_starts_at_first_keyframe_and_cuts_early_audio(tmp_path: Path, h264_frames: list[EncodedFrame]) -> None:
    # Begin mid-GOP, as a listener subscribed at an arbitrary moment would.
    first_key = next(i for i, f in enumerate(h264_frames) if f.kind == "video" and f.keyframe and f.t > T0)
    frames = h264_frames[first_key - 10 :]
    w = ClipWriter(tmp_path / "c.mp4")
    w.write_many(frames)
    info = w.close()
    key_t = h264_frames[first_key].t
    expected_v = [f.data for f in frames if f.kind == "video" and f.t >= key_t]
    expected_a = [f.data for f in frames if f.kind == "audio" and f.t >= key_t]
    video, audio, _ = demux(info.path)
    assert [h264.avcc_to_annexb(p.data) for p in video] == expected_v
    assert [p.data for p in audio] == expected_a
    assert info.start_t == key_t
    assert decode_count(info.path) == len(expected_v)


def test_video_only_clip(tmp_path: Path, h264_frames: list[EncodedFrame]) -> None:
    w = ClipWriter(tmp_path / "c.mp4", audio=False)
    w.write_many(h264_frames)
    info = w.close()
    video, audio, _ = demux(info.path)
    assert len(video) == FPS * SECONDS and audio == [] and info.audio_frames == 0


def test_pts_wraparound_and_restart_stay_monotonic(tmp_path: Path, h264_frames: list[EncodedFrame]) -> None:
    # 32-bit RTP-style wrap in the middle of the clip, and the audio pts restarting from 0 (source restart).
    vids = [f for f in h264_frames if f.kind == "video"]
    auds = [f for f in h264_frames if f.kind == "audio"]
    base = (1 << 32) - 10 * 6000
    frames = [
        EncodedFrame("video", "h264", f.data, (base + f.pts) % (1 << 32), f.time_base, f.t, f.keyframe) for f in vids
    ]
    frames += [
        EncodedFrame("audio", "opus", f.data, f.pts if i < 100 else (i - 100) * 960, f.time_base, f.t)
        for i, f in enumerate(auds)
    ]
    frames.sort(key=lambda f: f.t)
    w = ClipWriter(tmp_path / "c.mp4")
    w.write_many(frames)
    info = w.close()
    video, audio, _ = demux(info.path)
    assert [p.pts for p in video] == [i * 6000 for i in range(len(vids))]
    apts = [p.pts for p in audio]
    assert all(b - a == 960 for a, b in itertools.pairwise(apts))  # the camera clock bridged the restart
    assert abs(info.duration_s - SECONDS) <= 1 / FPS


def test_buffer_preroll_plus_listener_postroll(tmp_path: Path, h264_frames: list[EncodedFrame]) -> None:
    buf = RingBuffer(window_s=2.0)
    half = len(h264_frames) // 2
    for f in h264_frames[:half]:
        buf.push(f)
    trigger_t = h264_frames[half - 1].t - 0.5
    w = ClipWriter(tmp_path / "event.mp4")
    w.write_many(buf.frames_since(trigger_t - 1.0))
    unsubscribe = buf.subscribe(w)
    for f in h264_frames[half:]:
        buf.push(f)
    unsubscribe()
    info = w.close()
    key_t = max(k for k in (f.t for f in h264_frames if f.kind == "video" and f.keyframe) if k <= trigger_t - 1.0)
    expected = [f.data for f in h264_frames if f.kind == "video" and f.t >= key_t]
    video, _, _ = demux(info.path)
    assert [h264.avcc_to_annexb(p.data) for p in video] == expected
    assert decode_count(info.path) == len(expected)


# --- crash safety ------------------------------------------------------------------------------------------------

_CHILD = r"""
import pickle, sys, time
from hub.clips import ClipWriter
frames, out, until_t = pickle.load(open(sys.argv[1], "rb"))
w = ClipWriter(out)
for f in frames:
    if f.t > until_t:
        break
    w.write(f)
print("ready", flush=True)
time.sleep(60)
"""


def test_sigkill_leaves_recoverable_part(tmp_path: Path, h264_frames: list[EncodedFrame]) -> None:
    out = tmp_path / "killed.mp4"
    # Up to 2.5 s: the GOPs starting at 0 s and 1 s are complete fragments (the 2 s keyframe closed them),
    # the third is still in the muxer's memory when the process dies.
    job = tmp_path / "job.pkl"
    job.write_bytes(pickle.dumps((h264_frames, str(out), T0 + 2.5)))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(job)], stdout=subprocess.PIPE, env=env, cwd=REPO)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"ready"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    part = part_path_for(out)
    assert part.exists() and not out.exists()

    recovered = recover_folder(tmp_path)
    assert len(recovered) == 1
    info = recovered[0]
    assert info.path == out and not part.exists()
    assert info.video_frames == 2 * GOP  # exactly the two complete fragments
    assert decode_count(out) == 2 * GOP
    video, audio, _ = demux(out)
    assert [h264.avcc_to_annexb(p.data) for p in video] == vdata(h264_frames)[: 2 * GOP]
    assert len(audio) > 0
    assert abs(info.duration_s - 2.0) <= 1 / FPS


@pytest.mark.parametrize("suffix,fixture", [(".mp4", "h264_frames"), (".webm", "vp8_frames")])
def test_truncated_part_recovers_a_prefix_or_nothing(
    tmp_path: Path, suffix: str, fixture: str, request: pytest.FixtureRequest
) -> None:
    frames: list[EncodedFrame] = request.getfixturevalue(fixture)
    out = tmp_path / f"live{suffix}"
    w = ClipWriter(out)
    w.write_many(frames)  # still "recording": the part holds what has been flushed so far
    snapshot = part_path_for(out).read_bytes()
    w.abort()
    assert not part_path_for(out).exists()
    assert len(snapshot) > 10_000
    total = len(vdata(frames))
    prev = 0
    for frac in (0.02, 0.3, 0.55, 0.8, 1.0):
        cut = int(len(snapshot) * frac)
        part = part_path_for(out)
        part.write_bytes(snapshot[:cut])
        info = recover_partial(part)
        assert not part.exists()
        if info is None:
            assert not out.exists()
            continue
        n = decode_count(out)
        assert 0 < info.video_frames <= total and n == info.video_frames
        video, _, _ = demux(out)
        got = [h264.avcc_to_annexb(p.data) if suffix == ".mp4" else p.data for p in video]
        assert got == vdata(frames)[: len(got)]  # a clean prefix, from the first keyframe
        assert info.video_frames >= prev
        prev = info.video_frames
        out.unlink()
    assert prev >= total - GOP  # the whole file, less at most the GOP still in the muxer


def test_recover_garbage_returns_none_and_deletes(tmp_path: Path) -> None:
    part = tmp_path / ".junk.mp4.part"
    part.write_bytes(os.urandom(5000))
    assert recover_partial(part) is None
    assert not part.exists() and not (tmp_path / "junk.mp4").exists()
    empty = tmp_path / ".empty.webm.part"
    empty.write_bytes(b"")
    assert recover_partial(empty) is None and not empty.exists()


# --- bad input ----------------------------------------------------------------------------------------------------


def test_bad_input_raises_clip_error(tmp_path: Path, h264_frames: list[EncodedFrame], vp8_frames) -> None:
    with pytest.raises(ClipError, match="unsupported clip type"):
        ClipWriter(tmp_path / "x.avi")
    with pytest.raises(ClipError, match="folder does not exist"):
        ClipWriter(tmp_path / "nope" / "x.mp4")

    w = ClipWriter(tmp_path / "vp8.mp4")
    with pytest.raises(ClipError, match="vp8 video cannot go into a mp4") as ei:
        w.write(vp8_frames[0])
    assert ei.value.path == tmp_path / "vp8.mp4"

    key = next(f for f in h264_frames if f.kind == "video" and f.keyframe)
    junk = EncodedFrame("video", "h264", b"\x00\x00\x00\x01\x67" + os.urandom(3), 0, VIDEO_TIME_BASE, T0, True)
    with pytest.raises(ClipError, match="not valid h264"):
        ClipWriter(tmp_path / "junk.mp4").write(junk)

    no_sps = EncodedFrame(
        "video",
        "h264",
        h264.join_annexb([n for n in h264.split_annexb(key.data) if h264.nal_type(n) not in (7, 8)]),
        0,
        VIDEO_TIME_BASE,
        T0,
        True,
    )
    with pytest.raises(ClipError, match="no SPS/PPS"):
        ClipWriter(tmp_path / "nosps.mp4").write(no_sps)

    only_p = ClipWriter(tmp_path / "onlyp.mp4")
    only_p.write_many(f for f in h264_frames if f.kind == "video" and not f.keyframe)
    with pytest.raises(ClipError, match="no video keyframe"):
        only_p.close()
    assert list(tmp_path.iterdir()) == []

    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(os.urandom(2000))
    with pytest.raises(ClipError, match=r"garbage\.mp4"):
        probe_clip(garbage)


def test_abort_and_context_manager_cleanup(tmp_path: Path, h264_frames: list[EncodedFrame]) -> None:
    with pytest.raises(RuntimeError):
        with ClipWriter(tmp_path / "c.mp4") as w:
            w.write_many(h264_frames[:100])
            assert part_path_for(tmp_path / "c.mp4").exists()
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_opus_packet_samples(opus_packets: list[bytes]) -> None:
    assert all(opus_packet_samples(p) == 960 for p in opus_packets)
    assert opus_packet_samples(b"") == 0
    assert opus_packet_samples(bytes([0b00000011, 3])) == 3 * 480  # code 3, 3 frames of SILK NB 10 ms


# --- snapshots ----------------------------------------------------------------------------------------------------


def _decode_all(frames: list[EncodedFrame]) -> list[np.ndarray]:
    ctx = av.CodecContext.create(frames[0].codec, "r")
    out = []
    for f in frames:
        out += [fr.to_ndarray(format="bgr24") for fr in ctx.decode(av.Packet(f.data))]
    out += [fr.to_ndarray(format="bgr24") for fr in ctx.decode(None)]
    return out


@pytest.mark.parametrize("fixture", ["h264_frames", "vp8_frames"])
def test_snapshot_decodes_the_right_frame(tmp_path: Path, fixture: str, request: pytest.FixtureRequest) -> None:
    import cv2

    frames: list[EncodedFrame] = request.getfixturevalue(fixture)
    video = [f for f in frames if f.kind == "video"]
    target = GOP + 7  # mid second GOP
    at_t = video[target].t + 0.01
    info = write_snapshot(frames, at_t, tmp_path / "snap.jpg", tmp_path / "thumb.jpg", thumb_width=160)
    assert info.t == video[target].t and (info.width, info.height) == (W, H)
    full = cv2.imread(str(info.jpeg_path))
    thumb = cv2.imread(str(info.thumb_path))
    assert full.shape == (H, W, 3) and thumb.shape == (120, 160, 3)
    ref = _decode_all(video[: target + 4])
    err = [float(np.abs(full.astype(int) - ref[i].astype(int)).mean()) for i in range(target - 3, target + 4)]
    assert err.index(min(err)) == 3, err  # closest to the target frame, not a neighbour
    assert not any(p.suffix == ".tmp" for p in tmp_path.iterdir())


def test_snapshot_errors(tmp_path: Path, h264_frames: list[EncodedFrame]) -> None:
    audio_only = [f for f in h264_frames if f.kind == "audio"]
    with pytest.raises(ClipError, match="no video frames"):
        write_snapshot(audio_only, T0 + 1, tmp_path / "a.jpg", tmp_path / "b.jpg")
    no_keys = [f for f in h264_frames if f.kind == "video" and not f.keyframe]
    with pytest.raises(ClipError, match="no keyframe"):
        write_snapshot(no_keys, T0 + 1, tmp_path / "a.jpg", tmp_path / "b.jpg")
    junk = [EncodedFrame("video", "h264", b"\x00\x00\x00\x01\x65" + bytes(50), 0, VIDEO_TIME_BASE, T0, True)]
    with pytest.raises(ClipError, match=r"a\.jpg"):
        write_snapshot(junk, T0, tmp_path / "a.jpg", tmp_path / "b.jpg")


def test_clips_and_snapshots_are_private_whatever_the_umask(tmp_path: Path, h264_frames: list[EncodedFrame]) -> None:
    """Clips and snapshots show the inside of a home: 0600 even under a umask of 022 (issue 10, item 4)."""
    import stat

    old = os.umask(0o022)
    try:
        info = ClipWriter(tmp_path / "clip.mp4")
        info.write_many(h264_frames)
        part_mode = stat.S_IMODE(info.part_path.stat().st_mode)  # what a SIGKILL would leave behind
        clip = info.close()
        video = [f for f in h264_frames if f.kind == "video"]
        snap = write_snapshot(h264_frames, video[GOP].t, tmp_path / "snap.jpg", tmp_path / "thumb.jpg")
        # a crash-recovered clip is remuxed into a new file: private too
        w = ClipWriter(tmp_path / "crashed.mp4")
        w.write_many(h264_frames[: len(h264_frames) // 2])
        recovered = recover_partial(w.part_path)
    finally:
        os.umask(old)
    assert part_mode == 0o600
    assert recovered is not None
    for p in (clip.path, snap.jpeg_path, snap.thumb_path, recovered.path):
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
