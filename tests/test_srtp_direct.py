"""hub/ingest/srtp_direct.py (SRTP straight from the socket to the receivers) and the socket poller of
hub/ingest/fastpath.py, on real loopback UDP sockets; the full WebRTC path is in test_ingest_webrtc.py."""

from __future__ import annotations

import asyncio
import logging
import socket
from pathlib import Path

import pytest

from hub.ingest.fastpath import POLL_RCVBUF_BYTES, DatagramPoller, batch_datagram_reads
from hub.ingest.srtp_direct import DirectSrtp, DirectSrtpInternalsError, check_direct_internals, run_now
from tests.udp import Arrivals, collecting_endpoint


async def test_run_now_runs_in_place_or_finishes_on_the_loop(caplog) -> None:
    done: list[str] = []

    async def plain() -> None:
        done.append("plain")

    assert run_now(plain()) is True
    assert done == ["plain"]  # ran before run_now returned

    fut = asyncio.get_running_loop().create_future()

    finished = asyncio.Event()

    async def waits() -> None:
        done.append(await fut)
        await asyncio.sleep(0)  # a bare yield (the coroutine suspends once more), then finish
        done.append("after")
        finished.set()

    assert run_now(waits()) is False
    assert done == ["plain"]
    fut.set_result("woken")
    await asyncio.wait_for(finished.wait(), 5)  # run_now left it to finish on the loop
    assert done == ["plain", "woken", "after"]

    async def boom() -> None:
        raise RuntimeError("bad packet")

    with caplog.at_level(logging.ERROR, logger="hub.ingest.srtp_direct"):
        assert run_now(boom(), "test handler") is True  # logged, not raised
    assert "test handler failed" in caplog.text


async def _endpoint(media, poll_interval_s: float, arrivals: Arrivals):
    transport, got = await collecting_endpoint(arrivals)
    assert batch_datagram_reads(transport, media=media, poll_interval_s=poll_interval_s)
    await asyncio.sleep(0)  # one loop step, not a wait: the batched reader is registered with call_soon
    return transport, got


class TickWatch:
    """Tells ``arrivals`` after every tick of a DatagramPoller (made before any socket joins it, so every tick
    it schedules is the wrapped one)."""

    def __init__(self, poller: DatagramPoller, arrivals: Arrivals) -> None:
        assert poller._handle is None and len(poller) == 0
        tick = poller._tick

        def watched() -> None:
            tick()
            arrivals.notify()

        poller._tick = watched  # type: ignore[method-assign]


async def test_media_datagrams_switch_the_socket_to_the_poller() -> None:
    media_seen: list[bytes] = []
    arrivals = Arrivals()

    def media(data: bytes) -> bool:
        if data.startswith(b"\x80refuse"):
            return False  # e.g. before the DTLS handshake: the protocol gets it after all
        media_seen.append(data)
        arrivals.notify()
        return True

    loop = asyncio.get_running_loop()
    poller = DatagramPoller.for_loop(loop, 0.02)
    TickWatch(poller, arrivals)
    transport, got = await _endpoint(media, poll_interval_s=0.02, arrivals=arrivals)
    port = transport.get_extra_info("sockname")[1]
    fd = transport._sock_fd
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        # DTLS (first byte 20-63) and STUN (0-3) go to the protocol; the socket stays in the selector.
        tx.sendto(b"\x16dtls", ("127.0.0.1", port))
        tx.sendto(b"\x00\x01stun", ("127.0.0.1", port))
        tx.sendto(b"\x80refuse", ("127.0.0.1", port))
        await arrivals.until(lambda: len(got) >= 3, "DTLS, STUN and the refused datagram")
        assert got == [b"\x16dtls", b"\x00\x01stun", b"\x80refuse"] and media_seen == []
        assert fd in loop._selector.get_map()

        # The first media datagram taken moves the socket to the poller.
        tx.sendto(b"\x80first", ("127.0.0.1", port))
        await arrivals.until(lambda: len(media_seen) >= 1, "the first media datagram")
        assert media_seen == [b"\x80first"]
        assert fd not in loop._selector.get_map()
        assert DatagramPoller.for_loop(loop, 0.02) is poller and len(poller) == 1
        ticks = poller.ticks

        # From now on the poller drains everything, in order, media and the rest.
        expected = []
        for i in range(300):
            data = (b"\x80" if i % 10 else b"\x16") + str(i).encode()
            tx.sendto(data, ("127.0.0.1", port))
            expected.append(data)
        await arrivals.until(lambda: len(media_seen) + len(got) >= 1 + 3 + 300, "the 300 datagrams")
        assert media_seen[1:] == [d for d in expected if d[0] == 0x80]
        assert got[3:] == [d for d in expected if d[0] == 0x16]
        assert poller.ticks > ticks
        # The receive buffer was raised for a poll interval's keyframe burst (Linux doubles it, capped by rmem_max).
        rmem_max = int(Path("/proc/sys/net/core/rmem_max").read_text())
        rcvbuf = transport.get_extra_info("socket").getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        assert rcvbuf == 2 * min(POLL_RCVBUF_BYTES, rmem_max)
    finally:
        tx.close()
        transport.close()
    # A closed socket leaves the poller at its next tick, and the timer stops with the last one.
    ticks = poller.ticks
    await arrivals.until(lambda: poller.ticks > ticks, "a poller tick after the close")
    assert len(poller) == 0 and poller._handle is None


async def test_without_poll_interval_the_socket_stays_in_the_selector() -> None:
    loop = asyncio.get_running_loop()
    arrivals = Arrivals()
    taken: list[bytes] = []

    def media(data: bytes) -> bool:
        taken.append(data)
        arrivals.notify()
        return True

    transport, _ = await _endpoint(media, poll_interval_s=0.0, arrivals=arrivals)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        tx.sendto(b"\x80rtp", ("127.0.0.1", transport.get_extra_info("sockname")[1]))
        await arrivals.until(lambda: taken == [b"\x80rtp"], "the media datagram")
        assert transport._sock_fd in loop._selector.get_map()  # taken as media, yet still read on readiness
    finally:
        tx.close()
        transport.close()


def test_internals_are_as_mirrored() -> None:
    from aiortc import RTCCertificate, RTCDtlsTransport, RTCIceGatherer, RTCIceTransport

    dtls = RTCDtlsTransport(RTCIceTransport(RTCIceGatherer()), [RTCCertificate.generateCertificate()])
    check_direct_internals(dtls)

    class Moved:  # a DTLS transport of an aiortc that renamed what this mirrors
        pass

    with pytest.raises(DirectSrtpInternalsError, match="_rx_srtp"):
        DirectSrtp(Moved())


async def test_forged_and_early_datagrams_are_refused_or_dropped() -> None:
    """A datagram before the handshake is left to aiortc (which drops it); one that fails SRTP authentication
    once the session exists is dropped and counted, and nothing reaches a receiver."""
    import os

    import pylibsrtp
    from aiortc import RTCCertificate, RTCDtlsTransport, RTCIceGatherer, RTCIceTransport
    from aiortc.rtcdtlstransport import State

    dtls = RTCDtlsTransport(RTCIceTransport(RTCIceGatherer()), [RTCCertificate.generateCertificate()])
    direct = DirectSrtp(dtls)
    forged = b"\x80\x60\x00\x01" + os.urandom(40)
    assert direct(forged) is False  # no SRTP session yet

    key = os.urandom(30)
    dtls._rx_srtp = pylibsrtp.Session(pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND))
    dtls._state = State.CONNECTED
    assert direct(forged) is True
    assert direct(b"\x80\xc8" + os.urandom(40)) is True  # forged SRTCP
    assert direct.stats() == {"rtp": 0, "lean": 0, "rtcp": 0, "unroutable": 0, "dropped": 2, "suspended": 0}
    dtls._state = State.CLOSED
    assert direct(forged) is False


class _LeanReceiver:
    """Stands in for an aiortc receiver carrying one of the hub's synchronous handlers."""

    _RTCRtpReceiver__remote_bitrate_estimator = None

    def __init__(self, kind: str) -> None:
        self._RTCRtpReceiver__kind = kind
        self._hub_handle_rtp_sync = lambda packet, ms: None


def _direct_with_receivers():
    from aiortc import RTCCertificate, RTCDtlsTransport, RTCIceGatherer, RTCIceTransport
    from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters

    dtls = RTCDtlsTransport(RTCIceTransport(RTCIceGatherer()), [RTCCertificate.generateCertificate()])
    dtls._rtp_header_extensions_map.configure(RTCRtpParameters(headerExtensions=[
        RTCRtpHeaderExtensionParameters(id=1, uri="urn:ietf:params:rtp-hdrext:ssrc-audio-level"),
        RTCRtpHeaderExtensionParameters(id=2, uri="http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"),
        RTCRtpHeaderExtensionParameters(id=4, uri="urn:ietf:params:rtp-hdrext:sdes:mid"),
        RTCRtpHeaderExtensionParameters(
            id=3, uri="http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"),
    ]))
    video, audio = _LeanReceiver("video"), _LeanReceiver("audio")
    dtls._rtp_router.register_receiver(video, ssrcs=[1111], payload_types=[102, 103])
    dtls._rtp_router.register_receiver(audio, ssrcs=[2222], payload_types=[111])
    return DirectSrtp(dtls), dtls, video, audio


def test_lean_parse_matches_aiortc() -> None:
    """Every field the lean handlers read is what aiortc's own parse gives, for Chrome-shaped packets with and
    without extensions, padding, audio levels; anything unusual falls back to aiortc's parse."""
    from aiortc.rtp import RtpPacket

    direct, dtls, video, audio = _direct_with_receivers()
    emap = dtls._rtp_header_extensions_map
    cases = []
    for pt, ssrc, receiver in ((102, 1111, video), (103, 1111, video), (111, 2222, audio)):
        for ext in (False, True):
            for padding in (0, 1, 7):
                p = RtpPacket(payload_type=pt, marker=pt % 2, sequence_number=65535 - pt, timestamp=4_000_000_000,
                              ssrc=ssrc, payload=bytes(range(40)))
                if ext:
                    p.extensions.mid = "0"
                    p.extensions.abs_send_time = 0x123456
                    p.extensions.transport_sequence_number = 77
                    if receiver is audio:
                        p.extensions.audio_level = (True, 42)
                p.padding_size = padding
                cases.append((bytes(p.serialize(emap)), receiver))
    for raw, receiver in cases:
        want = RtpPacket.parse(raw, emap)
        got = direct._lean_route(raw)
        assert got is not None and got[0] is receiver
        packet = got[1]
        for name in ("payload_type", "marker", "sequence_number", "timestamp", "ssrc", "payload", "padding_size",
                     "csrc"):
            assert getattr(packet, name) == getattr(want, name), name
        assert packet.extensions.audio_level == want.extensions.audio_level

    unknown_ssrc = RtpPacket(payload_type=102, ssrc=9999, payload=b"x").serialize(emap)
    wrong_pt = RtpPacket(payload_type=111, ssrc=1111, payload=b"x").serialize(emap)
    with_csrc = RtpPacket(payload_type=102, ssrc=1111, payload=b"x")
    with_csrc.csrc = [5]
    bad_padding = bytearray(RtpPacket(payload_type=102, ssrc=1111, payload=b"xyz").serialize(emap))
    bad_padding[0] |= 0x20
    bad_padding[-1] = 200
    truncated_ext = bytes(cases[3][0][:14])
    for raw in (unknown_ssrc, wrong_pt, with_csrc.serialize(emap), bytes(bad_padding), truncated_ext, b"\x80\x66"):
        assert direct._lean_route(bytes(raw)) is None
