"""What a clip really is, read from its container with PyAV: never trusted from the hub.

``probe_blob`` lets PyAV read the blob through a file-like object that fetches byte ranges on demand: the hub
writes faststart MP4s (moov first), so the header and the last GOP (read to prove the data is really there)
cost a small part of the blob. ``probe_file`` does the same on a local file.

Only MP4 and WebM/Matroska are accepted, recognised by their magic bytes before FFmpeg sees anything: FFmpeg's
format probing would otherwise open dozens of demuxers on hostile input.
"""

from __future__ import annotations

import asyncio
import io
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import av

from .blob import BlobNotFound, BlobStore, StorageError

# Reads from the blob are rounded up to this many bytes; FFmpeg's own buffer asks for 32 KiB at a time.
CHUNK = 64 * 1024
# The first read takes this many chunks (128 KiB: the header of a faststart clip; all of a small one), and reads
# that continue the previous one double up to MAX_READ_AHEAD_CHUNKS (512 KiB).
HEAD_CHUNKS = 2
PROBE_HEAD_BYTES = HEAD_CHUNKS * CHUNK
MAX_READ_AHEAD_CHUNKS = 8
# The header and the last GOP must lie within this much of the blob; past it the file is not worth probing.
MAX_PROBE_BYTES = 64 * 1024 * 1024
# How far the demuxed data may stop short of the header's duration before the file counts as truncated
# (a last frame's duration, rounding of time bases).
_END_TOLERANCE_S = 0.5
# Each blob read waits at most this long (the store's own timeouts normally fire first).
_READ_TIMEOUT_S = 60.0

_EBML_MAGIC = b"\x1a\x45\xdf\xa3"

# probe_blob's PyAV work blocks a thread while the event loop fetches each range, so it gets threads of its own:
# on the loop's default executor, a few probes in flight would hold every thread while the storage SDK's
# requests wait for that same executor (aiohttp reads .netrc and the proxy environment there): a deadlock until
# the read timeout. More probes than threads queue here, without starving anything else.
PROBE_THREADS = 8
_executor: ThreadPoolExecutor | None = None


def _probe_executor() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=PROBE_THREADS, thread_name_prefix="probe")
    return _executor


class MediaError(Exception):
    """Corrupt, truncated, empty, not an MP4/WebM, or without a video stream."""


@dataclass(frozen=True)
class MediaInfo:
    container: str  # "mp4" | "webm"
    duration_s: float
    video_codec: str | None  # "h264", "vp8", ...
    width: int | None
    height: int | None
    audio_codec: str | None


@dataclass
class ProbeStats:
    """What a probe_blob call read from storage (for tests and logs)."""

    blob_size: int = 0
    bytes_fetched: int = 0
    reads: int = 0
    ranges: list[tuple[int, int]] = field(default_factory=list)


def sniff_container(head: bytes) -> str:
    """'mp4' or 'webm' from the first bytes, else MediaError."""
    if len(head) >= 8 and head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip"):
        return "mp4"
    if head[:4] == _EBML_MAGIC:
        return "webm"
    if not head:
        raise MediaError("empty file")
    raise MediaError("not an MP4 or WebM file (unknown leading bytes)")


_FFMPEG_FORMAT = {"mp4": "mp4", "webm": "matroska"}


def _inspect(source: str | BinaryIO, container_kind: str) -> MediaInfo:
    """Open with PyAV, read the header, then prove the data reaches the header's duration."""
    try:
        with av.open(source, mode="r", format=_FFMPEG_FORMAT[container_kind]) as ctr:
            video = ctr.streams.video[0] if ctr.streams.video else None
            audio = ctr.streams.audio[0] if ctr.streams.audio else None
            if video is None:
                raise MediaError("no video stream")
            header_s = _header_duration(ctr)
            # The video track's own length where the container gives it (a longer audio track is no truncation).
            video_s = float(video.duration * video.time_base) if video.duration and video.time_base else header_s
            data_end_s = _data_end(ctr, video, video_s)
            if video_s is not None and data_end_s + _END_TOLERANCE_S < video_s:
                raise MediaError(f"truncated: the video data ends at {data_end_s:.2f} s of the {video_s:.2f} s "
                                 "the header declares")
            # Frames past what the header claims count too: a header that under-declares must not shrink the
            # duration that is charged.
            duration = max(header_s or 0.0, data_end_s)
            if not duration or duration <= 0 or not math.isfinite(duration):
                raise MediaError("no duration: the file holds no frames")
            vctx = video.codec_context
            return MediaInfo(
                container=container_kind,
                duration_s=round(float(duration), 3),
                video_codec=video.codec_context.name if vctx is not None else None,
                width=int(vctx.width) if vctx is not None and vctx.width else None,
                height=int(vctx.height) if vctx is not None and vctx.height else None,
                audio_codec=audio.codec_context.name if audio is not None and audio.codec_context else None,
            )
    except MediaError:
        raise
    except StorageError:
        raise
    except (av.FFmpegError, ValueError, OSError, EOFError, IndexError) as e:
        raise MediaError(f"unreadable {container_kind}: {e}") from e


def _header_duration(ctr: Any) -> float | None:
    # The container's own duration (mvhd / Matroska Segment Info) or the longest stream's, in seconds.
    if ctr.duration:
        return float(ctr.duration) / av.time_base
    best: float | None = None
    for s in ctr.streams:
        if s.duration and s.time_base:
            d = float(s.duration * s.time_base)
            best = d if best is None else max(best, d)
    return best


def _data_end(ctr: Any, video: Any, expected_s: float | None) -> float:
    """The end time (s) of the last video packet that can really be read.

    With an expected length, seek to the keyframe before its last second and demux to the end from there: a
    truncated file has no packets there (or a damaged one). Without one (a live-written WebM), demux it all.
    """
    tb = video.time_base
    if expected_s is not None and expected_s > 1.0 and tb:
        target = int((expected_s - 1.0) / float(tb))
        try:
            ctr.seek(target, backward=True, any_frame=False, stream=video)
        except av.FFmpegError:
            pass  # not seekable this way: fall through and demux from wherever we are
    end = 0.0
    start = None
    for packet in ctr.demux(video):
        if packet.size == 0 or packet.pts is None:
            continue  # the demuxer's end-of-stream flush packet
        if packet.is_corrupt:
            raise MediaError("corrupt video packet")
        t0 = float(packet.pts * tb)
        start = t0 if start is None else min(start, t0)
        end = max(end, t0 + float((packet.duration or 0) * tb))
    first = float(video.start_time * tb) if video.start_time is not None else 0.0
    return end - first if start is not None else 0.0


def probe_file(path: Path) -> MediaInfo:
    """MediaInfo of a local clip; MediaError when it is not a usable MP4/WebM."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError as e:
        raise MediaError(f"cannot read {path}: {e}") from e
    kind = sniff_container(head)
    return _inspect(str(path), kind)


class _BlobReader(io.RawIOBase):
    """A seekable, read-only file over a blob: FFmpeg's reads become ranged GETs, cached in CHUNK-sized pieces.

    PyAV calls read()/seek() synchronously from a worker thread; each fetch is scheduled on the event loop that
    owns the store's client and waited for here. A storage error is kept and re-raised by probe_blob after
    FFmpeg gives up, so "storage down" is never reported as "corrupt file".
    """

    def __init__(self, store: BlobStore, name: str, size: int, loop: asyncio.AbstractEventLoop,
                 stats: ProbeStats) -> None:
        super().__init__()
        self._store, self._name, self._size, self._loop, self._stats = store, name, size, loop, stats
        self._pos = 0
        self._chunks: dict[int, bytes] = {}
        self._last_idx, self._last_span = -1, 1  # the last chunk fetched, and how many chunks that read took
        self.error: StorageError | None = None
        self.over_budget = False

    def seed(self, head: bytes) -> None:
        """Bytes from offset 0 that the caller already holds (only whole chunks, or the whole blob, are kept)."""
        whole = len(head) >= self._size
        for i in range(-(-len(head) // CHUNK)):
            piece = head[i * CHUNK: (i + 1) * CHUNK]
            if len(piece) == CHUNK or whole:
                self._chunks[i] = piece
                self._last_idx, self._last_span = i, i + 1

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            pos = self._size + offset
        else:
            raise ValueError(f"bad whence {whence}")
        self._pos = max(0, pos)
        return self._pos

    def readinto(self, b: Any) -> int:
        want = len(b)
        if self.error is not None or self._pos >= self._size or want == 0:
            return 0
        out = bytearray()
        while len(out) < want and self._pos < self._size:
            idx = self._pos // CHUNK
            chunk = self._chunk(idx)
            if not chunk:
                break
            lo = self._pos - idx * CHUNK
            piece = chunk[lo: lo + (want - len(out))]
            if not piece:
                break
            out += piece
            self._pos += len(piece)
        b[: len(out)] = out
        return len(out)

    def _chunk(self, idx: int) -> bytes:
        if idx in self._chunks:
            return self._chunks[idx]
        # Each request costs far more than its bytes (a round trip, the SDK's pipeline, the service's work), so
        # reads go ahead: the first takes the head (the magic bytes and a faststart header, or the whole of a
        # small clip) and a read that continues the previous one takes twice as much as that one did.
        if idx == 0:
            span = HEAD_CHUNKS
        elif idx - 1 in self._chunks and idx - 1 == self._last_idx:
            span = min(MAX_READ_AHEAD_CHUNKS, self._last_span * 2)
        else:
            span = 1
        offset = idx * CHUNK
        length = min(CHUNK * span, self._size - offset)
        if self._stats.bytes_fetched + length > MAX_PROBE_BYTES:
            length = min(CHUNK, self._size - offset)
            if self._stats.bytes_fetched + length > MAX_PROBE_BYTES:
                self.over_budget = True  # EOF for FFmpeg; probe_blob reports it
                return b""
        fut = asyncio.run_coroutine_threadsafe(self._store.read(self._name, offset, length), self._loop)
        try:
            data = fut.result(timeout=_READ_TIMEOUT_S)
        except StorageError as e:
            self.error = e
            return b""
        except TimeoutError:
            fut.cancel()
            self.error = StorageError(f"read {self._name}: no answer in {_READ_TIMEOUT_S:.0f} s")
            return b""
        self._stats.bytes_fetched += len(data)
        self._stats.reads += 1
        self._stats.ranges.append((offset, len(data)))
        pieces = max(1, -(-len(data) // CHUNK))
        for i in range(pieces):
            self._chunks[idx + i] = data[i * CHUNK: (i + 1) * CHUNK]
        self._last_idx, self._last_span = idx + pieces - 1, pieces
        return self._chunks[idx]


async def probe_blob(store: BlobStore, name: str, *, stats: ProbeStats | None = None,
                     size: int | None = None, head: bytes | None = None) -> MediaInfo:
    """MediaInfo of a blob, reading only the byte ranges PyAV asks for.

    Raises BlobNotFound when there is no such blob, StorageUnavailable/StorageError when storage fails, and
    MediaError when the bytes are not a usable MP4/WebM. ``stats`` (optional) receives what was read.
    ``size``: the blob's size when the caller has just read its properties (saves one request); ``head``: its
    first bytes when the caller fetched them already (``PROBE_HEAD_BYTES``, what the first read would take).
    """
    st = stats if stats is not None else ProbeStats()
    if size is None:
        info = await store.info(name)
        if info is None:
            raise BlobNotFound(f"probe {name}: no such blob")
        size = info.size
    st.blob_size = size
    if size == 0:
        raise MediaError("empty file")
    loop = asyncio.get_running_loop()
    reader = _BlobReader(store, name, size, loop, st)
    if head is not None and size is not None:
        reader.seed(head[:size])

    def work() -> MediaInfo:
        try:
            head = reader.read(16) or b""
            if reader.error is None:
                kind = sniff_container(head)
                reader.seek(0)
                return _inspect(reader, kind)  # type: ignore[arg-type]  # a RawIOBase is a binary file
        except MediaError:
            if reader.error is None and reader.over_budget:
                raise MediaError(f"probe would read more than {MAX_PROBE_BYTES} bytes; not a faststart clip?") from None
            if reader.error is None:
                raise
        assert reader.error is not None
        raise reader.error

    result = await loop.run_in_executor(_probe_executor(), work)
    if reader.error is not None:
        raise reader.error
    return result
