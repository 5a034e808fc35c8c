"""SRTP datagrams from the ICE socket straight to the RTP receivers (private aiortc / aioice API, aiortc 1.16).

On aiortc's own path every media datagram takes four hand-offs before a receiver sees it:

1. aioice's ``StunProtocol.datagram_received`` first tries to parse it as STUN (a ``ValueError`` per packet),
2. then puts it on the ICE connection's ``asyncio.Queue``,
3. the DTLS transport's receive task wakes up (``Connection.recv`` -> ``RTCIceTransport._recv`` ->
   ``RTCDtlsTransport._recv_next``), classifies the first byte and unprotects it,
4. and awaits ``RtpPacket.parse`` -> ``RtpRouter.route_rtp`` -> ``receiver._handle_rtp_packet``.

A 720p camera sends ~270 datagrams a second, and steps 1-3 were about a third of the hub's event-loop CPU per
camera (py-spy on ``scripts/bench ingest``). :class:`DirectSrtp` does steps 3-4 for SRTP/SRTCP datagrams right in
the socket's read callback (``hub.ingest.fastpath.batch_datagram_reads``), with aiortc's own objects: the DTLS
transport's SRTP session, header-extension map and router, and the receivers' ``_handle_rtp_packet`` (the record
track's lean one included). STUN (consent checks) and DTLS (handshake, the data channel) still take aioice's and
aiortc's own path: RFC 7983 tells them apart by the first byte, as aiortc does (128-191: RTP/RTCP).

What stays exactly as in aiortc: the order in which packets reach a receiver, the SRTP replay/auth checks (an
unauthenticated or replayed datagram is dropped and counted), RTCP handling, the DTLS transport's rx counters.
What differs: a receiver that raises does not tear the whole transport down (aiortc's receive task would die
and the camera go dark); the exception is logged and the next packet is handled.

The hub's own handlers (record H.264, Opus) are synchronous and called directly (``SYNC_HANDLER``); their packets,
once the SSRC is known, get a lean header parse that skips aiortc's decoding of every header extension (mid,
abs-send-time, transport-cc...: nothing on these receivers reads them; the audio level is read inline). aiortc's
handlers (detect track, VP8, RTCP) are coroutines that never suspend on this path (sending a NACK/PLI ends in a
synchronous ``sendto``); :func:`run_now` runs them to completion in place and, should one ever suspend,
finishes it on the event loop as a task would.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import struct
import time
from collections.abc import Callable, Coroutine
from typing import Any

from hub.ingest.aiortc_names import RECEIVER_ESTIMATOR

logger = logging.getLogger(__name__)

DTLS_RX_BYTES = "_RTCDtlsTransport__rx_bytes"
DTLS_RX_PACKETS = "_RTCDtlsTransport__rx_packets"
_DTLS_NAMES = ("_rx_srtp", "_rtp_router", "_rtp_header_extensions_map", "_handle_rtcp_data", "_state",
               DTLS_RX_BYTES, DTLS_RX_PACKETS)
# aiortc 1.16's RTCDtlsTransport._recv_next / _handle_rtp_data: what DirectSrtp.__call__ mirrors.
_RECV_NEEDLES = (
    "elif first_byte > 127 and first_byte < 192 and self._rx_srtp:",
    "arrival_time_ms = clock.current_ms()",
    "if is_rtcp(data):",
    "data = self._rx_srtp.unprotect_rtcp(data)",
    "await self._handle_rtcp_data(data)",
    "data = self._rx_srtp.unprotect(data)",
    "await self._handle_rtp_data(data, arrival_time_ms=arrival_time_ms)",
    "except pylibsrtp.Error as exc:",
    "self.__rx_bytes += len(data)",
    "self.__rx_packets += 1",
)
_RTP_NEEDLES = (
    "packet = RtpPacket.parse(data, self._rtp_header_extensions_map)",
    "receiver = self._rtp_router.route_rtp(packet)",
    "await receiver._handle_rtp_packet(packet, arrival_time_ms=arrival_time_ms)",
)
# A receiver may carry a synchronous packet handler under this attribute (the hub's lean record and audio paths):
# DirectSrtp calls it instead of creating and running a coroutine per packet.
SYNC_HANDLER = "_hub_handle_rtp_sync"
# clock.current_ms() is milliseconds since the NTP epoch (1900-01-01 UTC); time.time() is the same clock.
NTP_UNIX_OFFSET_S = 2208988800


_RTP_HEADER = struct.Struct("!BBHLL")
_EXT_HEADER = struct.Struct("!HH")


class DirectSrtpInternalsError(RuntimeError):
    """aiortc's DTLS receive path is not what hub/ingest/srtp_direct.py mirrors."""


@functools.lru_cache(maxsize=1)
def _check_sources() -> None:
    from aiortc import rtcdtlstransport

    for fn, needles in ((rtcdtlstransport.RTCDtlsTransport._recv_next, _RECV_NEEDLES),
                        (rtcdtlstransport.RTCDtlsTransport._handle_rtp_data, _RTP_NEEDLES)):
        src = inspect.getsource(fn)
        for needle in needles:
            if needle not in src:
                raise DirectSrtpInternalsError(
                    f"aiortc {fn.__qualname__} changed: expected {needle!r}; hub/ingest/srtp_direct.py mirrors "
                    "aiortc 1.16"
                )


def check_direct_internals(dtls: Any | None = None) -> None:
    """Raise (naming it) when a private name or source fragment this module mirrors has changed."""
    _check_sources()
    if dtls is not None:
        for name in _DTLS_NAMES:
            if not hasattr(dtls, name):
                raise DirectSrtpInternalsError(
                    f"RTCDtlsTransport has no attribute {name!r}; hub/ingest/srtp_direct.py mirrors aiortc 1.16"
                )


def run_now(coro: Coroutine[Any, Any, Any], what: str = "handler") -> bool:
    """Run ``coro`` to completion here when it does not suspend (True); otherwise let the event loop finish it
    as a task would (False). Exceptions are logged, never raised: one bad packet must not stop the camera."""
    try:
        yielded = coro.send(None)
    except StopIteration:
        return True
    except Exception:
        logger.exception("srtp_direct: %s failed", what)
        return True
    _resume_later(coro, yielded, what)
    return False


def _resume_later(coro: Coroutine[Any, Any, Any], yielded: Any, what: str) -> None:
    loop = asyncio.get_running_loop()

    def wait(y: Any) -> None:
        if y is None:  # bare yield (asyncio.sleep(0)): run again on the next iteration
            loop.call_soon(step)
        else:  # a future awaited inside: resume when it is done (Task's protocol)
            y._asyncio_future_blocking = False
            y.add_done_callback(step)

    def step(_: Any = None) -> None:
        try:
            y = coro.send(None)
        except StopIteration:
            return
        except Exception:
            logger.exception("srtp_direct: %s failed", what)
            return
        wait(y)

    wait(yielded)


class DirectSrtp:
    """Callable for ``batch_datagram_reads(media=...)``: handles one SRTP/SRTCP datagram of ``dtls`` (an
    ``aiortc.RTCDtlsTransport``) and returns True, or returns False to leave it to aioice/aiortc (before the
    DTLS handshake has made the SRTP session, or once the transport is no longer connected)."""

    def __init__(self, dtls: Any) -> None:
        check_direct_internals(dtls)
        import pylibsrtp
        from aiortc.rtcdtlstransport import State
        from aiortc.rtp import RtpPacket

        self.dtls = dtls
        self._connected = State.CONNECTED
        self._parse: Callable[..., Any] = RtpPacket.parse
        self._srtp_error = pylibsrtp.Error
        self._RtpPacket = RtpPacket
        self._lean_modes: dict[Any, int] = {}
        self.rtp = 0  # RTP packets handed to a receiver here
        self.lean = 0  # of which parsed by _lean_route
        self.rtcp = 0  # SRTCP datagrams handled here
        self.unroutable = 0  # no receiver for the SSRC / payload type (aiortc drops them too)
        self.dropped = 0  # failed SRTP authentication / replay check, or not parseable as RTP
        self.suspended = 0  # handlers that did suspend and were finished by the loop (expected: 0)

    def __call__(self, data: bytes) -> bool:
        dtls = self.dtls
        srtp = dtls._rx_srtp
        if srtp is None or dtls._state is not self._connected:
            return False
        n = len(data)
        setattr(dtls, DTLS_RX_BYTES, getattr(dtls, DTLS_RX_BYTES) + n)
        setattr(dtls, DTLS_RX_PACKETS, getattr(dtls, DTLS_RX_PACKETS) + 1)
        try:
            if n >= 2 and 192 <= data[1] <= 208:  # aiortc.rtp.is_rtcp
                plain = srtp.unprotect_rtcp(data)
                self.rtcp += 1
                if not run_now(dtls._handle_rtcp_data(plain), "RTCP handler"):
                    self.suspended += 1
                return True
            plain = srtp.unprotect(data)
        except self._srtp_error as exc:
            self.dropped += 1
            logger.debug("srtp_direct: SRTP unprotect failed: %s", exc)
            return True
        lean = self._lean_route(plain)
        if lean is not None:
            receiver, packet = lean
            self.lean += 1
        else:
            try:
                packet = self._parse(plain, dtls._rtp_header_extensions_map)
            except ValueError as exc:
                self.dropped += 1
                logger.debug("srtp_direct: RTP parsing failed: %s", exc)
                return True
            receiver = dtls._rtp_router.route_rtp(packet)
            if receiver is None:
                self.unroutable += 1
                return True
        self.rtp += 1
        arrival_ms = int((time.time() + NTP_UNIX_OFFSET_S) * 1000)
        sync = getattr(receiver, SYNC_HANDLER, None)
        if sync is not None:
            try:
                sync(packet, arrival_ms)
            except Exception:
                logger.exception("srtp_direct: RTP receiver failed")
            return True
        if not run_now(receiver._handle_rtp_packet(packet, arrival_time_ms=arrival_ms), "RTP receiver"):
            self.suspended += 1
        return True

    # -- lean parse ----------------------------------------------------------------------------------------

    def _lean_mode(self, receiver: Any) -> int:
        """-1: not lean; 0: lean, no extension needed; >0: lean, with the RFC 6464 audio level of that id."""
        if getattr(receiver, SYNC_HANDLER, None) is None or getattr(receiver, RECEIVER_ESTIMATOR, None) is not None:
            return -1  # aiortc's own handler (or its bandwidth estimator) may read any header extension
        if getattr(receiver, "_RTCRtpReceiver__kind", "video") != "audio":
            return 0
        ids = getattr(self.dtls._rtp_header_extensions_map, "_HeaderExtensionsMap__ids", None)
        return getattr(ids, "audio_level", None) or 0

    def _lean_route(self, plain: bytes) -> tuple[Any, Any] | None:
        """(receiver, packet) for a packet of a known SSRC whose receiver is one of the hub's lean handlers, parsed
        without aiortc's generic header-extension decoding (mid, abs-send-time, transport-cc... are not read on
        these receivers; the audio level is). None: take aiortc's own parse and router (first packets of an SSRC,
        CSRCs, anything malformed, other receivers)."""
        n = len(plain)
        if n < 12:
            return None
        b0, b1, seq, ts, ssrc = _RTP_HEADER.unpack_from(plain)
        router = self.dtls._rtp_router
        receiver = router.ssrc_table.get(ssrc)
        if receiver is None or b0 & 0xCF != 0x80:  # version 2 and no CSRC, else the generic parse
            return None
        mode = self._lean_modes.get(receiver)
        if mode is None:
            mode = self._lean_modes[receiver] = self._lean_mode(receiver)
        pt = b1 & 0x7F
        if mode < 0 or receiver not in router.payload_type_table.get(pt, ()):
            return None
        packet = self._RtpPacket(payload_type=pt, marker=b1 >> 7, sequence_number=seq, timestamp=ts, ssrc=ssrc)
        pos = 12
        if b0 & 0x10:
            if n < 16:
                return None
            profile, length = _EXT_HEADER.unpack_from(plain, 12)
            pos = 16 + 4 * length
            if n < pos:
                return None
            if mode and profile == 0xBEDE:  # one-byte elements (RFC 8285): find the audio level
                i = 16
                while i < pos:
                    h = plain[i]
                    if h == 0:
                        i += 1
                        continue
                    if h >> 4 == mode:
                        if i + 1 < pos:
                            packet.extensions.audio_level = (plain[i + 1] & 0x80 == 0x80, plain[i + 1] & 0x7F)
                        break
                    i += (h & 0x0F) + 2
        end = n
        if b0 & 0x20:
            pad = plain[-1]
            if not pad or pad > n - pos:
                return None
            packet.padding_size = pad
            end = n - pad
        packet.payload = plain[pos:end]
        return receiver, packet

    def stats(self) -> dict[str, int]:
        return {"rtp": self.rtp, "lean": self.lean, "rtcp": self.rtcp, "unroutable": self.unroutable,
                "dropped": self.dropped, "suspended": self.suspended}
