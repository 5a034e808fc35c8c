"""The encoded-frame tap on aiortc's receiver (private API, pinned to aiortc 1.16).

aiortc has no public hook for encoded frames. Each :class:`aiortc.rtcrtpreceiver.RTCRtpReceiver` owns a
``queue.Queue`` (``_RTCRtpReceiver__decoder_queue``) into which ``_handle_rtp_packet`` puts
``(codec, JitterFrame)`` for every complete frame the jitter buffer releases; a decoder thread takes them
out. Wrapping ``put`` of that queue (from the ``track`` event, which fires before the first packet) gives us
every encoded access unit:

* ``JitterFrame.data``: an H.264 access unit in Annex B (4-byte start codes), one VP8 frame, or one Opus packet;
* ``JitterFrame.timestamp``: the RTP timestamp rebased to start at 0 (90 kHz video, 48 kHz audio).

What the wrapper forwards to the real ``put`` decides what aiortc decodes:

* ``record``: tapped, never forwarded, so the record track is never decoded (the big CPU saving); with
  ``decode=True`` (benchmark baseline only, ``PeerConfig.decode_record``) it is tapped *and* forwarded, so
  aiortc decodes it exactly as on its default path;
* ``audio``: tapped; with ``on_audio`` the Opus packet is also decoded right here (libopus, mono, ~40 us) and
  never forwarded, otherwise it is forwarded to aiortc's decoder. Inline decoding saves, per 20 ms packet, a
  thread hand-off, aiortc's s16-stereo resample, a ``run_coroutine_threadsafe`` loop wake-up and a queue
  round trip (measured with ``scripts/bench ingest``);
* ``detect``: forwarded only (its arrival time is remembered so decoded frames carry it);
* ``blackhole``: neither; nothing is decoded and no queue grows.

The ``None`` sentinel that aiortc puts to stop the decoder thread is always forwarded, otherwise
``receiver.stop()`` would hang on ``thread.join()``.

Loss: a lost packet stalls aiortc's video jitter buffer (capacity 512 packets) until it overruns; it then
drops frames and returns ``pli_flag=True`` from ``JitterBuffer.add`` (also on a large sequence jump). We wrap
``add`` of the record receiver's jitter buffer and report that as :meth:`CameraSink.on_broken`.

``check_aiortc_internals()`` fails loudly, naming the attribute, if any of these private names move.
"""

from __future__ import annotations

import functools
import inspect
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from hub.ingest.aiortc_names import (
    RECEIVER_DECODER_QUEUE,
    RECEIVER_DECODER_THREAD,
    RECEIVER_ESTIMATOR,
    RECEIVER_JITTER_BUFFER,
    RECEIVER_RTCP_SSRC,
    RECEIVER_RTX_SSRC,
    RECEIVER_SEND_PLI,
    RECEIVER_SEND_RTCP,
    TESTED_AIORTC_VERSION,
    TRACK_QUEUE,
    AiortcInternalsError,
)
from hub.media.frames import AUDIO_TIME_BASE, VIDEO_TIME_BASE, AudioChunk, AudioLevel, EncodedFrame
from hub.media.h264 import ParameterSetCache, h264_is_keyframe, vp8_is_keyframe, vp8_keyframe_size

if TYPE_CHECKING:
    import numpy as np

logger = logging.getLogger(__name__)

Role = Literal["record", "detect", "audio", "blackhole"]

def check_aiortc_internals(receiver: Any | None = None) -> None:
    """Raise :class:`AiortcInternalsError` naming the first private aiortc name that is missing or changed.

    Without ``receiver`` a throw-away ``RTCRtpReceiver`` is built on a stub transport (cheap, no sockets).
    """
    try:
        import aiortc
        from aiortc import rtcrtpreceiver, rtp
        from aiortc.jitterbuffer import JitterBuffer, JitterFrame
    except ImportError as exc:  # pragma: no cover - aiortc is a hub dependency
        raise AiortcInternalsError(f"aiortc is not importable: {exc}") from exc

    def need(obj: Any, name: str, where: str) -> Any:
        if not hasattr(obj, name):
            raise AiortcInternalsError(
                f"aiortc {getattr(aiortc, '__version__', '?')}: {where} has no attribute {name!r}; the encoded "
                f"tap was written against aiortc {TESTED_AIORTC_VERSION} (see hub/ingest/tap.py)"
            )
        return getattr(obj, name)

    for name in ("pack_remb_fci", "RemoteStreamTrack", "RTCRtpReceiver", "decoder_worker"):
        need(rtcrtpreceiver, name, "aiortc.rtcrtpreceiver")
    for name in ("RtcpPsfbPacket", "RTCP_PSFB_APP", "RTCP_PSFB_PLI"):
        need(rtp, name, "aiortc.rtp")
    need(JitterBuffer, "add", "aiortc.jitterbuffer.JitterBuffer")

    frame = JitterFrame(data=b"\x00", timestamp=0)
    need(frame, "data", "aiortc.jitterbuffer.JitterFrame")
    need(frame, "timestamp", "aiortc.jitterbuffer.JitterFrame")

    if receiver is None:

        class _StubTransport:
            state = "new"

        receiver = rtcrtpreceiver.RTCRtpReceiver("video", _StubTransport())  # type: ignore[arg-type]
    where = "RTCRtpReceiver"
    q = need(receiver, RECEIVER_DECODER_QUEUE, where)
    need(q, "put", f"{where}.{RECEIVER_DECODER_QUEUE}")
    need(receiver, RECEIVER_DECODER_THREAD, where)
    jb = need(receiver, RECEIVER_JITTER_BUFFER, where)
    need(jb, "add", f"{where}.{RECEIVER_JITTER_BUFFER}")
    need(receiver, RECEIVER_ESTIMATOR, where)
    need(receiver, RECEIVER_RTCP_SSRC, where)
    need(receiver, RECEIVER_RTX_SSRC, where)
    need(receiver, RECEIVER_SEND_PLI, where)
    need(receiver, RECEIVER_SEND_RTCP, where)
    need(receiver, "getSynchronizationSources", where)

    track = rtcrtpreceiver.RemoteStreamTrack(kind="video")
    need(track, TRACK_QUEUE, "RemoteStreamTrack")

    _check_receiver_source()
    # The lean receive path's own names are checked by hub.ingest.fastpath.check_fastpath_internals when it is
    # installed (and by tests/test_ingest_fastpath.py).


@functools.lru_cache(maxsize=1)
def _check_receiver_source() -> None:
    """The semantics the tap relies on, checked in aiortc's source (once per process)."""
    from aiortc import rtcrtpreceiver

    try:
        src = inspect.getsource(rtcrtpreceiver.RTCRtpReceiver._handle_rtp_packet)
        worker = inspect.getsource(rtcrtpreceiver.decoder_worker)
    except (OSError, TypeError) as exc:  # pragma: no cover - source always ships with the wheel
        raise AiortcInternalsError(f"cannot read aiortc source to verify the tap: {exc}") from exc
    for needle, what in (
        ("self.__jitter_buffer.add(packet)", "JitterBuffer.add called per packet"),
        ("self.__timestamp_mapper.map(", "timestamps rebased before the decoder queue"),
        ("self.__decoder_queue.put((codec, encoded_frame))", "(codec, JitterFrame) put on the decoder queue"),
        ("self.__remote_bitrate_estimator is not None", "REMB estimator can be switched off with None"),
        ("pli_flag", "jitter buffer loss signalled as pli_flag"),
    ):
        if needle not in src:
            raise AiortcInternalsError(
                f"aiortc RTCRtpReceiver._handle_rtp_packet changed: expected {needle!r} ({what}); "
                f"the encoded tap was written against aiortc {TESTED_AIORTC_VERSION}"
            )
    if "input_q.get()" not in worker or "task is None" not in worker:
        raise AiortcInternalsError("aiortc decoder_worker changed: expected input_q.get() and a None sentinel")


# --------------------------------------------------------------------------------------------------------
# Bitstream: keyframes, SPS/PPS cache and resolution come from hub/media/h264.py
# --------------------------------------------------------------------------------------------------------


class H264Access:
    """Keyframe flag, SPS/PPS repair of IDRs lacking them, and resolution, for one H.264 stream."""

    def __init__(self) -> None:
        self.cache = ParameterSetCache()

    @property
    def width(self) -> int | None:
        res = self.cache.resolution
        return res[0] if res else None

    @property
    def height(self) -> int | None:
        res = self.cache.resolution
        return res[1] if res else None

    def process(self, data: bytes) -> tuple[bytes, bool]:
        """Return (data with parameter sets ensured on IDRs, keyframe).

        An IDR that cannot be made self-contained (no SPS/PPS seen yet) is not flagged as a keyframe: a clip
        could not start on it.
        """
        data = self.cache.fix(data)
        if not h264_is_keyframe(data):
            return data, False
        return data, self.cache.sps is not None and self.cache.pps is not None


class OpusMonoDecoder:
    """libopus through PyAV, asked for 48 kHz mono: one Opus packet -> float32 samples in [-1, 1]."""

    sample_rate = 48000

    def __init__(self) -> None:
        import av

        self._av = av
        self.ctx = av.CodecContext.create("libopus", "r")
        self.ctx.sample_rate = self.sample_rate
        self.ctx.layout = "mono"

    def decode(self, data: bytes) -> list[np.ndarray]:
        return [audio_frame_to_mono(f) for f in self.ctx.decode(self._av.Packet(data))]


# --------------------------------------------------------------------------------------------------------
# Stats
# --------------------------------------------------------------------------------------------------------


@dataclass
class TrackStats:
    """Counters for one tapped track, with a short window for measured fps / bitrate."""

    window_s: float = 5.0
    frames: int = 0
    bytes: int = 0
    keyframes: int = 0
    broken: int = 0
    forwarded: int = 0
    last_frame_t: float | None = None
    last_keyframe_t: float | None = None
    last_keyframe_gap_s: float | None = None
    max_keyframe_gap_s: float | None = None
    _recent: deque = field(default_factory=deque, repr=False)

    def add(self, t: float, size: int, keyframe: bool) -> None:
        self.frames += 1
        self.bytes += size
        self.last_frame_t = t
        self._recent.append((t, size))
        cutoff = t - self.window_s
        while self._recent and self._recent[0][0] < cutoff:
            self._recent.popleft()
        if keyframe:
            self.keyframes += 1
            if self.last_keyframe_t is not None:
                gap = t - self.last_keyframe_t
                self.last_keyframe_gap_s = gap
                if self.max_keyframe_gap_s is None or gap > self.max_keyframe_gap_s:
                    self.max_keyframe_gap_s = gap
            self.last_keyframe_t = t

    @property
    def fps(self) -> float:
        if len(self._recent) < 2:
            return 0.0
        span = self._recent[-1][0] - self._recent[0][0]
        return (len(self._recent) - 1) / span if span > 0 else 0.0

    @property
    def bitrate_kbps(self) -> float:
        if len(self._recent) < 2:
            return 0.0
        span = self._recent[-1][0] - self._recent[0][0]
        if span <= 0:
            return 0.0
        return sum(s for _, s in list(self._recent)[1:]) * 8 / span / 1000

    def as_dict(self) -> dict[str, Any]:
        return {
            "frames": self.frames,
            "bytes": self.bytes,
            "keyframes": self.keyframes,
            "broken": self.broken,
            "forwarded": self.forwarded,
            "fps": round(self.fps, 2),
            "bitrate_kbps": round(self.bitrate_kbps, 1),
            "last_keyframe_gap_s": None if self.last_keyframe_gap_s is None else round(self.last_keyframe_gap_s, 3),
            "max_keyframe_gap_s": None if self.max_keyframe_gap_s is None else round(self.max_keyframe_gap_s, 3),
            "last_frame_t": self.last_frame_t,
            "last_keyframe_t": self.last_keyframe_t,
        }


# --------------------------------------------------------------------------------------------------------
# The tap
# --------------------------------------------------------------------------------------------------------

_LEVELS_FRESH_S = 1.0  # without an RFC 6464 level for this long, the tap decodes Opus again

_CODEC_NAMES = {"h264": "h264", "vp8": "vp8", "opus": "opus"}


class EncodedTap:
    """Installed on one ``RTCRtpReceiver``; see the module docstring for what each role does.

    ``on_frame(EncodedFrame)`` receives record video / audio frames; ``on_audio(AudioChunk)`` (audio role)
    receives the packet decoded inline, mono float32; ``on_broken()`` is called when the
    record track's jitter buffer dropped data; ``on_stream_info(dict)`` when the record codec/resolution
    becomes known or changes. Callbacks run on the event loop thread inside aiortc's packet handler: keep
    them short and never raise (exceptions are logged and swallowed).
    """

    def __init__(
        self,
        receiver: Any,
        role: Role,
        *,
        on_frame: Callable[[EncodedFrame], None] | None = None,
        on_broken: Callable[[], None] | None = None,
        on_stream_info: Callable[[dict[str, Any]], None] | None = None,
        on_audio: Callable[[AudioChunk], None] | None = None,
        kind: str | None = None,
        clock: Callable[[], float] = time.time,
        decode: bool = False,
    ) -> None:
        check_aiortc_internals(receiver)
        self.receiver = receiver
        self.role: Role = role
        self.decode = decode and role == "record"  # naive baseline: also forward record frames to the decoder
        self.kind = kind or (receiver.track.kind if receiver.track is not None else "video")
        self.on_frame = on_frame
        self.on_broken = on_broken
        self.on_stream_info = on_stream_info
        self.clock = clock
        self.decoded = 0  # audio chunks decoded inline and delivered to on_audio
        self._opus: OpusMonoDecoder | None = None
        if role == "audio" and on_audio is not None:
            try:
                self._opus = OpusMonoDecoder()
            except Exception:
                logger.warning("tap: no inline Opus decoder, audio goes through aiortc's decoder", exc_info=True)
        self.on_audio = on_audio if self._opus is not None else None
        self.stats = TrackStats()
        self.first_frame_t: float | None = None
        self.codec: str | None = None
        self.width: int | None = None
        self.height: int | None = None
        self.broken = False  # True from a loss until the next keyframe
        self._h264 = H264Access()
        self._arrivals: dict[int, float] = {}  # rebased timestamp -> arrival (detect/audio)
        self._arrival_order: deque[int] = deque()
        self._info_sent: tuple | None = None
        self._audio_delay_s = 0.0
        self.levels = 0  # RFC 6464 levels delivered (audio)
        self._levels_at = float("-inf")  # when the last one arrived: while fresh, Opus is not decoded
        self._level_hooked = False
        self._on_level: Callable[[AudioLevel], None] | None = None

        q = getattr(receiver, RECEIVER_DECODER_QUEUE)
        self._queue = q
        self._orig_put = q.put
        q.put = self.deliver  # instance attribute shadows queue.Queue.put

        self._jb = getattr(receiver, RECEIVER_JITTER_BUFFER)
        self._orig_jb_add = None
        if role == "record":
            self._orig_jb_add = self._jb.add
            self._jb.add = self._jb_add
        if self.kind == "audio":
            # aiortc's audio jitter buffer releases a frame only once `prefetch` later frames are there.
            prefetch = getattr(self._jb, "_prefetch", 0) or 0
            self._audio_delay_s = prefetch * 0.020

    # -- hooks -------------------------------------------------------------------------------------

    def _jb_add(self, packet: Any) -> Any:
        result = self._orig_jb_add(packet)  # type: ignore[misc]
        try:
            if result[0]:
                self._mark_broken("jitter buffer overrun / reset")
        except Exception:
            logger.exception("tap: loss hook failed")
        return result

    def deliver(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        """Take one ``(codec, JitterFrame)`` from aiortc's receiver (or from the lean path, which calls this
        directly): buffer it, and forward it to aiortc's decoder when the track's role needs decoding."""
        if item is None:  # decoder stop sentinel: always forward or receiver.stop() hangs
            self._orig_put(item, block, timeout)
            return
        try:
            codec, jframe = item
            forward = self._handle(codec, jframe)
        except Exception:
            logger.exception("tap: failed to handle a %s frame", self.role)
            forward = self.role in ("audio", "detect") or self.decode
        if forward:
            self.stats.forwarded += 1
            self._orig_put(item, block, timeout)

    def _mark_broken(self, why: str) -> None:
        self.stats.broken += 1
        self.broken = True
        logger.info("tap(%s): data lost (%s), broken until next keyframe", self.role, why)
        if self.on_broken is not None:
            try:
                self.on_broken()
            except Exception:
                logger.exception("tap: on_broken failed")

    def _remember_arrival(self, ts: int, t: float) -> None:
        self._arrivals[ts] = t
        self._arrival_order.append(ts)
        while len(self._arrival_order) > 128:
            self._arrivals.pop(self._arrival_order.popleft(), None)

    def arrival_time(self, pts: int | None) -> float:
        """Arrival time of the encoded frame whose rebased timestamp is ``pts`` (now if unknown)."""
        if pts is not None:
            t = self._arrivals.get(pts)
            if t is not None:
                return t
            if self._arrival_order:  # e.g. a decoder that shifted pts: extrapolate from the latest frame
                last = self._arrival_order[-1]
                rate = 48000 if self.kind == "audio" else 90000
                return self._arrivals[last] + (pts - last) / rate
        return self.clock()

    def _handle(self, codec: Any, jframe: Any) -> bool:
        now = self.clock()
        if self.first_frame_t is None:
            self.first_frame_t = now
        name = _CODEC_NAMES.get(str(getattr(codec, "name", "")).lower())
        data: bytes = jframe.data
        ts: int = jframe.timestamp
        if self.role == "blackhole":
            self.stats.add(now, len(data), False)
            return False
        if self.role == "detect":
            self.codec = name
            self._remember_arrival(ts, now)
            keyframe = False
            if name == "h264":
                keyframe = h264_is_keyframe(data)
            elif name == "vp8":
                keyframe = vp8_is_keyframe(data)
            self.stats.add(now, len(data), keyframe)
            return True
        if self.role == "audio":
            self.codec = name
            t = now - self._audio_delay_s
            self._remember_arrival(ts, t)
            self.stats.add(now, len(data), False)
            if name == "opus" and self.on_frame is not None:
                self._emit(
                    EncodedFrame(kind="audio", codec="opus", data=data, pts=ts, time_base=AUDIO_TIME_BASE, t=t)
                )
            if now - self._levels_at < _LEVELS_FRESH_S:
                return False  # the sender's own levels feed the trigger: nothing to decode
            if self._opus is None:
                return True  # aiortc decodes it; CameraPeer reads the decoded track
            if name == "opus":
                self._decode_audio(data, t)
            return False
        # record
        if name not in ("h264", "vp8"):
            logger.warning("tap: record track carries unsupported codec %r; dropped", getattr(codec, "name", codec))
            return self.decode
        keyframe = False
        if name == "h264":
            data, keyframe = self._h264.process(data)
            width, height = self._h264.width, self._h264.height
        else:
            keyframe = vp8_is_keyframe(data)
            size = vp8_keyframe_size(data) if keyframe else None
            if size:
                self.width, self.height = size
            width, height = self.width, self.height
        self.codec = name
        self.width, self.height = width, height
        if keyframe:
            self.broken = False
        self.stats.add(now, len(data), keyframe)
        info = (name, width, height)
        if info != self._info_sent and width and height:
            self._info_sent = info
            if self.on_stream_info is not None:
                try:
                    self.on_stream_info({"codec": name, "width": width, "height": height})
                except Exception:
                    logger.exception("tap: on_stream_info failed")
        if self.on_frame is not None:
            self._emit(
                EncodedFrame(
                    kind="video",
                    codec=name,  # type: ignore[arg-type]
                    data=data,
                    pts=ts,
                    time_base=VIDEO_TIME_BASE,
                    t=now,
                    keyframe=keyframe,
                    width=width,
                    height=height,
                )
            )
        return self.decode  # never decoded unless the naive baseline asked for it

    def _decode_audio(self, data: bytes, t: float) -> None:
        try:
            chunks = self._opus.decode(data)  # type: ignore[union-attr]
        except Exception as exc:  # noqa: BLE001 - a corrupt packet must not stop the stream
            logger.debug("tap: Opus decode failed: %s", exc)
            return
        for samples in chunks:
            self.decoded += 1
            try:
                self.on_audio(AudioChunk(samples=samples, sample_rate=OpusMonoDecoder.sample_rate, t=t))  # type: ignore[misc]
            except Exception:
                logger.exception("tap: on_audio failed")

    def _emit(self, frame: EncodedFrame) -> None:
        try:
            self.on_frame(frame)  # type: ignore[misc]
        except Exception:
            logger.exception("tap: on_frame failed")

    # -- lifecycle ---------------------------------------------------------------------------------

    def tap_levels(self, on_level: Callable[[AudioLevel], None], hook: bool = True) -> None:
        """Audio: deliver each RTP packet's RFC 6464 level (``ssrc-audio-level``, which aiortc negotiates and
        browsers fill in) to ``on_level``. While levels arrive the Opus packets are stored but never decoded, which
        was a third of the hub's CPU per camera; a sender without the extension falls back to decoding.
        ``hook=False``: the caller's own packet handler (``hub.ingest.opus_fastpath``) calls :meth:`deliver_level`."""
        self._on_level = on_level
        if not hook:
            return
        receiver = self.receiver
        original = receiver._handle_rtp_packet

        async def handle(packet: Any, arrival_time_ms: int) -> None:
            level = packet.extensions.audio_level
            if level is not None:
                self.deliver_level(level[1])
            await original(packet, arrival_time_ms)

        receiver._handle_rtp_packet = handle  # instance attribute shadows the method (pinned aiortc)
        self._level_hooked = True

    def deliver_level(self, level: int) -> None:
        """One packet's RFC 6464 level (0-127, in -dBov) to the ``on_level`` given to :meth:`tap_levels`."""
        if self._on_level is None:  # nobody listens: keep decoding Opus for on_audio instead
            return
        now = self.clock()
        self._levels_at = now
        self.levels += 1
        try:
            self._on_level(AudioLevel(dbfs=-float(level), t=now))
        except Exception:
            logger.exception("tap: on_audio_level failed")

    def set_fast_release(self) -> None:
        """Audio frames now reach the tap as their packet arrives (no jitter-buffer prefetch to subtract)."""
        self._audio_delay_s = 0.0

    def remove(self) -> None:
        """Restore aiortc's own ``put`` / ``add`` (the tap stops seeing frames)."""
        if self._level_hooked:
            try:
                del self.receiver._handle_rtp_packet
            except AttributeError:
                pass
        try:
            del self._queue.put
        except AttributeError:
            pass
        if self._orig_jb_add is not None:
            try:
                del self._jb.add
            except AttributeError:
                pass


# --------------------------------------------------------------------------------------------------------
# Decoded-frame conversion shared by every ingest source (WebRTC detect/audio tracks, file/RTSP cameras)
# --------------------------------------------------------------------------------------------------------

_Y_FORMATS = frozenset({"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "nv12", "nv21", "gray"})


def video_frame_to_luma(frame: Any) -> np.ndarray:
    """The luma plane of a decoded ``av.VideoFrame`` as a contiguous uint8 (height, width) array.

    Planar YUV / NV12 / gray: the Y plane is copied out directly (no colour conversion); anything else goes
    through swscale's ``gray`` conversion.
    """
    import numpy as np

    if frame.format.name in _Y_FORMATS:
        plane = frame.planes[0]
        h, w = frame.height, frame.width
        buf = np.frombuffer(plane, dtype=np.uint8)
        return np.ascontiguousarray(buf.reshape(-1, plane.line_size)[:h, :w])
    return frame.to_ndarray(format="gray")


_SAMPLE_SCALE = {"s16": 32768.0, "s16p": 32768.0, "s32": 2147483648.0, "s32p": 2147483648.0, "u8": None}


def audio_frame_to_mono(frame: Any) -> np.ndarray:
    """Mono float32 samples in [-1, 1] from a decoded ``av.AudioFrame`` (packed or planar, any channel count)."""
    import numpy as np

    fmt = frame.format.name
    if fmt == "s16" and len(frame.layout.channels) == 1:  # the inline Opus decoder's output: skip to_ndarray
        pcm = np.frombuffer(frame.planes[0], dtype=np.int16, count=frame.samples)
        return pcm.astype(np.float32) * np.float32(1.0 / 32768.0)
    arr = frame.to_ndarray()
    channels = len(frame.layout.channels) or 1
    if frame.format.is_planar:
        data = arr.reshape(channels, -1)
    else:
        data = arr.reshape(-1, channels).T
    if fmt in ("u8", "u8p"):
        data = (data.astype(np.float32) - 128.0) / 128.0
    elif fmt in _SAMPLE_SCALE:
        data = data.astype(np.float32) / np.float32(_SAMPLE_SCALE[fmt])
    else:  # flt, fltp, dbl, dblp
        data = data.astype(np.float32)
    mono = data[0] if channels == 1 else data.mean(axis=0)
    return np.ascontiguousarray(mono, dtype=np.float32)
