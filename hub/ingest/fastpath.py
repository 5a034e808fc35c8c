"""Cheaper per-packet receive for WebRTC cameras (private aiortc / aioice / asyncio API, pinned to aiortc 1.16).

Independent pieces, all applied by ``CameraPeer`` (kill switch: ``PINGWATCH_INGEST_FASTPATH=0``):

1. :func:`install_record_fastpath`: a lean ``_handle_rtp_packet`` for the record track's H.264 packets;
2. :func:`batch_ice_reads`: the ICE sockets read every queued datagram per event-loop wake-up (all tracks),
   hand SRTP datagrams straight to the receivers (``hub/ingest/srtp_direct.py``) and, once media flows, are
   drained by one shared timer (:class:`DatagramPoller`) instead of waking the loop for every packet.

Measured with ``scripts/bench rtp --udp`` (one 720p15 record track replayed over loopback UDP in real time):
aiortc's path ~125 us of event-loop-thread CPU per packet, with (1) ~107, with (1)+(2) ~83.

Record fast path
----------------

aiortc's ``RTCRtpReceiver._handle_rtp_packet`` runs, per RTP packet, generic code the record track does not
need in its common case: a ``JitterBuffer.add`` whose ``_remove_frame`` rescans every packet of the frame
being assembled from the buffer origin (quadratic in the packets per frame: a 720p keyframe is ~100 packets),
``uint16_add`` helpers, a ``datetime.now()`` per packet for ``getSynchronizationSources``, a generic depayload
dispatch, and a hand-off through the decoder queue's ``put`` to the tap.

:func:`install_record_fastpath` shadows ``_handle_rtp_packet`` on ONE receiver (the record track, only when it
is not decoded) with :class:`RecordFastPath.handle`, which does exactly what aiortc does, in the same order,
with the same side effects, except:

* **in-order packets** (sequence number == the next expected one, the common case) are depayloaded (FU-A and
  single NAL inline; STAP-A through aiortc's own parser) and appended to the frame being assembled; a packet
  with a new RTP timestamp completes the previous frame, which goes straight to the tap (rebased by aiortc's own
  ``TimestampMapper``), exactly when aiortc's jitter buffer would release it and with the same bytes;
* **anything else** (a gap, reordering, a duplicate, a late or RTX-repaired packet): the assembler's state is
  handed back to aiortc's own ``JitterBuffer`` (the receiver's, with the tap's loss hook on ``add``) and packets
  go through it, as on aiortc's path, until it holds exactly one contiguous, in-order partial frame again; then
  the fast path takes over. Loss (overrun, big jumps) is therefore signalled exactly as before: ``pli_flag``
  -> PLI to the sender and ``sink.on_broken`` via the tap's ``add`` hook;
* ``getSynchronizationSources`` is refreshed at most every 250 ms per SSRC (it has a 10 s window);
* packets of any other codec (VP8) and every case the fast path does not know are passed to aiortc's own
  method unchanged.

Still done per packet as aiortc does: the ``_enabled`` check, the RTCP receiver statistics
(``StreamStatistics.add``: RR loss/jitter reports to the sender), RTX unwrapping, the NACK generator (NACKs are
sent as before), the decoder-error PLI check. The REMB estimator is off on these receivers (``CameraPeer``).

``check_fastpath_internals()`` (called when the path is installed, and by the tests) fails loudly, naming the
attribute, when the private names or the source this mirrors change.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import socket
import weakref
from collections.abc import Callable
from typing import Any, ClassVar

from hub.ingest.aiortc_names import (
    RECEIVER_ACTIVE_SSRC,
    RECEIVER_CODECS,
    RECEIVER_DECODER_ERROR,
    RECEIVER_DECODER_THREAD,
    RECEIVER_ESTIMATOR,
    RECEIVER_JITTER_BUFFER,
    RECEIVER_NACK_GENERATOR,
    RECEIVER_REMOTE_STREAMS,
    RECEIVER_RTX_SSRC,
    RECEIVER_TIMESTAMP_MAPPER,
    TESTED_AIORTC_VERSION,
)
from hub.ingest.aiortc_names import AiortcInternalsError as FastPathInternalsError
from hub.ingest.srtp_direct import SYNC_HANDLER, DirectSrtp, DirectSrtpInternalsError, run_now

logger = logging.getLogger(__name__)

_PRIVATE_NAMES = (
    RECEIVER_CODECS, RECEIVER_ACTIVE_SSRC, RECEIVER_REMOTE_STREAMS, RECEIVER_RTX_SSRC, RECEIVER_NACK_GENERATOR,
    RECEIVER_DECODER_ERROR, RECEIVER_TIMESTAMP_MAPPER, RECEIVER_JITTER_BUFFER, RECEIVER_DECODER_THREAD,
    RECEIVER_ESTIMATOR, "_enabled", "_send_rtcp_nack", "_send_rtcp_pli", "_handle_rtp_packet",
)

# Source fragments of aiortc 1.16's receive path that this module mirrors; any change fails check_fastpath_internals.
_HANDLE_NEEDLES = (
    "if not self._enabled:",
    "self.__active_ssrc[packet.ssrc] = clock.current_datetime()",
    "codec = self.__codecs.get(packet.payload_type)",
    "self.__remote_streams[packet.ssrc] = StreamStatistics(codec.clockRate)",
    "self.__remote_streams[packet.ssrc].add(packet)",
    "if is_rtx(codec):",
    "original_ssrc = self.__rtx_ssrc.get(packet.ssrc)",
    'apt = codec.parameters.get("apt")',
    "packet = unwrap_rtx(packet, payload_type=apt, ssrc=original_ssrc)",
    "self.__nack_generator is not None and self.__nack_generator.add(packet)",
    "packet.ssrc, sorted(self.__nack_generator.missing)",
    "packet._data = depayload(codec, packet.payload)",
    'packet._data = b""',
    "pli_flag, encoded_frame = self.__jitter_buffer.add(packet)",
    "if self.__decoder_error.is_set():",
    "await self._send_rtcp_pli(packet.ssrc)",
    "if encoded_frame is not None and self.__decoder_thread:",
    "self.__timestamp_mapper.map(",
    "self.__decoder_queue.put((codec, encoded_frame))",
)
_JB_NEEDLES = (
    "data=b\"\".join([x._data for x in packets])",
    "elif packet.timestamp != timestamp:",
    "if frames >= self._prefetch:",
    "pos = packet.sequence_number % self._capacity",
)
_H264_NEEDLES = (
    "elif nal_type == NAL_TYPE_FU_A:",
    "original_nal_type = data[pos] & 0x1F",
    "first_fragment = bool(data[pos] & 0x80)",
    "original_nal_header = bytes([f_nri | original_nal_type])",
    "output += data[pos:]",
    "output = bytes([0, 0, 0, 1]) + data",
    "if nal_type in range(1, 24):",
    'raise ValueError("NAL unit is too short")',
)


def check_fastpath_internals(receiver: Any | None = None) -> None:
    """Raise (naming it) when a private aiortc name or source fragment the fast path mirrors has changed."""
    if receiver is not None:
        for name in _PRIVATE_NAMES:
            if not hasattr(receiver, name):
                raise FastPathInternalsError(
                    f"RTCRtpReceiver has no attribute {name!r}; hub/ingest/fastpath.py was written against aiortc "
                    f"{TESTED_AIORTC_VERSION}"
                )
    _check_sources()


@functools.lru_cache(maxsize=1)
def _check_sources() -> None:
    from aiortc import jitterbuffer, rtcrtpreceiver
    from aiortc.codecs import h264

    for obj, needles in (
        (rtcrtpreceiver.RTCRtpReceiver._handle_rtp_packet, _HANDLE_NEEDLES),
        (jitterbuffer.JitterBuffer._remove_frame, _JB_NEEDLES[:3]),
        (jitterbuffer.JitterBuffer.add, _JB_NEEDLES[3:]),
        (h264.H264PayloadDescriptor.parse, _H264_NEEDLES),
    ):
        src = inspect.getsource(obj)
        for needle in needles:
            if needle not in src:
                raise FastPathInternalsError(
                    f"aiortc {obj.__qualname__} changed: expected {needle!r}; hub/ingest/fastpath.py mirrors aiortc "
                    f"{TESTED_AIORTC_VERSION}"
                )
    for name in ("unwrap_rtx", "clock", "StreamStatistics", "is_rtx", "depayload"):
        if not hasattr(rtcrtpreceiver, name):
            raise FastPathInternalsError(f"aiortc.rtcrtpreceiver has no {name!r}")


_START = b"\x00\x00\x00\x01"
_ACTIVE_REFRESH_MS = 250


class LeanReceiverPath:
    """What the hub's lean packet handlers share: aiortc's per-packet bookkeeping and the handler installation.

    A subclass implements ``handle_sync(packet, arrival_time_ms)``; it is installed on ``receiver`` both as
    ``_handle_rtp_packet`` (aiortc's own receive loop awaits it) and as ``SYNC_HANDLER`` (``DirectSrtp`` calls it
    without a coroutine). ``tap`` is the track's :class:`hub.ingest.tap.EncodedTap`."""

    def __init__(self, receiver: Any, tap: Any) -> None:
        check_fastpath_internals(receiver)
        from aiortc import rtcrtpreceiver
        from aiortc.jitterbuffer import JitterFrame

        self.receiver = receiver
        self.tap = tap
        self._orig = receiver._handle_rtp_packet  # bound method: aiortc's own path
        self._clock = rtcrtpreceiver.clock
        self._StreamStatistics = rtcrtpreceiver.StreamStatistics
        self._JitterFrame = JitterFrame
        self._codecs: dict = getattr(receiver, RECEIVER_CODECS)
        self._active: dict = getattr(receiver, RECEIVER_ACTIVE_SSRC)
        self._streams: dict = getattr(receiver, RECEIVER_REMOTE_STREAMS)
        self._mapper = getattr(receiver, RECEIVER_TIMESTAMP_MAPPER)
        self._put = tap.deliver  # the tap's public entry: buffer, and decode if the role needs it
        self._active_ms: dict[int, int] = {}

    def install(self) -> None:
        self.receiver._handle_rtp_packet = self.handle  # instance attribute shadows the method
        setattr(self.receiver, SYNC_HANDLER, self.handle_sync)

    def remove(self) -> None:
        for name in ("_handle_rtp_packet", SYNC_HANDLER):
            try:
                delattr(self.receiver, name)
            except AttributeError:
                pass

    async def handle(self, packet: Any, arrival_time_ms: int) -> None:
        self.handle_sync(packet, arrival_time_ms)

    def handle_sync(self, packet: Any, arrival_time_ms: int) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _account(self, packet: Any, arrival_time_ms: int, codec: Any) -> None:
        """As aiortc does per packet: the SSRC's "active" time (``getSynchronizationSources``, which has a 10 s
        window, so refreshed at most every 250 ms instead of a ``datetime.now()`` per packet) and the RTCP
        receiver statistics (loss and jitter reported to the sender)."""
        ssrc = packet.ssrc
        last = self._active_ms.get(ssrc)
        if last is None or arrival_time_ms - last >= _ACTIVE_REFRESH_MS or arrival_time_ms < last:
            self._active[ssrc] = self._clock.current_datetime()
            self._active_ms[ssrc] = arrival_time_ms
        stream = self._streams.get(ssrc)
        if stream is None:
            stream = self._streams[ssrc] = self._StreamStatistics(codec.clockRate)
        stream.add(packet)


class RecordFastPath(LeanReceiverPath):
    """See the module docstring. ``tap`` is the record track's :class:`hub.ingest.tap.EncodedTap`."""

    def __init__(self, receiver: Any, tap: Any) -> None:
        super().__init__(receiver, tap)
        from aiortc import rtcrtpreceiver
        from aiortc.codecs import depayload

        r = receiver
        self._unwrap_rtx = rtcrtpreceiver.unwrap_rtx
        self._depayload = depayload
        self._rtx_ssrc: dict = getattr(r, RECEIVER_RTX_SSRC)
        self._nack = getattr(r, RECEIVER_NACK_GENERATOR)
        self._decoder_error = getattr(r, RECEIVER_DECODER_ERROR)
        self._jb = getattr(r, RECEIVER_JITTER_BUFFER)  # carries the tap's loss hook on .add
        self._cap_1 = self._jb._capacity - 1  # a partial frame this long would overrun aiortc's buffer: go slow
        self._kinds: dict[int, int] = {}  # payload type -> 0 other, 1 H.264, 2 RTX of H.264
        # assembler (fast mode): packets [origin, expected) form one partial frame with timestamp _ts
        self.fast = True  # False: aiortc's JitterBuffer holds the state (after a gap / reordering)
        self._expected: int | None = None
        self._origin = 0
        self._ts: int | None = None
        self._parts: list[bytes] = []
        self._packets: list[Any] = []
        self.fast_packets = 0
        self.slow_packets = 0
        self.frames = 0
        self.install()

    # -- classification ------------------------------------------------------------------------------------

    def _kind(self, pt: int) -> int:
        kind = self._kinds.get(pt)
        if kind is None:
            codec = self._codecs.get(pt)
            kind = 0
            if codec is not None:
                name = codec.name.lower()
                if name == "h264":
                    kind = 1
                elif name == "rtx":
                    apt = codec.parameters.get("apt")
                    apt_codec = self._codecs.get(apt) if isinstance(apt, int) else None
                    if apt_codec is not None and apt_codec.name.lower() == "h264":
                        kind = 2
            self._kinds[pt] = kind
        return kind

    # -- the packet handler ----------------------------------------------------------------------------------

    def handle_sync(self, packet: Any, arrival_time_ms: int) -> None:
        """The handler; synchronous so that ``DirectSrtp`` needs no coroutine per packet. The rare awaits of
        aiortc's (RTCP sends, the VP8 path) complete in place through ``run_now``."""
        pt = packet.payload_type
        kind = self._kinds.get(pt)
        if kind is None:
            kind = self._kind(pt)
        if not kind:
            run_now(self._orig(packet, arrival_time_ms), "record receiver")  # VP8 etc.: aiortc's own path
            return
        receiver = self.receiver
        if not receiver._enabled:
            return
        codec = self._codecs[pt]
        self._account(packet, arrival_time_ms, codec)
        ssrc = packet.ssrc

        if kind == 2:  # RTX: unwrap exactly as aiortc does
            original_ssrc = self._rtx_ssrc.get(ssrc)
            if original_ssrc is None:
                return
            apt = codec.parameters.get("apt")
            if len(packet.payload) < 2 or not isinstance(apt, int) or apt not in self._codecs:
                return
            packet = self._unwrap_rtx(packet, payload_type=apt, ssrc=original_ssrc)
            codec = self._codecs[apt]

        nack = self._nack
        if nack is not None and nack.add(packet):
            run_now(receiver._send_rtcp_nack(packet.ssrc, sorted(nack.missing)), "NACK")

        # depayload (aiortc's H264PayloadDescriptor.parse, FU-A and single NAL inlined)
        payload = packet.payload
        if payload:
            t = payload[0] & 0x1F
            if t == 28 and len(payload) >= 2:
                fu = payload[1]
                if fu & 0x80:
                    data = _START + bytes(((payload[0] & 0xE0) | (fu & 0x1F),)) + payload[2:]
                else:
                    data = payload[2:]
            elif 0 < t < 24 and len(payload) >= 2:
                data = _START + payload
            else:
                try:
                    data = self._depayload(codec, payload)
                except ValueError:
                    return
        else:
            data = b""
        packet._data = data

        seq = packet.sequence_number
        pli_flag = False
        frame = None
        if self.fast and (seq == self._expected or self._expected is None) and len(self._packets) < self._cap_1:
            self.fast_packets += 1
            ts = packet.timestamp
            if ts != self._ts and self._packets:
                assert self._ts is not None  # set with the first packet held
                frame = self._JitterFrame(data=b"".join(self._parts), timestamp=self._ts)
                self._origin = seq
                self._parts = [data]
                self._packets = [packet]
            else:
                if self._expected is None:
                    self._origin = seq
                self._parts.append(data)
                self._packets.append(packet)
            self._ts = ts
            self._expected = (seq + 1) & 0xFFFF
        else:
            self.slow_packets += 1
            if self.fast:
                self._to_slow()
            pli_flag, frame = self._jb.add(packet)
            self._maybe_fast(seq)

        if self._decoder_error.is_set():
            self._decoder_error.clear()
            pli_flag = True
        if pli_flag:
            run_now(receiver._send_rtcp_pli(packet.ssrc), "PLI")
        if frame is not None and getattr(receiver, RECEIVER_DECODER_THREAD):
            self.frames += 1
            frame.timestamp = self._mapper.map(frame.timestamp)
            self._put((codec, frame))

    # -- mode switches -------------------------------------------------------------------------------------

    def _to_slow(self) -> None:
        """Hand the partial frame over to aiortc's jitter buffer, as if it had received every packet."""
        jb = self._jb
        cap = jb._capacity
        slots = jb._packets
        for i in range(cap):
            slots[i] = None
        if self._packets:
            jb._origin = self._origin
            for p in self._packets:
                slots[p.sequence_number % cap] = p
        else:
            jb._origin = None
        self._packets = []
        self._parts = []
        self.fast = False

    def _maybe_fast(self, seq: int) -> None:
        """Back to the fast path when aiortc's buffer holds exactly one contiguous partial frame ending at
        ``seq`` (the newest packet) and nothing else."""
        jb = self._jb
        origin = jb._origin
        if origin is None:
            return
        cap = jb._capacity
        slots = jb._packets
        n = (seq - origin) & 0xFFFF
        if n >= cap:
            return
        packets = []
        ts = None
        for i in range(n + 1):
            p = slots[(origin + i) % cap]
            if p is None or (ts is not None and p.timestamp != ts) or p.sequence_number != ((origin + i) & 0xFFFF):
                return
            ts = p.timestamp
            packets.append(p)
        # nothing stored beyond seq (count the non-empty slots)
        if sum(1 for s in slots if s is not None) != len(packets):
            return
        for i in range(cap):
            slots[i] = None
        self._origin = origin
        self._packets = packets
        self._parts = [p._data for p in packets]
        self._ts = ts
        self._expected = (seq + 1) & 0xFFFF
        self.fast = True


def install_record_fastpath(receiver: Any, tap: Any) -> RecordFastPath:
    """Shadow ``receiver._handle_rtp_packet`` with the lean path (record track, not decoded)."""
    return RecordFastPath(receiver, tap)


# ------------------------------------------------------------------------------------------------------------
# Batched datagram reads (asyncio selector event loop only)
# ------------------------------------------------------------------------------------------------------------

MAX_DATAGRAMS_PER_WAKEUP = 64


@functools.lru_cache(maxsize=1)
def _cpython_reader_as_expected() -> bool:
    """The reader this replaces still does what the replacement mirrors (else: leave the transport alone)."""
    from asyncio import selector_events

    try:
        cls = selector_events._SelectorDatagramTransport  # type: ignore[attr-defined]  # private: not in typeshed
        src = inspect.getsource(cls._read_ready)
        init = inspect.getsource(cls.__init__)
    except (OSError, TypeError, AttributeError):
        return False
    needles = ("self._sock.recvfrom(self.max_size)", "self._protocol.error_received(exc)",
               "self._protocol.datagram_received(data, addr)", "if self._conn_lost:")
    return all(n in src for n in needles) and "self._add_reader" in init


def batch_datagram_reads(transport: Any, max_batch: int = MAX_DATAGRAMS_PER_WAKEUP,
                         media: Callable[[bytes], bool] | None = None, poll_interval_s: float = 0.0) -> bool:
    """Make an asyncio selector-loop UDP transport read every queued datagram (up to ``max_batch``) per
    readiness event instead of one (libuv/uvloop do the same, 32 per event).

    CPython's ``_SelectorDatagramTransport._read_ready`` does one ``recvfrom`` per event-loop iteration, so a
    video frame's burst of ~20 RTP packets costs ~20 iterations (``epoll_wait``, handle scheduling, a future
    wake-up of aiortc's receive task per packet). Read in a batch, the burst lands in aioice's queue at once and
    aiortc's receive task takes it without suspending between packets. Same order, same callbacks, same error
    handling as CPython's reader. Returns False (and changes nothing) when ``transport`` is not such a transport.

    ``media``: called with each RTP/RTCP datagram (first byte 128-191, RFC 7983) instead of the protocol; when it
    returns False the datagram goes to the protocol after all (``hub.ingest.srtp_direct.DirectSrtp``).

    ``poll_interval_s`` > 0: once ``media`` has taken a datagram (the camera streams), the socket leaves the
    selector and is drained by a :class:`DatagramPoller` every ``poll_interval_s`` instead (see there).
    """
    from asyncio import selector_events

    cls = selector_events._SelectorDatagramTransport  # type: ignore[attr-defined]  # private: not in typeshed
    if not isinstance(transport, cls) or not _cpython_reader_as_expected():
        return False
    loop = transport._loop
    sock = transport._sock
    fd = transport._sock_fd
    if getattr(transport, "_hub_batched", False) or not hasattr(loop, "_add_reader"):
        return False
    if transport._conn_lost:
        return False
    polled = False

    def drain(limit: int) -> bool:
        """Read up to ``limit`` datagrams; True when ``media`` took one."""
        recvfrom = sock.recvfrom
        protocol = transport._protocol
        size = transport.max_size
        took = False
        for _ in range(limit):
            if transport._conn_lost:
                return took
            try:
                data, addr = recvfrom(size)
            except (BlockingIOError, InterruptedError):
                return took
            except OSError as exc:
                protocol.error_received(exc)
                return took
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:  # noqa: BLE001 - as CPython's reader
                transport._fatal_error(exc, "Fatal read error on datagram transport")
                return took
            else:
                if media is not None and 127 < data[0] < 192 and media(data):
                    took = True
                    continue
                protocol.datagram_received(data, addr)
        return took

    def _read_ready() -> None:
        nonlocal polled
        if drain(max_batch) and poll_interval_s > 0 and not polled and not transport._conn_lost:
            polled = True
            loop._remove_reader(fd)
            with contextlib.suppress(OSError):  # room for one poll interval of a keyframe burst
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, POLL_RCVBUF_BYTES)
            DatagramPoller.for_loop(loop, poll_interval_s).add(transport, lambda: drain(MAX_DATAGRAMS_PER_POLL))

    def _swap() -> None:
        if transport._conn_lost or transport._sock is None:
            return
        loop._remove_reader(fd)
        loop._add_reader(fd, _read_ready)

    # The transport registers its reader with call_soon after creation: swap after that has run.
    loop.call_soon(_swap)
    transport._hub_batched = True
    return True


MAX_DATAGRAMS_PER_POLL = 2048
POLL_RCVBUF_BYTES = 1 << 20


class DatagramPoller:
    """Drains streaming cameras' UDP sockets on one timer per event loop ("interrupt moderation").

    Read on readiness, a 720p camera wakes the event loop ~100 times a second (every audio packet, every
    paced video burst), and each wake-up costs an ``epoll_wait``, the loop's bookkeeping, a callback and,
    above all, code and data that the browser's encoder (or anything else on the machine) evicted from the CPU
    caches since the last packet: a packet handled alone costs several times one handled in a batch. Drained
    every ``interval_s`` (60 ms by default, ``ingest.read_interval_ms``), all cameras together cost 17 wake-ups
    a second (``scripts/bench ingest``, one camera: 4.3 % of a core read every 20 ms, 3.8 % every 40 ms,
    3.1 % every 60 ms, 3.0 % every 80 ms). The price is up to one interval of added latency on media
    (invisible next to a 5 s pre-roll and a 200 ms motion debounce); the kernel holds the datagrams meanwhile
    (the socket's receive buffer is raised to :data:`POLL_RCVBUF_BYTES`). Sockets only join once media flows, so
    ICE and the DTLS handshake keep their readiness-driven reads and connect as fast as before. The timer stops
    when the last socket closes.
    """

    _by_loop: ClassVar[weakref.WeakKeyDictionary[Any, dict[float, DatagramPoller]]] = weakref.WeakKeyDictionary()

    def __init__(self, loop: Any, interval_s: float) -> None:
        self.loop = loop
        self.interval_s = interval_s
        self._readers: dict[int, tuple[Any, Callable[[], Any]]] = {}  # id(transport) -> (transport, drain)
        self._handle: Any = None
        self.ticks = 0

    @classmethod
    def for_loop(cls, loop: Any, interval_s: float) -> DatagramPoller:
        pollers = cls._by_loop.setdefault(loop, {})
        poller = pollers.get(interval_s)
        if poller is None:
            poller = pollers[interval_s] = cls(loop, interval_s)
        return poller

    def __len__(self) -> int:
        return len(self._readers)

    def add(self, transport: Any, drain: Callable[[], Any]) -> None:
        self._readers[id(transport)] = (transport, drain)
        if self._handle is None:
            self._handle = self.loop.call_later(self.interval_s, self._tick)

    def _tick(self) -> None:
        self._handle = None
        self.ticks += 1
        for key, (transport, drain) in list(self._readers.items()):
            if transport._conn_lost or transport._sock is None:
                del self._readers[key]
                continue
            try:
                drain()
            except Exception:
                logger.exception("datagram poller: reading a socket failed")
        if self._readers:
            self._handle = self.loop.call_later(self.interval_s, self._tick)


ICE_CONNECTION = "_connection"  # aiortc RTCIceTransport / RTCIceGatherer -> aioice.Connection
AIOICE_PROTOCOLS = "_protocols"  # aioice.Connection -> [StunProtocol], each with .transport (asyncio)


def batch_ice_reads(pc: Any, poll_interval_s: float = 0.0) -> tuple[int, list[Any]]:
    """Apply :func:`batch_datagram_reads` to every local UDP socket of ``pc``'s ICE transports (call after
    ``setLocalDescription``: candidates are gathered then). SRTP datagrams on those sockets go
    straight to the receivers (:class:`hub.ingest.srtp_direct.DirectSrtp`, one per DTLS transport) and, with
    ``poll_interval_s`` > 0, the sockets are then drained by a :class:`DatagramPoller`. Returns how
    many sockets were switched and the ``DirectSrtp`` objects (for their counters). Private aiortc/aioice names,
    read defensively: a missing one switches nothing (aiortc's own reads go on)."""
    n = 0
    seen: set[int] = set()
    directs: list[Any] = []
    for tr in pc.getTransceivers():
        for dtls in (tr.receiver.transport, tr.sender.transport):
            ice = getattr(dtls, "transport", None)
            conn = getattr(ice, ICE_CONNECTION, None)
            if conn is None or id(conn) in seen:
                continue
            seen.add(id(conn))
            media = None
            try:
                media = DirectSrtp(dtls)
            except DirectSrtpInternalsError as exc:
                logger.warning("direct SRTP dispatch off: %s", exc)
            else:
                directs.append(media)
            for proto in list(getattr(conn, AIOICE_PROTOCOLS, None) or []):
                t = getattr(proto, "transport", None)
                # Without media nothing ever switches a socket to the poller: poll_interval_s is moot then.
                if t is not None and batch_datagram_reads(t, media=media, poll_interval_s=poll_interval_s):
                    n += 1
    return n, directs
