"""cloud.storage.probe on real media made with PyAV here, from files and from blobs in a real Azurite."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import av
import numpy as np
import pytest

from cloud.storage.blob import AzureBlobStore, BlobNotFound, StorageUnavailable
from cloud.storage.probe import MediaError, ProbeStats, probe_blob, probe_file
from tests.harness.ports import free_ports


def make_clip(
    path: Path, fmt: str, vcodec: str | None, acodec: str | None, *, seconds: int = 4, fps: int = 15,
    size: tuple[int, int] = (320, 240), gop: int = 15, noise: bool = False, faststart: bool = True,
    audio_seconds: int | None = None,
) -> Path:
    """A real clip: ``fmt`` "mp4"/"webm", H.264 (libx264) or VP8 (libvpx) video, optional AAC/Opus audio."""
    w, h = size
    opts = {"movflags": "+faststart"} if fmt == "mp4" and faststart else {}
    rng = np.random.default_rng(7)
    with av.open(str(path), "w", format=fmt, options=opts) as out:
        v = None
        if vcodec:
            v = out.add_stream(vcodec, rate=fps)
            v.width, v.height, v.pix_fmt = w, h, "yuv420p"
            v.codec_context.gop_size = gop
        a = out.add_stream(acodec, rate=48000) if acodec else None
        if v is not None:
            for i in range(seconds * fps):
                if noise:  # incompressible: a clip whose size is mostly frame data, like a real camera's
                    img = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
                else:
                    img = np.full((h, w, 3), (i * 7) % 255, np.uint8)
                frame = av.VideoFrame.from_ndarray(img, format="rgb24")
                frame.pts = i
                for p in v.encode(frame):
                    out.mux(p)
            for p in v.encode():
                out.mux(p)
        if a is not None:
            fs = a.codec_context.frame_size or 1024
            n = 0
            while n < (audio_seconds or seconds) * 48000:
                tone = np.sin(np.arange(n, n + fs) * 2 * np.pi * 440 / 48000).astype(np.float32)[None, :]
                af = av.AudioFrame.from_ndarray(tone, format="fltp", layout="mono")
                af.sample_rate, af.pts = 48000, n
                n += fs
                for p in a.encode(af):
                    out.mux(p)
            for p in a.encode():
                out.mux(p)
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("clips")
    return {
        "mp4": make_clip(d / "a.mp4", "mp4", "libx264", "aac"),
        "webm": make_clip(d / "a.webm", "webm", "libvpx", "libopus"),
        "big": make_clip(d / "big.mp4", "mp4", "libx264", None, seconds=10, fps=10, gop=10,
                         size=(192, 144), noise=True),
        "late_moov": make_clip(d / "late.mp4", "mp4", "libx264", None, seconds=3, faststart=False),
        "audio_only": make_clip(d / "audio.mp4", "mp4", None, "aac", seconds=2),
        "long_audio": make_clip(d / "long_audio.mp4", "mp4", "libx264", "aac", seconds=2, audio_seconds=4),
    }


@pytest.fixture
async def store(azurite):
    s = AzureBlobStore(azurite.blob_url, f"p{uuid.uuid4().hex[:12]}", azurite.account_key)
    await s.ensure_container()
    try:
        yield s
    finally:
        await s.close()


def test_probe_mp4_h264_aac(clips):
    info = probe_file(clips["mp4"])
    assert (info.container, info.video_codec, info.audio_codec) == ("mp4", "h264", "aac")
    assert (info.width, info.height) == (320, 240)
    assert info.duration_s == pytest.approx(4.0, abs=0.1)


def test_probe_webm_vp8_opus(clips):
    info = probe_file(clips["webm"])
    assert (info.container, info.video_codec, info.audio_codec) == ("webm", "vp8", "opus")
    assert (info.width, info.height) == (320, 240)
    assert info.duration_s == pytest.approx(4.0, abs=0.1)


def test_audio_longer_than_video_is_not_truncation(clips):
    info = probe_file(clips["long_audio"])
    assert info.duration_s == pytest.approx(4.0, abs=0.1)  # the container's length, audio included


def test_probe_non_faststart_mp4(clips):
    info = probe_file(clips["late_moov"])
    assert info.container == "mp4" and info.duration_s == pytest.approx(3.0, abs=0.1)


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"", "empty"),
        (os.urandom(50_000), "not an MP4 or WebM"),
        (b"\x00\x00\x00\x18ftypisom" + os.urandom(30_000), "unreadable"),  # MP4 magic, garbage after
        (b"\x1a\x45\xdf\xa3" + os.urandom(30_000), "unreadable"),  # EBML magic, garbage after
    ],
)
def test_garbage_is_a_media_error(tmp_path, content, reason):
    p = tmp_path / "x.bin"
    p.write_bytes(content)
    with pytest.raises(MediaError, match=reason):
        probe_file(p)


@pytest.mark.parametrize("kind", ["big", "webm"])
def test_truncated_is_a_media_error(tmp_path, clips, kind):
    data = clips[kind].read_bytes()
    p = tmp_path / f"cut.{kind}"
    p.write_bytes(data[: len(data) * 6 // 10])  # header intact, the last 40 % of the frames gone
    with pytest.raises(MediaError, match=r"truncated|unreadable|no duration"):
        probe_file(p)


def test_audio_only_is_a_media_error(clips):
    with pytest.raises(MediaError, match="no video"):
        probe_file(clips["audio_only"])


def test_missing_file_is_a_media_error(tmp_path):
    with pytest.raises(MediaError, match="cannot read"):
        probe_file(tmp_path / "nope.mp4")


async def test_probe_blob_matches_probe_file(store, clips):
    for kind in ("mp4", "webm", "late_moov"):
        await store.put(f"ev/{kind}", clips[kind].read_bytes(), "video/mp4")
        stats = ProbeStats()
        assert await probe_blob(store, f"ev/{kind}", stats=stats) == probe_file(clips[kind])
        assert stats.blob_size == clips[kind].stat().st_size and stats.reads >= 1


async def test_probe_blob_reads_far_less_than_the_blob(store, clips):
    data = clips["big"].read_bytes()
    await store.put("ev/big.mp4", data, "video/mp4")
    stats = ProbeStats()
    info = await probe_blob(store, "ev/big.mp4", stats=stats)
    assert info.duration_s == pytest.approx(10.0, abs=0.1)
    # moov (first) + the last GOP (1 s of 10), in 64 KiB ranges
    print(f"probe read {stats.bytes_fetched} of {len(data)} bytes in {stats.reads} ranges")
    assert stats.bytes_fetched < len(data) // 4, (stats.bytes_fetched, len(data), stats.ranges)


async def test_probe_blob_truncated_zero_and_missing(store, clips):
    data = clips["big"].read_bytes()
    await store.put("ev/cut.mp4", data[: len(data) // 2], "video/mp4")
    with pytest.raises(MediaError, match="truncated"):
        await probe_blob(store, "ev/cut.mp4")
    await store.put("ev/empty.mp4", b"", "video/mp4")
    with pytest.raises(MediaError, match="empty"):
        await probe_blob(store, "ev/empty.mp4")
    await store.put("ev/noise.mp4", os.urandom(10_000), "video/mp4")
    with pytest.raises(MediaError, match="not an MP4 or WebM"):
        await probe_blob(store, "ev/noise.mp4")
    with pytest.raises(BlobNotFound):
        await probe_blob(store, "ev/none.mp4")


async def test_probe_blob_storage_down():
    (port,) = free_ports(1)
    s = AzureBlobStore(f"http://127.0.0.1:{port}/devstoreaccount1", "c", "a2V5", retry_total=0)
    try:
        with pytest.raises(StorageUnavailable):
            await probe_blob(s, "ev/x.mp4")
    finally:
        await s.close()


class _FailsAfter:
    """The real store, with its reads failing after ``n`` (fault injection: storage going away mid-probe)."""

    def __init__(self, store: AzureBlobStore, n: int) -> None:
        self._store, self._left = store, n
        self.container = store.container

    async def info(self, name):
        return await self._store.info(name)

    async def read(self, name, offset=0, length=None):
        if self._left <= 0:
            raise StorageUnavailable("read: storage unreachable (injected)")
        self._left -= 1
        return await self._store.read(name, offset, length)


async def test_storage_failing_mid_probe_is_not_a_media_error(store, clips):
    await store.put("ev/big.mp4", clips["big"].read_bytes(), "video/mp4")
    for n in (0, 1, 2):  # on the magic bytes, on the header, on the last GOP
        with pytest.raises(StorageUnavailable):
            await probe_blob(_FailsAfter(store, n), "ev/big.mp4")  # type: ignore[arg-type]
