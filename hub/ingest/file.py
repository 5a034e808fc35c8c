"""File and RTSP cameras through PyAV: the same ``CameraSink`` contract as a phone.

* The record stream (H.264, H.265 or VP8) is demuxed, never decoded: each packet becomes an ``EncodedFrame``
  with the source's pts *and* dts (B-frames arrive in decode order and are shown in pts order).
  H.264/H.265 from MP4/MKV (``avcC``/``hvcC``, length-prefixed NAL units) is converted to Annex B by hand from
  the extradata, and every keyframe gets the parameter sets prepended (MP4 keeps them out of band only), so a
  clip can start on any keyframe.
* Packets without any timestamp are given one, never dropped: FFmpeg hands over the first packet of an RTSP
  connection (the keyframe, through its H.264 parser) without pts or dts, and a raw Annex B file has none at
  all. Dropping it lost a whole GOP per connect (issue 14). See ``_Stamper``.
* A separate decode of the same video packets feeds ``on_detect`` at ``detect_fps``, downscaled to
  ``detect_width`` (grey). For RTSP an optional ``detect_url`` sub-stream is decoded instead.
* Audio: Opus and AAC packets pass through as ``EncodedFrame`` (clips store them as they are: AAC with the
  source's AudioSpecificConfig in ``config``, pts in samples) *and* are decoded for ``on_audio``; other codecs
  are only decoded for the audio trigger (clips from such sources have no audio track). With the sound trigger
  off (``decode_audio`` false) nothing is decoded at all: decoding AAC was most of the audio cost.
* Detect frames are picked by ``DetectThrottle`` (a schedule of due times, not "skip if closer than 1/fps to
  the last one", which lost ~11 % of a 5 fps sub-stream whose arrival times jitter).
* Live sources get ``open_timeout_s`` (the camera's ``open_timeout_s`` in the config) as FFmpeg's socket
  ``timeout`` and PyAV's open timeout: some cameras take several seconds to answer DESCRIBE.

``realtime=True`` paces a file by its timestamps (the demo camera) and uses the wall clock as ``t``; live
sources (``rtsp://`` etc.) are never paced, ``t`` is arrival time. ``realtime=False`` runs as fast as the sink
takes it with ``t`` = stream time (replays and tests). PyAV blocks, so demuxing runs in a thread; results are
handed to the event loop in batches (one ``call_soon_threadsafe`` per ``FLUSH_S`` or ``MAX_BATCH`` items; a
detect frame, a break or a state change goes at once) behind a semaphore, so a fast file cannot outrun the loop
(at most ``MAX_IN_FLIGHT`` items waiting). One hand-off per packet woke the loop ~45 times a second per RTSP
camera (issue 14, item 7). With a detect sub-stream, the main stream's batches go with the sub-stream's detect
frames (which go at once, 5 a second) instead of waking the loop by themselves (``FileCamera._ride``). A live
source's packets are also *handled* in bursts at those moments (``_Burst``), not one by one as they arrive: work
done right after each wait in FFmpeg's read ran cache-cold at 4-6x the CPU. With a sub-stream they are also *read*
in rounds, one per detect frame (``FileCamera._read_pause``): the reader no longer wakes for every packet, and a
packet that waited in the socket keeps the time it arrived (``_ArrivalClock``).

Cost per packet is kept low (issue 14, item 7): timestamps are converted with the stream's time base as two
integers read once per connection, never ``Fraction`` arithmetic per packet; detect frames are the decoded
picture's Y plane (through a lookup table for limited range, the same bytes swscale's grey gives) instead of a
fresh swscale context per frame (~1 ms each); the sub-stream, small and at 5 fps, is decoded on one thread
(frame threads cost 3x the CPU there and delay each frame by the thread count).

Time ``t`` of a video frame follows its *decode* time plus the stream's reorder delay (the first frame's
pts - dts), so it increases in arrival order as the ring buffer needs, and equals the pts where there are no
B-frames.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import cv2
import numpy as np

from hub.ingest.sink import CameraSink
from hub.ingest.tap import TrackStats, audio_frame_to_mono
from hub.media import h265
from hub.media.frames import AUDIO_TIME_BASE, VIDEO_TIME_BASE, AudioChunk, DetectFrame, EncodedFrame
from hub.media.h264 import ParameterSetCache, avcc_to_annexb, h264_is_keyframe, split_annexb, vp8_keyframe_size

logger = logging.getLogger(__name__)

MAX_IN_FLIGHT = 256
MAX_BATCH = 32  # items per hand-off to the event loop
FLUSH_S = 0.1  # how long a handed-over item may wait for others to share its hand-off
# Record codecs stored as they come (clips are remuxed, never re-encoded).
RECORD_CODECS = ("h264", "hevc", "vp8")
RTSP_PREFIXES = ("rtsp://", "rtsps://")
LIVE_PREFIXES = (*RTSP_PREFIXES, "rtmp://", "http://", "https://", "udp://", "tcp://", "srt://")
# How long opening a live source may take (connect, DESCRIBE, SETUP, first packets) unless the config says.
DEFAULT_OPEN_TIMEOUT_S = 15.0
# A live stream that delivers nothing for this long is dropped and reconnected (PyAV's read timeout).
READ_TIMEOUT_S = 10.0
# A live main stream with a detect sub-stream: its batches ride to the loop with the sub-stream's hand-offs (each
# detect frame goes at once, 1/detect_fps apart) instead of waking the loop by themselves (see ``_ride``). They
# do so while the sub-stream handed something over in the last RIDE_WINDOW_S; a batch parked for PARK_MAX_S
# goes by itself at the main stream's next hand-off.
RIDE_WINDOW_S = 0.5
PARK_MAX_S = 0.3
# Such a main stream is also *read* in rounds: at the live edge (a read that waited CAUGHT_UP_S or more for the
# camera) its reader hands over what it has and sleeps until READ_LEAD_S before the sub-stream's next detect
# frame is due, at most MAX_PAUSE_S (a 1 fps sub-stream must not hold the sound trigger and the live view back
# by a second); what arrives meanwhile waits in the socket and is read back to back (``FileCamera._read_pause``).
CAUGHT_UP_S = 0.005
# _ArrivalClock: a read that waited for the camera and looks less than FRESH_S later than its stream's delay moves
# the delay (drift); one that looks STALE_S or more late may say the camera's clock stepped back.
FRESH_S = 0.025
STALE_S = 0.05
# How far after the packet before it a packet is placed when its estimate would put it at or before that one.
ORDER_TICK_S = 1e-6
READ_LEAD_S = 0.05
MAX_PAUSE_S = 0.25


class FileCameraError(RuntimeError):
    """The source cannot be used (no video, unsupported record codec, cannot open)."""


def _is_live(source: str) -> bool:
    return source.lower().startswith(LIVE_PREFIXES)


def parse_avcc(extradata: bytes) -> tuple[int, list[bytes], list[bytes]]:
    """(NAL length size, SPS list, PPS list) from an ``avcC`` box payload (ISO 14496-15 5.2.4.1)."""
    if len(extradata) < 7 or extradata[0] != 1:
        raise FileCameraError("H.264 extradata is not avcC")
    length_size = (extradata[4] & 3) + 1
    pos = 5
    sps: list[bytes] = []
    pps: list[bytes] = []
    n = extradata[pos] & 0x1F
    pos += 1
    for _ in range(n):
        size = int.from_bytes(extradata[pos : pos + 2], "big")
        sps.append(extradata[pos + 2 : pos + 2 + size])
        pos += 2 + size
    n = extradata[pos]
    pos += 1
    for _ in range(n):
        size = int.from_bytes(extradata[pos : pos + 2], "big")
        pps.append(extradata[pos + 2 : pos + 2 + size])
        pos += 2 + size
    return length_size, sps, pps


class AnnexBConverter:
    """MP4 (avcC/hvcC) or Annex B H.264/H.265 packets -> Annex B access units with parameter sets on every
    keyframe (``convert`` returns the data and whether it is a keyframe the clip writer can start on)."""

    def __init__(self, codec: str, extradata: bytes | None) -> None:
        if codec not in ("h264", "hevc"):
            raise FileCameraError(f"no Annex B conversion for {codec!r}")
        self.codec = codec
        self.cache: ParameterSetCache | h265.ParameterSetCache = (
            ParameterSetCache() if codec == "h264" else h265.ParameterSetCache()
        )
        self.length_size: int | None = None
        seed: list[bytes] = []
        if extradata:
            extradata = bytes(extradata)
            if extradata[0] == 1:
                if codec == "h264":
                    self.length_size, sps, pps = parse_avcc(extradata)
                    seed = sps[:1] + pps[:1]
                else:
                    try:
                        self.length_size, seed = h265.parse_hvcc(extradata)
                    except h265.H265Error as e:
                        raise FileCameraError(str(e)) from e
            else:  # Annex B extradata (MPEG-TS, RTSP sprop-parameter-sets / sprop-vps,sps,pps)
                seed = split_annexb(extradata)
        if seed:
            # feed the parameter sets through the cache (it parses the SPS for the resolution)
            self.cache.fix(b"".join(b"\x00\x00\x00\x01" + n for n in seed))

    @property
    def resolution(self) -> tuple[int, int] | None:
        return self.cache.resolution

    def convert(self, data: bytes) -> tuple[bytes, bool]:
        if self.length_size is not None:
            data = avcc_to_annexb(data, self.length_size)
        cache = self.cache
        data = cache.fix(data)
        if isinstance(cache, ParameterSetCache):
            key = h264_is_keyframe(data) and cache.sps is not None and cache.pps is not None
        else:
            key = h265.is_keyframe(data) and cache.complete
        return data, key


class DetectThrottle:
    """Picks detect frames at ``fps`` on average from a faster or equally fast, jittery stream.

    Frames are taken against a schedule of due times one period apart, not against the last frame taken: a frame
    counts for a due time if it comes no more than half an input frame interval early (it is the nearest frame to
    that time), and a late one does not push the schedule back. The old rule ("skip a frame less than 1/fps after
    the last one taken") dropped every frame of a 5 fps stream that arrived a little early, about 11 % with real
    RTSP jitter. The schedule restarts after a gap of more than a period or a step back in time (a reconnect).
    """

    __slots__ = ("_due", "_interval", "_last", "period")

    def __init__(self, fps: float) -> None:
        self.period = 1.0 / fps if fps > 0 else 0.0
        self._due: float | None = None
        self._last: float | None = None
        self._interval: float | None = None  # smoothed input frame interval

    def take(self, t: float) -> bool:
        """Whether the frame at time ``t`` (seconds, increasing) is one of the detect frames."""
        last, self._last = self._last, t
        if self.period <= 0:
            return False
        if last is not None and t > last:
            d = min(t - last, self.period)  # an outage says nothing about the frame rate
            self._interval = d if self._interval is None else self._interval + 0.1 * (d - self._interval)
        due = self._due
        if due is None or t - due > self.period or t < due - 2 * self.period:
            self._due = t + self.period  # first frame, after a gap, or time went back: start over here
            return True
        slack = min(self._interval or self.period, self.period) / 2
        if t < due - slack:
            return False
        self._due = due + self.period
        return True


def adts_to_raw(data: bytes) -> tuple[bytes, bytes, int] | None:
    """(raw AAC frame, AudioSpecificConfig, sample rate) from one ADTS frame (ISO 13818-7 6.2), or None if
    ``data`` is not a single-block ADTS frame. MPEG-TS sources (udp://, srt://, HLS) carry AAC this way; MP4
    wants the raw frame and the config out of band."""
    if len(data) < 7 or data[0] != 0xFF or data[1] & 0xF6 != 0xF0:
        return None
    profile = data[2] >> 6
    sf_index = (data[2] >> 2) & 0xF
    channels = ((data[2] & 1) << 2) | (data[3] >> 6)
    if sf_index >= len(_AAC_RATES) or data[6] & 3:  # a reserved rate, or several raw blocks in one frame
        return None
    header = 7 if data[1] & 1 else 9  # protection_absent = 0: a CRC follows the header
    asc = (((profile + 1) << 11) | (sf_index << 7) | (channels << 3)).to_bytes(2, "big")
    return data[header:], asc, _AAC_RATES[sf_index]


_AAC_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350)

# Decoded pixel formats whose first plane is the picture's luma, one byte per pixel.
_PLANAR_YUV = frozenset({"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "nv12", "nv21"})
_AVCOL_RANGE_JPEG = 2  # FFmpeg's AVColorRange for full-range ("JPEG") pictures
# Limited-range luma (16..235) to full range, rounded as swscale's grey output is.
_LIMITED_TO_FULL = np.clip(np.floor((np.arange(256) - 16) * 255 / 219 + 0.5), 0, 255).astype(np.uint8)


class _Stamper:
    """Gives every packet of one stream a pts and a dts, in the stream's time base, instead of dropping those
    FFmpeg delivers without (the first packet of an RTSP connection, every packet of a raw Annex B file).

    A packet without both waits for the stream's next timestamped packet and is placed one frame duration before
    it (its own duration, or the stream's frame interval): the keyframe that opens a connection keeps its place.
    Once the stream has a timestamp, later packets without one follow the previous packet. If ``MAX_HELD``
    packets pass and none has a timestamp (a raw stream), they count up from the stream's start. A packet whose
    only stamp is its pts (RTSP: the RTP time) gets dts = pts, and the other way round.
    """

    MAX_HELD = 8

    __slots__ = ("default_dur", "held", "last_dts", "last_dur", "start", "synthesized")

    def __init__(self, default_dur: int, start: int | None) -> None:
        self.default_dur = max(1, default_dur)
        self.start = start or 0
        self.last_dts: int | None = None
        self.last_dur = self.default_dur
        self.held: list[tuple[Any, float]] = []
        self.synthesized = 0  # packets that got a timestamp from here

    def _dur(self, packet: Any) -> int:
        d = packet.duration
        return int(d) if d and d > 0 else self.default_dur

    def passes(self, packet: Any) -> bool:
        """Whether ``packet`` needs nothing from here: it has both stamps and none is held. The stream's clock
        then moves on as ``push`` would move it, and the caller hands the packet on itself, without the list of
        ready packets ``push`` builds: that is nearly every packet of a live stream (issue 14, item 7)."""
        if self.held:
            return False
        dts = packet.dts
        if dts is None or packet.pts is None:
            return False
        self.last_dts = dts
        self.last_dur = self._dur(packet)
        return True

    def push(self, packet: Any, arrival: float) -> list[tuple[Any, float]]:
        """The packets now ready, oldest first, each with the arrival time it came with."""
        if self.passes(packet):
            return [(packet, arrival)]
        pts, dts = packet.pts, packet.dts
        if pts is None and dts is None:
            if self.last_dts is None:
                self.held.append((packet, arrival))
                return self.flush() if len(self.held) >= self.MAX_HELD else []
            dts = self.last_dts + self.last_dur
            packet.pts = packet.dts = dts
            self.synthesized += 1
        elif dts is None:
            packet.dts = dts = pts
        elif pts is None:
            packet.pts = dts
        ready: list[tuple[Any, float]] = []
        if self.held:
            # back from this packet's decode time, each held packet one of its own durations earlier
            held, self.held = self.held, []
            back = dts
            stamped = []
            for hp, ha in reversed(held):
                back -= self._dur(hp)
                hp.pts = hp.dts = back
                stamped.append((hp, ha))
            self.synthesized += len(stamped)
            ready.extend(reversed(stamped))
        self.last_dts = dts
        self.last_dur = self._dur(packet)
        ready.append((packet, arrival))
        return ready

    def flush(self) -> list[tuple[Any, float]]:
        """Stamp what is held counting up from the stream start (or the last stamp): no timestamp is coming."""
        held, self.held = self.held, []
        for hp, _ in held:
            ts = self.start if self.last_dts is None else self.last_dts + self.last_dur
            hp.pts = hp.dts = ts
            self.last_dts = ts
            self.last_dur = self._dur(hp)
        self.synthesized += len(held)
        return held


class _ArrivalClock:
    """Arrival times for a live stream read in rounds.

    A packet that waited in the socket while the reader slept gets the time it arrived, not the moment it was
    read (the ring buffer, clip cuts and events go by ``t``): its stream time plus the stream's delay from the
    camera's clock to ours. That delay is the least ``read time - stream time`` seen on the stream, or what a read
    that waited for the camera saw if that is less than FRESH_S more (a camera clock slower than ours drifts so).
    Jitter, and a read held up after its data came (the GIL, the scheduler), only make a packet look later. A
    camera clock stepping back (FFmpeg re-bases RTP times at a connection's first RTCP report) makes every packet
    look later from then on: that shows as STALE_READS reads that waited for the camera yet look STALE_S or more
    late, by amounts that agree (a held-up read is a one-off, jitter does not agree with itself), and the delay
    starts over from them; or, while the reads that wait are another stream's, as an estimate more than FRESH_S
    before the packet read ahead of it, and the delay starts over from this read. ``t`` is never later than the
    read and always after the packet before it (ORDER_TICK_S after it where the estimate says otherwise), unless
    the wall clock went back; packets the stamper held (a connection's first) come with their own, earlier, read
    times. A video packet's stream time is its decode time (the stream's reorder delay is a constant, part of the
    delay).

    A round ends at a read that waited for the camera (the live edge), unless the delay says the packet sat in
    the socket STALE_S or more: the read was held up and more may be waiting. An estimate never ends a round: it
    is only as good as the delay, and a delay set too high would make packets that sat in the socket look fresh,
    round after round; a delay too low at worst keeps the reader reading for STALE_READS more reads.
    """

    STALE_READS = 3

    __slots__ = ("_delay", "_last", "_stale")

    def __init__(self) -> None:
        self._delay: dict[int, float] = {}  # stream index -> delay
        self._stale: dict[int, list[float]] = {}  # stream index -> what its reads that look stale saw
        self._last = float("-inf")

    def arrival(self, index: int, ts: float, read_at: float, waited: bool) -> tuple[float, bool]:
        """(``t``, whether the round ends here) for a packet of stream ``index`` with stream time ``ts``
        (seconds, increasing per stream), read at ``read_at``; ``waited``: the read waited for the camera."""
        seen = read_at - ts
        delay = self._delay.get(index)
        edge = waited
        if delay is None or seen <= delay or (waited and seen - delay < FRESH_S):
            # the least delay yet, or read as it came (give or take a clock's drift, a held-up read)
            t = read_at
            self._delay[index] = seen
            self._stale.pop(index, None)
        else:
            t = ts + delay
            if waited and seen - delay < STALE_S:
                self._stale.pop(index, None)  # the network's jitter
            elif waited:
                # Held up after its data came (there may be more in the socket), or the clock stepped back.
                edge = False
                stale = self._stale.setdefault(index, [])
                stale.append(seen)
                del stale[: -self.STALE_READS]
                if len(stale) == self.STALE_READS and max(stale) - min(stale) < FRESH_S:
                    delay = self._delay[index] = min(stale)
                    del self._stale[index]
                    t = ts + delay
                    edge = True
            if t < self._last - FRESH_S:
                # Before a packet read ahead of it: this stream's clock stepped back while the reads that waited
                # were the other stream's. Start its delay over here, as a stream's first packet would.
                t = read_at
                self._delay[index] = seen
                self._stale.pop(index, None)
        last = self._last
        if last <= read_at:
            if t <= last:
                # It came after the packet read before it, whatever the estimate says (two packets of a stream
                # with one time stamp, a delay a little off): just after that one, so each keeps a time of its own.
                t = min(last + ORDER_TICK_S, read_at)
        elif t < read_at:
            t = read_at  # read before a packet handled ahead of it (the stamper held it), or the wall clock went back
        self._last = t
        return t, edge


class _Burst:
    """A live source's packets waiting to be handled together (see ``FileCamera._play_once``): due once the
    first waited ``FLUSH_S`` (by the clock when the next one arrives) or ``MAX_BATCH`` wait."""

    __slots__ = ("clock", "packets", "since")

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.packets: list[tuple[Any, float]] = []
        self.since = 0.0

    def add(self, packet: Any, arrival: float) -> bool:
        """Queue one packet; whether the burst is due."""
        packets = self.packets
        packets.append((packet, arrival))
        if len(packets) == 1:
            self.since = self.clock()
            return MAX_BATCH <= 1
        return len(packets) >= MAX_BATCH or self.clock() - self.since >= FLUSH_S

    def extend(self, ready: list[tuple[Any, float]]) -> bool:
        due = False
        for packet, arrival in ready:
            due = self.add(packet, arrival) or due
        return due

    def take(self) -> list[tuple[Any, float]]:
        packets, self.packets = self.packets, []
        return packets


def _mono(frame: Any) -> np.ndarray:
    """Mono float32 samples of a decoded audio frame. AAC decodes to planar float: its planes are read as they
    are (a plane is one channel), 8x cheaper than the general conversion (``audio_frame_to_mono``)."""
    fmt = frame.format.name
    if fmt == "fltp" or (fmt == "flt" and len(frame.layout.channels) == 1):
        n = frame.samples
        planes = frame.planes
        if len(planes) == 1:  # mono, what a camera's AAC nearly always is
            return np.frombuffer(planes[0], np.float32, count=n).copy()
        return np.asarray(np.mean([np.frombuffer(p, np.float32, count=n) for p in planes], axis=0,
                                  dtype=np.float32), np.float32)
    return audio_frame_to_mono(frame)


class _AacPassthrough:
    """AAC packets of one connection as ``EncodedFrame``s for the clips, bytes as they came (ADTS headers of an
    MPEG-TS source taken off, their config kept). ``None`` for a packet that cannot be described (no config)."""

    __slots__ = ("config", "rate", "time_base", "warned")

    def __init__(self, extradata: bytes | None, rate: int | None) -> None:
        self.config = bytes(extradata) if extradata else None
        self.rate = int(rate or 0)
        self.time_base = Fraction(1, self.rate) if self.rate > 0 else None  # one Fraction, not one per packet
        self.warned = False

    def frame(self, data: bytes, st: float, t: float) -> EncodedFrame | None:
        if self.config is None:
            adts = adts_to_raw(data)
            if adts is not None:
                data, config, rate = adts
                return self._make(data, config, rate, st, t)
            if not self.warned:
                self.warned = True
                logger.warning("AAC audio without a decoder config: clips of this source have no sound")
            return None
        return self._make(data, self.config, self.rate, st, t, self.time_base)

    @staticmethod
    def _make(data: bytes, config: bytes, rate: int, st: float, t: float,
              time_base: Fraction | None = None) -> EncodedFrame | None:
        if rate <= 0 or not data:
            return None
        # pts counts samples from the stream start, on the clock the video's pts is on (as Opus is)
        return EncodedFrame(kind="audio", codec="aac", data=data, pts=round(st * rate),
                            time_base=time_base or Fraction(1, rate), t=t, config=config)


class FileCamera:
    """A camera backed by a video file or an RTSP URL.

    ``await run()`` streams until the end of the file (or forever with ``loop=True`` / live sources) or until
    ``await stop()``. Errors opening or reading the source raise :class:`FileCameraError` from ``run()``.
    """

    def __init__(
        self,
        source: str,
        sink: CameraSink,
        realtime: bool = True,
        detect_fps: float = 5,
        detect_width: int = 320,
        *,
        loop: bool = False,
        detect_url: str | None = None,
        options: dict[str, str] | None = None,
        clock: Callable[[], float] = time.time,
        decode_audio: bool | Callable[[], bool] = True,
        open_timeout_s: float = DEFAULT_OPEN_TIMEOUT_S,
        on_detect_state: Callable[[str, str], None] | None = None,
    ) -> None:
        self.source = str(source)
        self.sink = sink
        self.realtime = realtime
        self.detect_fps = float(detect_fps)
        self.detect_width = int(detect_width)
        self.loop = loop
        self.detect_url = detect_url
        self.live = _is_live(self.source)
        self.options = dict(options or {})
        self.open_timeout_s = float(open_timeout_s)
        if self.live:
            self.options.setdefault("rtsp_transport", "tcp")
            # µs, FFmpeg's socket timeout: a dead camera must not block stop() forever, a slow one must get in
            self.options.setdefault("timeout", str(round(self.open_timeout_s * 1_000_000)))
        self.clock = clock  # arrival time of the detect sub-stream's frames (their t)
        # Whether decoded audio is wanted (the camera's sound trigger is on). A callable is asked per packet, so
        # a setting changed while the camera runs takes effect at once. Opus passthrough for clips is unaffected.
        self._decode_audio: Callable[[], bool] = (
            decode_audio if callable(decode_audio) else (lambda: bool(decode_audio))
        )
        self.video_stats = TrackStats()
        self.audio_stats = TrackStats()
        self.detect_delivered = 0
        self.audio_chunks = 0
        self.loops = 0
        self.codec: str | None = None
        self.width: int | None = None
        self.height: int | None = None
        self._stop = threading.Event()
        self._stopped = False  # stop() was called: run() must not start again
        self._slots = threading.Semaphore(MAX_IN_FLIGHT // MAX_BATCH)  # batches in flight
        self._tls = threading.local()  # each worker thread's batch waiting for its hand-off
        # Main-stream batches waiting to ride with the detect sub-stream's next hand-off (``_ride``).
        self._ride_lock = threading.Lock()
        self._parked: list[tuple[Callable[[Any], None], Any]] = []
        self._parked_since = 0.0
        self._detect_handed = -1e9  # monotonic time of the sub-stream's last hand-off
        self._reformatter: Any = None  # swscale context kept across frames (odd pixel formats, see _grey)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._threads: list[threading.Thread] = []
        self._info_sent: tuple | None = None
        self._wall0: float | None = None
        self.reconnects = 0
        self.stamped_packets = 0  # packets that came without a timestamp and were given one (_Stamper)
        self._down_since: float | None = None  # when a live source's last connection ended (for the log line)
        # The detect sub-stream: "none" without one; "down" until its first frame decodes; called on the loop
        # with (state, reason) at each change.
        self.detect_state = "down" if detect_url else "none"
        self.detect_reason = "not connected yet" if detect_url else ""
        self._detect_reported = False
        self.detect_failures = 0  # sub-stream connections that ended or could not be made
        self._on_detect_state = on_detect_state

    # -- public ----------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Stream until the file ends (never with ``loop=True``; live sources reconnect by themselves) or
        until :meth:`stop`. May be called again after it returned or raised (e.g. by a retry loop)."""
        if any(t.is_alive() for t in self._threads):
            raise RuntimeError("FileCamera.run() is already running")
        if self._stopped:
            return
        self._threads = []
        self._loop = asyncio.get_running_loop()
        self._stop.clear()
        futures = [self._start_thread(self._main_worker, "file-camera")]
        if self.detect_url:
            futures.append(self._start_thread(self._detect_worker, "file-camera-detect"))
        try:
            # the main source decides when the camera ends; the detect sub-stream follows it
            await futures[0]
        finally:
            self._stop.set()
            for f in futures[1:]:
                try:
                    await f
                except Exception:
                    logger.exception("file camera %s: detect stream failed", self.source)
            for t in self._threads:  # they are finishing: reported their result already
                while t.is_alive():  # noqa: ASYNC110 - a thread's end has no awaitable
                    await asyncio.sleep(0.005)

    async def stop(self) -> None:
        self._stopped = True
        self._stop.set()
        for t in self._threads:
            while t.is_alive():  # noqa: ASYNC110 - a thread's end has no awaitable
                await asyncio.sleep(0.02)

    def stats(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "codec": self.codec,
            "width": self.width,
            "height": self.height,
            "loops": self.loops,
            "video": self.video_stats.as_dict(),
            "audio": self.audio_stats.as_dict(),
            "detect_delivered": self.detect_delivered,
            "audio_chunks": self.audio_chunks,
            "reconnects": self.reconnects,
            "stamped_packets": self.stamped_packets,
            "detect": self.detect_state,
            "down": self._down_since is not None,  # a live source between connections
        }

    # -- threading plumbing ----------------------------------------------------------------------------

    def _start_thread(self, target: Callable[[], None], name: str) -> asyncio.Future:
        loop = self._loop
        assert loop is not None
        fut: asyncio.Future = loop.create_future()

        def body() -> None:
            try:
                try:
                    target()
                finally:
                    self._flush(urgent=True)  # what the thread queued reaches the sink before run() learns it ended
            except BaseException as exc:  # noqa: BLE001 - handed to run()
                err = exc

                def fail() -> None:
                    if not fut.done():
                        fut.set_exception(err)

                loop.call_soon_threadsafe(fail)
            else:
                def done() -> None:
                    if not fut.done():
                        fut.set_result(None)

                loop.call_soon_threadsafe(done)

        t = threading.Thread(target=body, name=name, daemon=True)
        self._threads.append(t)
        t.start()
        return fut

    def _deliver(self, fn: Callable[[Any], None], item: Any, *, now: bool = False) -> bool:
        """Queue one item for the sink; the calling thread's batch is handed to the event loop when it is
        ``MAX_BATCH`` long, ``FLUSH_S`` old, or ``now``. False once stopped."""
        tls = self._tls
        batch: list[tuple[Callable[[Any], None], Any]] | None = getattr(tls, "batch", None)
        if batch is None:
            batch = tls.batch = []
        if not batch:
            tls.since = time.monotonic()
        batch.append((fn, item))
        if now or len(batch) >= MAX_BATCH or time.monotonic() - tls.since >= FLUSH_S:
            return self._flush(urgent=now)
        return not self._stop.is_set()

    def _flush(self, urgent: bool = False) -> bool:
        """Hand the calling thread's batch to the event loop; blocks while MAX_IN_FLIGHT items are pending.
        A live main stream's batch may instead be parked to ride with the detect sub-stream (``_ride``)."""
        tls = self._tls
        batch = getattr(tls, "batch", None) or []
        tls.batch = []
        role = getattr(tls, "role", "")
        if role:
            batch = self._ride(role, batch, urgent)
        if not batch:
            return not self._stop.is_set()
        while not self._slots.acquire(timeout=0.2):
            if self._stop.is_set():
                return False
        loop = self._loop
        assert loop is not None

        def call() -> None:
            try:
                for fn, item in batch:
                    try:
                        fn(item)
                    except Exception:
                        logger.exception("file camera %s: sink callback failed", self.source)
            finally:
                self._slots.release()

        try:
            loop.call_soon_threadsafe(call)
        except RuntimeError:  # loop closed
            self._stop.set()
            return False
        return True

    def _ride(self, role: str, batch: list[tuple[Callable[[Any], None], Any]],
              urgent: bool) -> list[tuple[Callable[[Any], None], Any]]:
        """What the calling worker hands to the loop now. At one RTSP camera the loop woke ~17 times a second,
        ~8 of them for the main stream's batches (video packets, audio chunks), each wake-up's work cache-cold
        (issue 14, item 7). The sub-stream's detect frames must go at once and wake it 5 times a second anyway,
        so the main stream's batches wait for the next of those and go with it. They go ahead of the detect
        frame: they arrived before it, and the trigger engine clamps an item's time to the newest it has seen,
        so a sound fed after a later detect frame would be dated by that frame; the motion decision waits only
        for their handling (~0.5 ms at one camera). Their items keep their order and their ``t``; they reach
        the sink up to ~1/detect_fps later than on their own (the sound trigger's decision and the live view with
        them). They go by themselves when the sub-stream is not handing over (down, reconnecting), after
        PARK_MAX_S, when urgent (a break) and when the main worker ends."""
        now = time.monotonic()
        with self._ride_lock:
            if role == "detect":
                self._detect_handed = now
                if self._parked:
                    batch = self._parked + batch
                    self._parked = []
                return batch
            if (batch and not urgent and now - self._detect_handed < RIDE_WINDOW_S
                    and (not self._parked or now - self._parked_since < PARK_MAX_S)):
                if not self._parked:
                    self._parked_since = now
                self._parked.extend(batch)
                return []
            if self._parked:
                batch = self._parked + batch
                self._parked = []
            return batch

    def _open(self, url: str, video_only: bool = False) -> Any:
        """``video_only``: an RTSP source is asked for its video track alone (the sub-stream: many cameras send
        their audio on it too, which would be read and thrown away, packet by packet)."""
        import av

        options = self.options
        if video_only and url.lower().startswith(RTSP_PREFIXES):
            options = {"allowed_media_types": "video", **options}  # an option the user set wins
        try:
            timeout = (self.open_timeout_s, READ_TIMEOUT_S) if _is_live(url) else None
            return av.open(url, options=options or None, timeout=timeout)
        except (av.FFmpegError, OSError) as exc:
            raise FileCameraError(f"cannot open {url}: {exc}") from exc

    def _sleep_until(self, target_wall: float) -> None:
        delay = target_wall - time.time()
        if delay > 0:
            since = getattr(self._tls, "since", 0.0)
            if time.monotonic() + delay - since >= FLUSH_S:
                self._flush()  # paced: what is queued must not wait out the pause
            self._stop.wait(delay)

    # -- workers -----------------------------------------------------------------------------------------

    def _main_worker(self) -> None:
        # a live camera detecting on a sub-stream: this thread's batches ride with the sub-stream's (_ride)
        self._tls.role = "main" if self.live and self.detect_url else ""
        offset = 0.0  # stream seconds added per loop / reconnect so pts and t keep increasing
        self._wall0 = None
        backoff = 1.0
        while not self._stop.is_set():
            if self.live:
                # A live stream ends or fails when the camera reboots or the network drops: reconnect with
                # backoff until stop(); what was buffered before cannot be continued.
                started = time.time()
                try:
                    end = self._play_once(offset)
                except Exception as exc:  # noqa: BLE001
                    logger.warning("camera source %s failed: %s; reconnecting in %.0f s", self.source, exc, backoff)
                    end = offset
                else:
                    logger.info("camera source %s ended; reconnecting", self.source)
                if self._stop.is_set():
                    break
                if self._down_since is None:
                    self._down_since = time.time()
                self._deliver(lambda _: self.sink.on_broken(), None, now=True)
                backoff = 1.0 if time.time() - started > 30 else min(backoff * 2, 30.0)
                ended = time.time()
                self._stop.wait(backoff)
                offset = max(offset, end) + (time.time() - ended)
                continue
            end = self._play_once(offset)
            if not self.loop or self._stop.is_set():
                break
            if end <= offset:  # empty file: do not spin
                raise FileCameraError(f"{self.source}: no packets")
            offset = end
            self.loops += 1

    def _play_once(self, offset: float) -> float:
        """Demux the source once. Returns the stream time (with offset) where this pass ended."""
        import av

        container = self._open(self.source)
        try:
            vstreams = [s for s in container.streams if s.type == "video"]
            if not vstreams:
                raise FileCameraError(f"{self.source}: no video stream")
            video = vstreams[0]
            astreams = [s for s in container.streams if s.type == "audio"]
            audio = astreams[0] if astreams else None

            vname = video.codec_context.name
            if vname not in RECORD_CODECS:
                raise FileCameraError(
                    f"{self.source}: record codec {vname!r} cannot be stored without re-encoding "
                    f"(h264, hevc or vp8 only)"
                )
            self.codec = vname
            conv = AnnexBConverter(vname, video.codec_context.extradata) if vname != "vp8" else None

            vdec = None
            if not self.detect_url:
                vdec = av.CodecContext.create(vname, "r")
                if video.codec_context.extradata:
                    vdec.extradata = video.codec_context.extradata
                vdec.thread_type = "AUTO"
            adec = None
            a_is_opus = False
            aac: _AacPassthrough | None = None
            if audio is not None:
                a_is_opus = audio.codec_context.name == "opus"
                if audio.codec_context.name == "aac":
                    aac = _AacPassthrough(audio.codec_context.extradata, audio.codec_context.sample_rate)
                adec = audio.codec_context  # the demuxer's context, set up with the stream's parameters

            starts = [
                float(s.start_time * s.time_base)
                for s in ([video] + ([audio] if audio is not None else []))
                if s.start_time is not None and s.time_base is not None
            ]
            t0: float | None = min(starts) if starts else None  # else: the first packet's time (live streams)
            fps = float(video.average_rate or video.guessed_rate or 30)
            vdur_default = 1.0 / fps if fps > 0 else 1 / 30
            vtb = float(video.time_base)
            stampers = {video.index: _Stamper(round(vdur_default / vtb), video.start_time)}
            if audio is not None:
                atb = audio.time_base
                frame_size = audio.codec_context.frame_size or 1024
                rate = audio.codec_context.sample_rate or 48000
                stampers[audio.index] = _Stamper(round(frame_size / rate / float(atb)), audio.start_time)
            end = offset
            throttle = DetectThrottle(self.detect_fps)
            delay: int | None = None  # video reorder delay (first packet's pts - dts), in the stream's time base
            first = True

            # Seconds per tick of each stream, read once: PyAV's packet.time_base is a new Fraction per call, and
            # Fraction arithmetic per packet was a visible share of an RTSP camera's cost (issue 14, item 7).
            v_index = video.index
            tbs = {s.index: s.time_base.numerator / s.time_base.denominator
                   for s in ([video] + ([audio] if audio is not None else [])) if s.time_base is not None}

            def handle(packet: Any, arrival: float) -> bool:
                """One packet with its timestamps; False once stopped."""
                nonlocal t0, end, delay, first
                index = packet.stream_index
                tb = tbs.get(index) or float(packet.time_base)
                is_video = index == v_index
                pts, dts = packet.pts, packet.dts  # integers in the stream's time base
                if is_video:
                    if delay is None:
                        delay = max(0, pts - dts)
                    ts = (dts + delay) * tb  # increases in decode order; the pts where no B-frames
                else:
                    ts = pts * tb
                if t0 is None:
                    t0 = ts
                if first:
                    first = False
                    self._connected()
                st = ts - t0 + offset  # stream seconds
                if self.live:
                    t = arrival
                elif self.realtime:
                    if self._wall0 is None:
                        self._wall0 = arrival - st  # wall clock of stream time 0
                    self._sleep_until(self._wall0 + st)
                    if self._stop.is_set():
                        return False
                    t = self._wall0 + st
                else:
                    t = st
                dur = packet.duration
                dur = dur * tb if dur else None

                if is_video:
                    end = max(end, st + (dur or vdur_default))
                    base = offset - t0
                    pts90 = round((pts * tb + base) * 90000)
                    dts90 = round((dts * tb + base) * 90000)
                    self._on_video_packet(packet, conv, pts90, dts90, t)
                    if vdec is not None and throttle.period > 0:
                        try:
                            frames = vdec.decode(packet)
                        except av.FFmpegError as exc:
                            logger.debug("detect decode failed: %s", exc)
                            frames = []
                        for frame in frames:
                            fst = frame.pts * tb - t0 + offset if frame.pts is not None else st
                            if not throttle.take(fst):
                                continue
                            ft = t if (self.live or self.realtime) else fst
                            self._emit_detect(frame, ft)
                else:
                    end = max(end, st + (dur or 0.02))
                    if a_is_opus:
                        pts48 = round(st * 48000)
                        data = bytes(packet)
                        self.audio_stats.add(t, len(data), False)
                        frame = EncodedFrame(
                            kind="audio", codec="opus", data=data, pts=pts48, time_base=AUDIO_TIME_BASE, t=t
                        )
                        self._deliver(self.sink.on_frame, frame)
                    elif aac is not None:
                        aframe = aac.frame(bytes(packet), st, t)
                        if aframe is not None:
                            self.audio_stats.add(t, len(aframe.data), False)
                            self._deliver(self.sink.on_frame, aframe)
                    if adec is not None and self._decode_audio():
                        try:
                            aframes = adec.decode(packet)
                        except av.FFmpegError as exc:
                            logger.debug("audio decode failed: %s", exc)
                            aframes = []
                        for af in aframes:
                            samples = _mono(af)
                            self.audio_chunks += 1
                            self._deliver(self.sink.on_audio,
                                          AudioChunk(samples=samples, sample_rate=af.sample_rate, t=t))
                return True

            streams = [video] + ([audio] if audio is not None else [])
            stopped = False
            stop_set = self._stop.is_set
            now = time.time
            # A live source's packets are handled in bursts, when their items would go to the loop anyway (the
            # first packet FLUSH_S after the burst's first one), not one by one as they arrive: each packet's
            # Annex B conversion, frames, stats and AAC decode ran cache-cold after a wait in FFmpeg's read and
            # cost 4-6x what they cost back to back (issue 14, item 7). Each packet keeps its arrival time as
            # ``t``, items reach the loop in the same order and at the same moments (see ``_drain``). Not with
            # detection on the main stream: its detect frames go to the loop at once.
            burst = _Burst() if self.live and vdec is None else None
            # With a detect sub-stream the reader also sleeps between rounds (CAUGHT_UP_S, ``_read_pause``): it
            # woke for every packet the camera sent (~30-50 a second), each time running FFmpeg's read and parse
            # cache-cold. The packets that waited in the socket get their arrival time from ``_ArrivalClock`` as
            # they are read; those the stamper holds, once they have a timestamp.
            paced = burst is not None and self.detect_url is not None
            arrivals = _ArrivalClock() if paced else None
            asked = now()
            try:
                for packet in container.demux(streams):
                    if stop_set():
                        stopped = True
                        break
                    if packet.size == 0:
                        continue  # the demuxer's flush packets
                    stamper = stampers[packet.stream_index]
                    arrival = now()
                    if burst is not None:
                        ready = stamper.push(packet, arrival) if not stamper.passes(packet) else None
                        if arrivals is None:
                            due = burst.add(packet, arrival) if ready is None else burst.extend(ready)
                            edge = False
                        else:
                            waited = arrival - asked >= CAUGHT_UP_S  # waited for the camera: the live edge
                            edge = due = False
                            for p, read_at in ((packet, arrival),) if ready is None else ready:
                                index = p.stream_index
                                ts = (p.dts if index == v_index else p.pts) * (tbs.get(index) or p.time_base)
                                t, at_edge = arrivals.arrival(index, float(ts), read_at, waited and p is packet)
                                edge = edge or at_edge
                                due = burst.add(p, t) or due
                        if edge:  # at the live edge: hand over, sleep while the next round piles up
                            if not self._drain(burst, handle):
                                stopped = True
                                break
                            self._stop.wait(self._read_pause())
                        elif due and not self._drain(burst, handle):
                            stopped = True
                            break
                        asked = now()
                        continue
                    if stamper.passes(packet):  # stamped as it came: straight on
                        if not handle(packet, arrival):
                            stopped = True
                            break
                        continue
                    for p, parrival in stamper.push(packet, arrival):
                        if not handle(p, parrival):
                            stopped = True
                            break
                    if stopped:
                        break
            finally:
                if burst is not None and burst.packets:  # what arrived before the end, the error or stop()
                    if not self._drain(burst, handle):
                        stopped = True
            if not stopped:  # the source ended with packets still waiting for a timestamp
                for stamper in stampers.values():
                    for p, arrival in stamper.flush():
                        if not handle(p, arrival):
                            break
            self.stamped_packets += sum(s.synthesized for s in stampers.values())
            return end
        finally:
            container.close()

    def _connected(self) -> None:
        """The first packet of a connection arrived: say so if the source had been down (issue 14)."""
        down, self._down_since = self._down_since, None
        if down is not None:
            self.reconnects += 1
            logger.info("camera source %s reconnected after %.1f s down", self.source, time.time() - down)

    def _drain(self, burst: _Burst, handle: Callable[[Any, float], bool]) -> bool:
        """Handle a burst's packets in arrival order and hand their items to the loop now: the moment a packet
        handled on arrival would have flushed them (its batch FLUSH_S old). False once stopped."""
        packets = burst.take()
        for p, arrival in packets:
            if not handle(p, arrival):
                return False
        return self._flush()

    def _read_pause(self) -> float:
        """How long a paced main-stream reader sleeps at the live edge: until READ_LEAD_S before the
        sub-stream's next detect frame is due, so that what piles up meanwhile is read back to back and rides to
        the loop with that frame (``_ride``); one detect period while the sub-stream is not handing over; never
        more than MAX_PAUSE_S."""
        period = 1.0 / self.detect_fps if self.detect_fps > 0 else MAX_PAUSE_S
        now = time.monotonic()
        with self._ride_lock:
            handed = self._detect_handed
        if now - handed >= RIDE_WINDOW_S:
            return min(period, MAX_PAUSE_S)
        due = handed + period - READ_LEAD_S
        while due <= now:  # that frame's round has been read: aim for the next one
            due += period
        return min(due - now, MAX_PAUSE_S)

    def _on_video_packet(self, packet: Any, conv: AnnexBConverter | None, pts: int, dts: int, t: float) -> None:
        data = bytes(packet)
        if conv is not None:
            data, key = conv.convert(data)
            res = conv.resolution
        else:
            key = bool(data) and (data[0] & 1) == 0
            res = vp8_keyframe_size(data) if key else None
        if res:
            self.width, self.height = res
        if self.width is None:
            cc = packet.stream.codec_context
            if cc.width and cc.height:
                self.width, self.height = cc.width, cc.height
        info = (self.codec, self.width, self.height)
        if info != self._info_sent and self.width and self.height:
            self._info_sent = info
            self._deliver(self.sink.on_stream_info, {"codec": self.codec, "width": self.width, "height": self.height})
        self.video_stats.add(t, len(data), key)
        frame = EncodedFrame(
            kind="video",
            codec=self.codec,  # type: ignore[arg-type]
            data=data,
            pts=pts,
            time_base=VIDEO_TIME_BASE,
            t=t,
            keyframe=key,
            width=self.width,
            height=self.height,
            dts=None if dts == pts else dts,
        )
        self._deliver(self.sink.on_frame, frame)

    def _emit_detect(self, frame: Any, t: float) -> None:
        y = self._grey(frame)
        self.detect_delivered += 1
        # at once: motion detection's latency, not the batch's
        self._deliver(self.sink.on_detect, DetectFrame(y=y, t=t), now=True)

    def _grey(self, frame: Any) -> np.ndarray:
        """The frame as grey, at most ``detect_width`` wide.

        Planar YUV (what H.264/H.265/VP8 decode to) already holds it: the Y plane, through a table from
        limited to full range (0 diffs to swscale's grey) and cv2's area resize when too wide. A fresh swscale
        context per frame (``frame.reformat``) cost ~1 ms per 320x180 frame, a third of an RTSP camera's CPU."""
        w, h = frame.width, frame.height
        dw, dh = w, h
        if w > self.detect_width:
            dw = self.detect_width
            dh = max(2, round(h * dw / w / 2) * 2)
        fmt = frame.format.name
        if fmt in _PLANAR_YUV:
            plane = frame.planes[0]
            y: np.ndarray = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[:h, :w]
            if (dw, dh) != (w, h):
                y = np.asarray(cv2.resize(y, (dw, dh), interpolation=cv2.INTER_AREA))
            # limited range (or unspecified, which swscale takes as limited) is stretched to 0..255 as swscale
            # does; full-range (JPEG) luma is grey as it is
            if fmt.startswith("yuvj") or frame.color_range == _AVCOL_RANGE_JPEG:
                return np.array(y, np.uint8, copy=True)
            return cv2.LUT(y, _LIMITED_TO_FULL)
        if self._reformatter is None:
            from av.video.reformatter import VideoReformatter

            self._reformatter = VideoReformatter()  # keeps its swscale context while the format stays
        if (dw, dh) != (w, h):
            small = self._reformatter.reformat(frame, width=dw, height=dh, format="gray", interpolation="AREA")
        else:
            small = self._reformatter.reformat(frame, format="gray")
        return np.asarray(small.to_ndarray())

    def _set_detect_state(self, state: str, reason: str) -> None:
        """Report the detect sub-stream going down or coming back, once per change (issue 14)."""
        if state == self.detect_state and self._detect_reported:
            return
        self.detect_state, self.detect_reason, self._detect_reported = state, reason, True
        callback = self._on_detect_state
        if callback is not None:
            self._deliver(lambda _: callback(state, reason), None, now=True)

    def _detect_worker(self) -> None:
        """Decode the RTSP sub-stream (``detect_url``) for ``on_detect`` only, for as long as the camera runs.

        The sub-stream is reconnected with backoff like the main stream, however it fails (cannot open at
        start-up, the camera rebooted, a read timed out): this thread used to end at the first failed reopen,
        motion detection stopped while video and audio kept flowing, and the error surfaced only at shutdown.
        Each change between "ok" (frames decode) and "down" goes to ``on_detect_state``."""
        assert self.detect_url
        url = self.detect_url
        self._tls.role = "detect"  # its hand-offs carry the main stream's parked batches (_ride)
        # arrival time, as the frames' t: the camera clock the record stream's frames are on too
        throttle = DetectThrottle(self.detect_fps if self.detect_fps > 0 else 5.0)
        backoff = 1.0
        while not self._stop.is_set():
            started = time.time()
            try:
                frames = self._detect_once(url, throttle)
                reason = "the sub-stream ended"
            except Exception as exc:  # noqa: BLE001 - any failure of the sub-stream means: reconnect
                frames = 0
                reason = str(exc) or type(exc).__name__
            if self._stop.is_set():
                break
            self.detect_failures += 1
            self._set_detect_state("down", reason)
            # a connection that ran a while starts the backoff over; one that keeps failing backs off to 30 s
            if frames and time.time() - started > 30:
                backoff = 1.0
            logger.warning("camera %s: detect stream %s down: %s; reconnecting in %.0f s",
                           self.source, url, reason, backoff)
            self._stop.wait(backoff)
            backoff = min(backoff * 2, 30.0)

    def _detect_once(self, url: str, throttle: DetectThrottle) -> int:
        """One connection to the sub-stream; returns how many frames it decoded."""
        import av

        container = self._open(url, video_only=True)
        decoded = 0
        try:
            video = next((s for s in container.streams if s.type == "video"), None)
            if video is None:
                raise FileCameraError(f"{url}: no video stream")
            # One thread: a 320x180 5 fps sub-stream decodes 3x cheaper without frame threads, which would also
            # hold each frame back by the thread count (hundreds of ms at 5 fps).
            video.codec_context.thread_count = 1
            for packet in container.demux(video):
                if self._stop.is_set():
                    break
                try:
                    frames = packet.decode()
                except av.FFmpegError:
                    continue
                for frame in frames:
                    if not decoded:
                        if self.detect_state == "down" and self._detect_reported:
                            logger.info("camera %s: detect stream %s back", self.source, url)
                        self._set_detect_state("ok", "")
                    decoded += 1
                    now = self.clock()
                    if throttle.take(now):
                        self._emit_detect(frame, now)
        finally:
            container.close()
        return decoded
