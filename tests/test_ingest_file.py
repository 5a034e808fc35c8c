"""FileCamera on small files made with PyAV: demux without decoding the record stream, Annex B, detect, audio."""

from __future__ import annotations

import asyncio
import fractions
import logging
import random
import re
import time
from pathlib import Path

import av
import numpy as np
import pytest

from hub.ingest.file import CAUGHT_UP_S, FileCamera, FileCameraError, _ArrivalClock
from hub.media.h264 import split_annexb
from tests.sinks import RecordingSink


class WaitableSink(RecordingSink):
    """A RecordingSink a test can await: FileCamera calls the sink on the event loop, so every delivery wakes
    :meth:`until`. Also notes the wall clock at which each item of ``frames`` arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.arrived: list[float] = []
        self._changed = asyncio.Event()

    def on_frame(self, frame) -> None:
        super().on_frame(frame)
        self.arrived.append(time.time())
        self._changed.set()

    def on_broken(self) -> None:
        super().on_broken()
        self._changed.set()

    async def until(self, cond, what: str, timeout: float = 15.0) -> None:
        try:
            async with asyncio.timeout(timeout):
                while not cond():
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            pytest.fail(f"no {what} within {timeout} s: {len(self.video())} video frames, {self.broken} breaks")


def make_clip(path: Path, *, vcodec="libx264", acodec="libopus", seconds=2.0, fps=30, size=(320, 240), gop=30):
    out = av.open(str(path), "w")
    v = out.add_stream(vcodec, rate=fps)
    v.width, v.height = size
    v.pix_fmt = "yuv420p"
    if vcodec == "libx264":
        v.profile = "baseline"
        v.options = {"g": str(gop), "bf": "0", "preset": "ultrafast"}
    else:
        v.options = {"g": str(gop)}
    a = None
    if acodec:
        a = out.add_stream(acodec, rate=48000)
        a.layout = "mono"
    n = int(seconds * fps)
    w, h = size
    for i in range(n):
        img = np.zeros((h, w, 3), np.uint8)
        x = (i * 5) % (w - 40)
        img[100:140, x : x + 40] = 255  # a moving white box
        frame = av.VideoFrame.from_ndarray(img, format="rgb24")
        frame.pts = i
        frame.time_base = fractions.Fraction(1, fps)
        for p in v.encode(frame):
            out.mux(p)
    for p in v.encode():
        out.mux(p)
    if a is not None:
        rate = 48000
        chunk = 960
        total = int(seconds * rate)
        for start in range(0, total, chunk):
            t = (start + np.arange(chunk)) / rate
            tone = (np.sin(2 * np.pi * 440 * t) * 0.3).astype(np.float32)
            af = av.AudioFrame.from_ndarray(tone.reshape(1, -1), format="flt", layout="mono")
            af.sample_rate = rate
            af.pts = start
            af.time_base = fractions.Fraction(1, rate)
            for p in a.encode(af):
                out.mux(p)
        for p in a.encode():
            out.mux(p)
    out.close()
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("clips")
    return {
        "opus": make_clip(d / "opus.mp4"),
        "aac": make_clip(d / "aac.mp4", acodec="aac"),
        "vp8": make_clip(d / "vp8.webm", vcodec="libvpx", acodec="libopus"),
        "short": make_clip(d / "short.mp4", seconds=1.0, acodec=None),
    }


async def test_h264_opus_mp4_unpaced(clips) -> None:
    # realtime=False: the whole file as fast as the sink takes it, on the file's clock (how fast: scripts/bench)
    sink = RecordingSink()
    cam = FileCamera(clips["opus"], sink, realtime=False, detect_fps=5, detect_width=160)
    await cam.run()

    video = sink.video()
    assert len(video) == 60
    assert all(f.codec == "h264" and f.data.startswith(b"\x00\x00\x00\x01") for f in video)
    keys = [f for f in video if f.keyframe]
    assert [round(k.t, 3) for k in keys] == [0.0, 1.0]
    for k in keys:  # MP4 keeps SPS/PPS in avcC only: they must be put back in band on every IDR
        types = [n[0] & 0x1F for n in split_annexb(k.data)]
        assert types[:2] == [7, 8] and 5 in types
    for f in video:
        if not f.keyframe:
            assert 5 not in {n[0] & 0x1F for n in split_annexb(f.data)}
    assert [f.pts for f in video] == [i * 3000 for i in range(60)]  # 90 kHz, rebased to 0
    assert [round(f.t, 4) for f in video[:3]] == [0.0, round(1 / 30, 4), round(2 / 30, 4)]
    assert video[0].width == 320 and video[0].height == 240
    assert sink.info == [{"codec": "h264", "width": 320, "height": 240}]

    # the record stream is decodable as is (Annex B + in-band parameter sets), e.g. by a fresh decoder
    dec = av.CodecContext.create("h264", "r")
    decoded = sum(len(dec.decode(av.Packet(f.data))) for f in video) + len(dec.decode(None))
    assert decoded == 60

    # detect: 5 fps of a 2 s clip, 160 px wide, grey
    assert 9 <= len(sink.detect) <= 11
    d = sink.detect[3]
    assert d.y.dtype == np.uint8 and d.y.shape == (120, 160)
    assert d.y.max() > 200  # the white box survived
    ts = [x.t for x in sink.detect]
    assert np.allclose(np.diff(ts), 0.2, atol=0.04)

    # audio: opus passthrough and decoded mono chunks
    af = sink.audio_frames()
    assert len(af) >= 95 and all(f.codec == "opus" and f.time_base == fractions.Fraction(1, 48000) for f in af)
    assert af[1].pts - af[0].pts == 960
    assert len(sink.audio) >= 95
    c = sink.audio[50]
    assert c.samples.dtype == np.float32 and c.samples.ndim == 1 and c.sample_rate == 48000
    assert 0.1 < float(np.sqrt(np.mean(c.samples**2))) < 0.3


async def test_aac_passes_through_and_is_decoded(clips) -> None:
    sink = RecordingSink()
    await FileCamera(clips["aac"], sink, realtime=False, detect_fps=5).run()
    assert len(sink.video()) == 60
    af = sink.audio_frames()  # for the clips, as they came (tests/test_aac.py)
    assert len(af) > 90 and all(f.codec == "aac" and f.time_base == fractions.Fraction(1, 48000) for f in af)
    assert len(sink.audio) > 50 and sink.audio[10].samples.dtype == np.float32
    assert sink.detect[0].y.shape == (240, 320)  # narrower than detect_width: not upscaled


async def test_vp8_webm(clips) -> None:
    sink = RecordingSink()
    await FileCamera(clips["vp8"], sink, realtime=False).run()
    video = sink.video()
    assert len(video) == 60 and all(f.codec == "vp8" for f in video)
    assert video[0].keyframe and sum(f.keyframe for f in video) == 2
    assert sink.info[-1] == {"codec": "vp8", "width": 320, "height": 240}
    assert sink.audio_frames() and sink.audio and sink.detect


async def test_realtime_pacing_loop_and_stop(clips) -> None:
    sink = WaitableSink()
    cam = FileCamera(clips["short"], sink, realtime=True, loop=True)
    start = time.time()
    task = asyncio.ensure_future(cam.run())
    try:
        await sink.until(lambda: len(sink.video()) >= 36, "frames into the second loop")
    finally:
        await cam.stop()
        await asyncio.wait_for(task, 5)
    stopped = time.time()
    video = sink.video()
    assert cam.loops == 1
    pts = [f.pts for f in video]
    assert pts == sorted(pts) and len(set(pts)) == len(pts)  # keeps increasing across the loop
    assert video[30].keyframe and video[30].pts == 90000
    # t is the wall clock of the frame's place in the stream: first frame at the start, 1/30 s apart
    assert start <= video[0].t and video[-1].t <= stopped
    assert all(f.t - video[0].t == pytest.approx(f.pts / 90000, abs=1e-3) for f in video)
    # paced: no frame is handed over before its time (a slow machine only makes them later), so the 36
    # frames took at least 35/30 s instead of arriving all at once
    arrived = [a for a, f in zip(sink.arrived, sink.frames, strict=False) if f.kind == "video"]
    early = [(i, round(f.t - a, 3)) for i, (a, f) in enumerate(zip(arrived, video, strict=False)) if a < f.t - 0.02]
    assert not early, f"frames delivered ahead of their time (index, seconds early): {early[:5]}"


async def test_bad_sources(tmp_path) -> None:
    with pytest.raises(FileCameraError):
        await FileCamera(tmp_path / "missing.mp4", RecordingSink(), realtime=False).run()
    audio_only = tmp_path / "a.ogg"
    out = av.open(str(audio_only), "w")
    s = out.add_stream("libopus", rate=48000)
    af = av.AudioFrame.from_ndarray(np.zeros((1, 960), np.float32), format="flt", layout="mono")
    af.sample_rate = 48000
    af.pts = 0
    for p in s.encode(af):
        out.mux(p)
    for p in s.encode():
        out.mux(p)
    out.close()
    with pytest.raises(FileCameraError, match="no video"):
        await FileCamera(audio_only, RecordingSink(), realtime=False).run()


async def test_live_source_reconnects_and_run_can_be_retried(clips) -> None:
    # A file posing as a live stream: when it "drops", the camera reports a break and reconnects by itself.
    sink = WaitableSink()
    cam = FileCamera(clips["short"], sink, realtime=False)
    cam.live = True
    start = time.time()
    task = asyncio.ensure_future(cam.run())
    try:
        await sink.until(lambda: sink.broken >= 1 and len(sink.video()) > 40, "a break and a reconnect")
    finally:
        await cam.stop()
        await asyncio.wait_for(task, 5)
    assert sink.broken >= 1 and len(sink.video()) > 40
    pts = [f.pts for f in sink.video()]
    assert pts == sorted(pts) and len(set(pts)) == len(pts)
    # live: t is the wall clock at arrival (not the file's 0..1 s), and never after the sink got it
    arrived = [a for a, f in zip(sink.arrived, sink.frames, strict=False) if f.kind == "video"]
    assert all(start <= f.t <= a for f, a in zip(sink.video(), arrived, strict=False))

    # run() after a failure may be retried (hub/cameras.py does); after stop() it returns at once
    bad = FileCamera("/nonexistent.mp4", RecordingSink(), realtime=False)
    for _ in range(2):
        with pytest.raises(FileCameraError):
            await bad.run()
    await bad.stop()
    await asyncio.wait_for(bad.run(), 1)


# --- packets without timestamps (issue 14, RTSP item 2) ------------------------------------------------------


def make_raw_h264(path: Path, seconds: float = 2.0, fps: int = 30, gop: int = 30) -> Path:
    """A raw Annex B elementary stream: FFmpeg's demuxer gives its packets no pts and no dts at all."""
    out = av.open(str(path), "w", format="h264")
    v = out.add_stream("libx264", rate=fps)
    v.width, v.height = 320, 240
    v.pix_fmt = "yuv420p"
    v.options = {"g": str(gop), "bf": "0", "preset": "ultrafast"}
    for i in range(int(seconds * fps)):
        img = np.zeros((240, 320, 3), np.uint8)
        img[100:140, (i * 5) % 280 : (i * 5) % 280 + 40] = 255
        frame = av.VideoFrame.from_ndarray(img, format="rgb24")
        frame.pts = i
        frame.time_base = fractions.Fraction(1, fps)
        out.mux(v.encode(frame))
    out.mux(v.encode())
    out.close()
    return path


async def test_raw_annexb_stream_without_any_timestamp_is_stamped(tmp_path) -> None:
    raw = make_raw_h264(tmp_path / "cam.h264")
    with av.open(str(raw)) as c:  # the condition itself: FFmpeg stamps none of them
        stamps = [(p.pts, p.dts) for p in c.demux(video=0) if p.size]
    assert len(stamps) == 60 and set(stamps) == {(None, None)}

    sink = RecordingSink()
    cam = FileCamera(raw, sink, realtime=False, detect_fps=5)
    await cam.run()
    video = sink.video()
    assert len(video) == 60, "packets without a timestamp were dropped"
    assert video[0].keyframe and video[30].keyframe
    assert [f.pts for f in video] == [i * 3000 for i in range(60)]  # the stream's frame interval (30 fps)
    assert all(f.dts is None for f in video)
    assert cam.stats()["stamped_packets"] == 60
    assert len(sink.detect) >= 9


class _FirstPacketUnstamped:
    """A demuxed file whose first video packet has neither pts nor dts: what FFmpeg's RTSP demuxer hands over
    for the keyframe that opens every connection (its H.264 parser emits the first access unit unstamped)."""

    def __init__(self, container) -> None:
        self._c = container
        self.streams = container.streams
        self.cleared: list[int] = []

    def demux(self, streams):
        for p in self._c.demux(streams):
            if not self.cleared and p.stream.type == "video" and p.size:
                self.cleared.append(p.size)
                p.pts = None
                p.dts = None
            yield p

    def close(self) -> None:
        self._c.close()


class _RtspLikeCamera(FileCamera):
    def _open(self, url, video_only=False):
        return _FirstPacketUnstamped(super()._open(url, video_only))


async def test_first_packet_of_a_connection_without_timestamp_keeps_its_gop(clips) -> None:
    # Played as a live source: every connection's first packet (the keyframe) comes unstamped. Before the fix
    # it was skipped, and with it the whole first GOP (nothing to decode the P-frames against).
    sink = WaitableSink()
    cam = _RtspLikeCamera(clips["short"], sink, realtime=False, detect_fps=5)
    cam.live = True
    task = asyncio.ensure_future(cam.run())
    try:
        await sink.until(lambda: sink.broken >= 1 and len(sink.video()) > 30, "a second connection")
    finally:
        await cam.stop()
        await asyncio.wait_for(task, 5)
    video = sink.video()
    assert video[0].keyframe, "the connection's first packet (its keyframe) was dropped"
    assert len(video) > 30 and video[30].keyframe  # the second connection opens with its keyframe too
    first = video[:30]
    assert [f.pts - first[0].pts for f in first] == [i * 3000 for i in range(30)]  # placed one frame before the next
    assert cam.stats()["stamped_packets"] >= 2


async def test_reconnect_is_logged_with_the_time_down(clips, caplog) -> None:
    sink = WaitableSink()
    cam = FileCamera(clips["short"], sink, realtime=False)
    cam.live = True
    caplog.set_level(logging.INFO, logger="hub.ingest.file")
    task = asyncio.ensure_future(cam.run())
    try:
        await sink.until(lambda: sink.broken >= 1 and len(sink.video()) > 30, "a reconnect")
    finally:
        await cam.stop()
        await asyncio.wait_for(task, 5)
    lines = [r for r in caplog.records if "reconnected" in r.getMessage()]
    assert lines and lines[0].levelno == logging.INFO, [r.getMessage() for r in caplog.records]
    m = re.search(r"reconnected after ([0-9.]+) s down", lines[0].getMessage())
    assert m and float(m.group(1)) >= 0
    assert cam.stats()["reconnects"] >= 1


async def test_audio_disabled_decodes_nothing(clips) -> None:
    asked = []

    def wanted() -> bool:
        asked.append(1)
        return False

    aac = RecordingSink()
    await FileCamera(clips["aac"], aac, realtime=False, decode_audio=wanted).run()
    assert len(aac.video()) == 60 and aac.detect
    assert aac.audio == [] and asked  # asked per packet (a live setting), and nothing decoded

    opus = RecordingSink()
    cam = FileCamera(clips["opus"], opus, realtime=False, decode_audio=False)
    await cam.run()
    assert opus.audio == [] and cam.audio_chunks == 0
    assert len(opus.audio_frames()) >= 95  # Opus still passes through for the clips


# --- detect throttle (issue 14, RTSP item 5) --------------------------------------------------------------------

JITTER_S = 0.06  # arrival jitter of a 5 fps RTSP sub-stream, either way (the frames are 0.2 s apart)


def _jittered(fps: float, seconds: float, seed: int) -> list[float]:
    rng = np.random.default_rng(seed)
    n = int(seconds * fps)
    return list(np.arange(n) / fps + rng.uniform(-JITTER_S, JITTER_S, n))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_detect_throttle_keeps_a_jittery_5fps_stream_and_thins_15fps_to_5(seed) -> None:
    from hub.ingest.file import DetectThrottle

    five = _jittered(5, 60, seed)
    th = DetectThrottle(5)
    kept = sum(th.take(t) for t in five)
    assert kept >= 0.99 * len(five), f"{len(five) - kept} of {len(five)} frames of a 5 fps stream skipped"

    th = DetectThrottle(5)
    kept15 = [t for t in _jittered(15, 60, seed) if th.take(t)]
    assert abs(len(kept15) - 300) <= 2, len(kept15)  # 5 fps on average
    gaps = np.diff(kept15)
    assert gaps.mean() == pytest.approx(0.2, abs=0.005) and gaps.max() < 0.4  # spread out: no long holes

    # after an outage the schedule starts over (no burst to "catch up"), and a step back in time resets it
    th = DetectThrottle(5)
    after = [t for t in [0.0, 0.2, 0.4, 10.0, 10.05, 10.1, 10.2, 10.4, 3.0, 3.2] if th.take(t)]
    assert after == [0.0, 0.2, 0.4, 10.0, 10.2, 10.4, 3.0, 3.2]


def make_jittered_5fps(path: Path, seconds: float = 60.0, seed: int = 7) -> Path:
    """A 5 fps stream whose frame times jitter (MKV, ms timestamps): a camera stamping frames as they come."""
    out = av.open(str(path), "w", format="matroska")
    v = out.add_stream("libx264", rate=5)
    v.width, v.height = 64, 48
    v.pix_fmt = "yuv420p"
    v.time_base = fractions.Fraction(1, 1000)
    v.codec_context.time_base = fractions.Fraction(1, 1000)
    v.options = {"g": "10", "bf": "0", "preset": "ultrafast"}
    for i, t in enumerate(_jittered(5, seconds, seed)):
        img = np.full((48, 64, 3), (i * 7) % 255, np.uint8)
        frame = av.VideoFrame.from_ndarray(img, format="rgb24")
        frame.pts = max(0, round(t * 1000))
        frame.time_base = fractions.Fraction(1, 1000)
        out.mux(v.encode(frame))
    out.mux(v.encode())
    out.close()
    return path


async def test_jittery_5fps_stream_keeps_its_detect_frames(tmp_path) -> None:
    path = make_jittered_5fps(tmp_path / "sub.mkv")
    with av.open(str(path)) as c:  # the condition: frame times are not 0.2 s apart
        times = [float(p.pts * p.time_base) for p in c.demux(video=0) if p.size]
    assert len(times) == 300 and np.diff(times).min() < 0.15
    sink = RecordingSink()
    await FileCamera(path, sink, realtime=False, detect_fps=5).run()
    assert len(sink.detect) >= 297, f"{300 - len(sink.detect)} of 300 detect frames skipped"


async def test_detect_substream_with_jittery_arrival_keeps_its_frames(tmp_path, clips) -> None:
    # The RTSP sub-stream path (detect_url) throttles on arrival time: the camera's clock here, jittered.
    sub = make_clip(tmp_path / "sub.mp4", acodec=None, seconds=60.0, fps=5, size=(64, 48), gop=10)
    arrivals = _jittered(5, 60, seed=11)
    calls = 0

    def clock() -> float:  # one call per decoded sub-stream frame; a second pass of the file comes much later
        nonlocal calls
        calls += 1
        return arrivals[calls - 1] if calls <= len(arrivals) else 1000.0 + calls * 0.2

    sink = WaitableSink()
    sink.on_detect = lambda f: (sink.detect.append(f), sink._changed.set())  # type: ignore[method-assign]
    cam = FileCamera(clips["short"], sink, realtime=True, loop=True, detect_url=str(sub), detect_fps=5, clock=clock)
    task = asyncio.ensure_future(cam.run())
    try:
        await sink.until(lambda: any(d.t >= 1000 for d in sink.detect), "the sub-stream's second pass", 60)
    finally:
        await cam.stop()
        await asyncio.wait_for(task, 5)
    first_pass = [d for d in sink.detect if d.t < 1000]
    assert len(first_pass) >= 297, f"{300 - len(first_pass)} of 300 sub-stream frames skipped"


# --- RTSP open timeout (issue 14, RTSP item 5) ----------------------------------------------------------------


class SilentCamera:
    """A TCP server on 127.0.0.1 that accepts and never answers: an RTSP camera slower than any timeout."""

    def __init__(self) -> None:
        import socket
        import threading

        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted: list = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def close(self) -> None:
        self.sock.close()
        for c in self.accepted:
            c.close()


@pytest.fixture
def silent_camera():
    server = SilentCamera()
    yield server
    server.close()


def test_rtsp_open_timeout_reaches_ffmpeg(silent_camera, monkeypatch) -> None:
    # A real RTSP open (FFmpeg's demuxer) against a camera that never answers, with a spy on av.open: the
    # configured time is FFmpeg's socket timeout (µs) and PyAV's open timeout. No slow camera is waited for.
    real_open = av.open
    calls: list[dict] = []

    def spy(url, *args, **kwargs):
        calls.append({"url": url, **kwargs})
        return real_open(url, *args, **kwargs)

    monkeypatch.setattr(av, "open", spy)
    url = f"rtsp://127.0.0.1:{silent_camera.port}/stream1"
    cam = FileCamera(url, RecordingSink(), open_timeout_s=0.4)
    with pytest.raises(FileCameraError):
        cam._open(url)
    assert silent_camera.accepted, "FFmpeg never connected"
    assert calls[0]["options"]["timeout"] == "400000"
    from hub.ingest.file import DEFAULT_OPEN_TIMEOUT_S, READ_TIMEOUT_S

    assert calls[0]["timeout"] == (0.4, READ_TIMEOUT_S)
    # the default is no longer 5 s, which refused cameras that take a few seconds to answer DESCRIBE
    assert DEFAULT_OPEN_TIMEOUT_S == 15.0
    assert FileCamera(url, RecordingSink()).options["timeout"] == "15000000"
    assert "timeout" not in FileCamera("clip.mp4", RecordingSink()).options  # files: no network options


async def test_camera_config_open_timeout_reaches_its_source(silent_camera, tmp_path) -> None:
    from hub.app import build_hub
    from hub.config import CameraConfig, HubConfig

    assert CameraConfig(id="gate", source="rtsp://127.0.0.1/x").open_timeout_s == 15.0  # the documented default
    url = f"rtsp://127.0.0.1:{silent_camera.port}/stream1"
    cfg = HubConfig(storage={"data_dir": str(tmp_path / "data")},
                    cameras=[{"id": "gate", "source": url, "open_timeout_s": 0.3}])
    hub = build_hub(cfg)
    await hub.cameras.start()
    try:
        source = hub.cameras.sources["gate"]
        assert source.open_timeout_s == 0.3 and source.options["timeout"] == "300000"
    finally:
        await hub.cameras.stop()
        hub.store.close()


# --- cost per RTSP camera (issue 14, RTSP item 7): cheaper paths give the same numbers -----------------------------


def _decoded_frames(path: Path, n: int = 5) -> list:
    with av.open(str(path)) as c:
        out = []
        for f in c.decode(video=0):
            out.append(f)
            if len(out) >= n:
                return out
    return out


@pytest.mark.parametrize("width", [320, 160])
def test_detect_grey_is_swscales_grey_without_a_context_per_frame(clips, width) -> None:
    # The Y plane through the range table is what frame.reformat(format="gray") gave (a fresh swscale context per
    # frame, ~1 ms each); downscaled it is an area average of the same, within rounding of the two scalers.
    cam = FileCamera(clips["opus"], RecordingSink(), detect_width=width)
    for f in _decoded_frames(clips["opus"]):
        assert f.format.name == "yuv420p"
        y = cam._grey(f)
        if width == f.width:
            assert np.array_equal(y, f.reformat(format="gray").to_ndarray())
        else:
            ref = f.reformat(width=160, height=120, format="gray", interpolation="AREA").to_ndarray()
            assert y.shape == ref.shape == (120, 160)
            assert np.abs(y.astype(int) - ref).mean() < 1.0
    # an RGB frame (no Y plane) still works, through a kept swscale context
    rgb = av.VideoFrame.from_ndarray(np.full((240, 320, 3), 200, np.uint8), format="rgb24")
    assert cam._grey(rgb).shape == ((240, 320) if width == 320 else (120, 160))


def test_aac_mono_fast_path_matches_the_general_conversion(clips) -> None:
    from hub.ingest.file import _mono
    from hub.ingest.tap import audio_frame_to_mono

    with av.open(str(clips["aac"])) as c:
        frames = [f for _, f in zip(range(10), c.decode(audio=0), strict=False)]
    assert frames and frames[0].format.name == "fltp"
    for f in frames:
        assert np.array_equal(_mono(f), audio_frame_to_mono(f))
    stereo = av.AudioFrame.from_ndarray(np.array([[0.5] * 64, [-0.25] * 64], np.float32), format="fltp",
                                        layout="stereo")
    assert np.allclose(_mono(stereo), 0.125) and np.allclose(audio_frame_to_mono(stereo), 0.125)


async def test_batched_hand_off_keeps_order_and_delivers_the_tail(clips) -> None:
    # Items reach the sink in batches; every packet arrives, in order, and the last batch before run() returns.
    sink = RecordingSink()
    calls: list[int] = []
    loop = asyncio.get_running_loop()
    real = loop.call_soon_threadsafe

    def counting(cb, *args, **kw):  # a spy on the hand-offs, the real loop does the work
        calls.append(1)
        return real(cb, *args, **kw)

    loop.call_soon_threadsafe = counting  # type: ignore[method-assign]
    try:
        cam = FileCamera(clips["aac"], sink, realtime=False, detect_fps=5)
        await cam.run()
    finally:
        del loop.call_soon_threadsafe
    items = len(sink.frames) + len(sink.detect) + len(sink.audio) + len(sink.info)
    assert len(sink.video()) == 60 and [f.pts for f in sink.video()] == sorted(f.pts for f in sink.video())
    assert len(calls) < items / 3, f"{len(calls)} hand-offs for {items} items: not batched"


def _read(clock: _ArrivalClock, sent: list[tuple[int, float, float]], delay: float, pause: float = 0.2,
          stall: tuple[float, float] | None = None, step: tuple[float, float] | None = None,
          waits_on: tuple[int, ...] = (0, 1), held_up: float = 0.0, jitter: float = 0.0,
          ) -> list[tuple[float, float, float]]:
    """The paced reader over packets (stream index, stream time, time sent), in the order sent, each arriving
    ``delay`` after it was sent: a packet already in the socket is read at once, else the read waits for it
    (``CAUGHT_UP_S``); where ``clock`` says the round ends, the reader sleeps ``pause``. ``stall`` (at, seconds):
    once, the reader is held that long (the hub busy). ``step`` (at, seconds): from then on the wall clock reads
    that much more. Only reads of ``waits_on`` streams count as waiting for the camera. ``held_up``: the share of
    reads that come back 5-10 ms late (the GIL, the scheduler: they look as if they waited); ``jitter``: the
    network's, up to that many seconds on top of ``delay``. (estimated t, true arrival, read time) for each, on
    the unstepped clock."""
    rng = random.Random(7)
    now, shift, arrived = 0.0, 0.0, 0.0
    out = []
    for index, ts, at in sent:
        arrived = max(at + delay + rng.uniform(0, jitter), arrived)  # TCP: in the order sent
        asked = now
        now = max(now, arrived)
        if rng.random() < held_up:
            now += rng.uniform(0.005, 0.010)
        waited = now - asked >= CAUGHT_UP_S and index in waits_on
        if step is not None and now >= step[0]:
            shift, step = step[1], None
        t, edge = clock.arrival(index, ts, now + shift, waited)
        out.append((t - shift, arrived, now))
        now += 0.0002  # the read itself
        if edge:
            now += pause
        if stall is not None and now >= stall[0]:
            now += stall[1]
            stall = None
    return out


def _av(seconds: float, rate: float = 1.0) -> list[tuple[int, float, float]]:
    """Video at 15 fps and AAC at 15.6 chunks a second, interleaved as sent, each on a stream clock of its own
    (audio's RTP time starts elsewhere) running at ``rate`` of the hub's."""
    video = [(0, i / 15 * rate, i / 15) for i in range(int(seconds * 15))]
    audio = [(1, 1000.0 + i * 0.064 * rate, i * 0.064) for i in range(int(seconds / 0.064))]
    return sorted(video + audio, key=lambda p: p[2])


def test_arrival_clock_gives_a_backlog_its_arrival_times() -> None:
    est = _read(_ArrivalClock(), _av(20), delay=0.03)
    assert sum(read > arrived + 0.05 for _, arrived, read in est) > len(est) / 2  # most read from a backlog
    # every packet gets its arrival within a fraction of a frame interval, however late it was read (a stream's
    # delay is the least seen: the packets read soonest after they arrived set it)
    off = [abs(t - arrived) for t, arrived, _ in est[20:]]
    assert max(off) < 0.02 and sum(off) / len(off) < 0.005, (max(off), sum(off) / len(off))
    times = [t for t, _, _ in est]
    assert times == sorted(times)  # never earlier than the packet before
    assert all(t <= read for t, _, read in est)


def test_paced_reader_catches_up_after_a_stall() -> None:
    # The hub held the reader for 2 s: it must read the backlog through and be back at the live edge, with every
    # packet's arrival right. (Ending a round at the first packet after the stall, whose delay looked new, kept
    # it ~2 s behind for minutes; at a 1 s pause it never caught up.)
    for pause in (0.2, 0.25):
        est = _read(_ArrivalClock(), _av(30), delay=0.03, pause=pause, stall=(10.0, 2.0))
        off = [abs(t - arrived) for t, arrived, _ in est[20:]]
        assert max(off) < 0.02, (pause, max(off))
        behind = [read - arrived for _, arrived, read in est if arrived > 15.0]
        assert max(behind) < pause + 0.1, (pause, max(behind))


@pytest.mark.parametrize(("held_up", "jitter"), [(0.02, 0.0), (0.0, 0.02), (0.02, 0.02)])
def test_arrival_clock_shrugs_off_reads_held_up_and_jitter(held_up: float, jitter: float) -> None:
    # Reads that come back late look as if they waited for the camera, and jitter makes packets look late: neither
    # may move the delay (one held-up read once made t up to 0.34 s late for a second) or keep the reader behind.
    est = _read(_ArrivalClock(), _av(120), delay=0.03, held_up=held_up, jitter=jitter)
    off = sorted(t - arrived for t, arrived, _ in est[20:])
    mean = sum(abs(x) for x in off) / len(off)
    assert mean < 0.01 and off[int(len(off) * 0.99)] < 0.03 and off[-1] < 0.06, (mean, off[-1])
    behind = max(read - arrived for _, arrived, read in est[20:])
    assert behind < 0.3, behind


def test_arrival_clock_delay_and_round_ends() -> None:
    clock = _ArrivalClock()
    # a stream's first packet, read at once: its read time; no reason to end the round
    assert clock.arrival(0, 10.0, 100.0, False) == (100.0, False)
    # read 0.2 s after it arrived: its stream time says when
    t, edge = clock.arrival(0, 10.1, 100.3, False)
    assert t == pytest.approx(100.1, abs=1e-3) and not edge
    # a read that waited for the camera and looks a little late: the camera's clock drifts, the delay follows;
    # the live edge
    assert clock.arrival(0, 10.2, 100.21, True) == (100.21, True)
    assert clock.arrival(0, 10.3, 100.5, False)[0] == pytest.approx(100.31, abs=1e-3)
    # a read that waited yet looks 0.15 s late: held up after its data came (the GIL); neither moves the delay nor
    # ends the round (more may be waiting)
    t, edge = clock.arrival(0, 10.35, 100.51, True)
    assert t == pytest.approx(100.36, abs=1e-3) and not edge
    # three in a row that agree: the camera's clock stepped back 0.15 s; the delay starts over from them
    assert not clock.arrival(0, 10.40, 100.56, True)[1]
    t, edge = clock.arrival(0, 10.45, 100.61, True)
    assert t == pytest.approx(100.61, abs=1e-3) and edge
    assert clock.arrival(0, 10.50, 100.85, False)[0] == pytest.approx(100.66, abs=1e-3)


def test_arrival_clock_gives_every_packet_a_time_of_its_own() -> None:
    # Seen on a real RTSP connection: after FFmpeg re-based the video clock, two video packets came with one time
    # stamp. The second, read later, is estimated at the first one's arrival; it gets a time just after it.
    clock = _ArrivalClock()
    t1, _ = clock.arrival(0, 5.0, 100.0, False)
    t2, _ = clock.arrival(0, 5.0, 100.015, False)
    assert t1 < t2 <= t1 + 1e-3
    # an audio stream's first packet (its read time), then a video packet estimated a little before it: just
    # after it too
    t3, _ = clock.arrival(1, 3.0, 100.016, False)
    assert t3 == 100.016
    t4, _ = clock.arrival(0, 5.01, 100.03, False)  # estimated at 100.01: before t3 by less than FRESH_S
    assert t3 < t4 <= t3 + 1e-3
    # never after its read
    t5, _ = clock.arrival(0, 5.01, t4 + 2e-7, False)
    assert t4 < t5 <= t4 + 2e-7 + 1e-9


@pytest.mark.parametrize("waits_on", [(0, 1), (1,)])
@pytest.mark.parametrize("back_s", [0.5, 1.2, 3600.0])
def test_arrival_clock_follows_camera_clock_steps_within_a_round(back_s: float, waits_on: tuple[int, ...]) -> None:
    # Video's clock steps back (FFmpeg re-bases RTP times at the first RTCP report); with (1,) the reads that
    # wait are audio's only, so no waited read of its own sets video's delay anew (its t once stood still for
    # the rest of the connection, held at the audio's).
    sent = _av(20)
    stepped = [(i, ts - back_s if at >= 10.0 and i == 0 else ts, at) for i, ts, at in sent]
    est = _read(_ArrivalClock(), stepped, delay=0.03, waits_on=waits_on)
    after = [(t, arrived) for t, arrived, _ in est if arrived >= 10.03]
    # off by less than a round, and right again (each stream's next read that waited) within a second
    assert max(abs(t - arrived) for t, arrived in after) < 0.25
    assert max(abs(t - arrived) for t, arrived in after if arrived > 11.0) < 0.02
    times = [t for t, _, _ in est]
    assert times == sorted(times)


@pytest.mark.parametrize("rate", [0.9995, 0.998, 1.002])
def test_arrival_clock_follows_a_camera_clock_that_drifts(rate: float) -> None:
    # a camera clock 0.05 % and 0.2 % slow, 0.2 % fast (real ones are within 0.01 %): ten minutes of rounds
    est = _read(_ArrivalClock(), _av(600, rate), delay=0.03)
    worst = max(abs(t - arrived) for t, arrived, _ in est[20:])
    assert worst < 0.05, worst


def test_arrival_clock_follows_the_wall_clock_back() -> None:
    # NTP stepped the hub's clock back a minute: times go on from the new reading instead of standing still
    est = _read(_ArrivalClock(), _av(20), delay=0.03, step=(10.0, -60.0))
    assert max(abs(t - arrived) for t, arrived, _ in est if arrived > 10.03) < 0.25
    assert max(abs(t - arrived) for t, arrived, _ in est if arrived > 11.0) < 0.04
