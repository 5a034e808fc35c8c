"""hub/ingest/fastpath.py against aiortc's own receive path (JitterBuffer + decoder queue) on the same packets.

Both paths run on real ``RTCRtpReceiver`` objects with the hub's ``EncodedTap`` (role ``record``); the frames the
tap receives must be byte-for-byte identical, in order, with the same rebased timestamps, and loss must be
signalled the same way (``on_broken`` + PLI), for in-order, reordered, duplicated, RTX-repaired and lost packets.
"""

from __future__ import annotations

import asyncio
import copy
import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import bench_rtp
from aiortc.rtp import RtpPacket, wrap_rtx

from hub.ingest.fastpath import RecordFastPath, check_fastpath_internals


@pytest.fixture(scope="module")
def packets() -> list[RtpPacket]:
    # 320x240 at a high bitrate: keyframes of many FU-A packets, STAP-A SPS/PPS, small inter frames;
    # sequence numbers wrap through 65535.
    frames = bench_rtp.encode_stream(4.0, 1500, width=320, height=240, fps=15, gop_s=1.0)
    pkts = bench_rtp.make_packets(frames, seq0=65500)
    assert len(pkts) > 150
    return pkts


def run(pkts: list[RtpPacket], fast: bool) -> tuple[list, int, list]:
    sink = bench_rtp.CountingSink()
    rtcp: list = []
    receiver = bench_rtp.make_receiver(rtcp)
    bench_rtp.install(receiver, sink, "fast" if fast else "aiortc")

    async def go() -> None:
        for i, p in enumerate(pkts):
            await receiver._handle_rtp_packet(copy.copy(p), arrival_time_ms=i * 4)

    asyncio.run(go())
    frames = [(f.data, f.pts, f.keyframe) for f in sink.frames]
    plis = [type(x).__name__ + str(getattr(x, "fmt", "")) for x in rtcp]
    return frames, sink.broken, plis


def assert_same(pkts: list[RtpPacket]) -> tuple[list, int]:
    ref, ref_broken, ref_rtcp = run(pkts, fast=False)
    got, broken, rtcp = run(pkts, fast=True)
    assert len(got) == len(ref)
    for i, (a, b) in enumerate(zip(got, ref, strict=False)):
        assert a == b, f"frame {i} differs"
    assert broken == ref_broken
    assert rtcp == ref_rtcp  # same NACKs and PLIs, in the same order
    return got, broken


def test_internals_checked() -> None:
    check_fastpath_internals(bench_rtp.make_receiver())


def test_in_order_identical_and_all_on_the_fast_path(packets) -> None:
    frames, broken = assert_same(packets)
    assert len(frames) > 50 and broken == 0
    sink = bench_rtp.CountingSink()
    receiver = bench_rtp.make_receiver()
    tap = bench_rtp.install(receiver, sink, "fast")
    fp = receiver._handle_rtp_packet.__self__
    assert isinstance(fp, RecordFastPath) and fp.tap is tap

    async def go() -> None:
        for p in packets:
            await receiver._handle_rtp_packet(copy.copy(p), arrival_time_ms=0)

    asyncio.run(go())
    assert fp.slow_packets == 0 and fp.fast_packets == len(packets)
    assert receiver.getSynchronizationSources()[0].source == bench_rtp.SSRC
    st = receiver._RTCRtpReceiver__remote_streams[bench_rtp.SSRC]
    assert st.packets_received == len(packets) and st.packets_lost == 0


def test_reordering_and_duplicates(packets) -> None:
    pkts = list(packets)
    rng = random.Random(7)
    for i in range(5, len(pkts) - 3, 17):  # swap neighbours, sometimes across a frame boundary
        j = i + rng.choice((1, 2))
        pkts[i], pkts[j] = pkts[j], pkts[i]
    pkts.insert(40, pkts[30])  # late duplicate
    pkts.insert(90, pkts[90])  # immediate duplicate
    frames, broken = assert_same(pkts)
    assert len(frames) > 50 and broken == 0


def test_nack_then_rtx_repair(packets) -> None:
    pkts = list(packets)
    lost = pkts.pop(60)
    rtx = wrap_rtx(lost, payload_type=bench_rtp.RTX_PT, sequence_number=1, ssrc=bench_rtp.RTX_SSRC)
    pkts.insert(64, rtx)  # retransmission a few packets later
    frames, broken = assert_same(pkts)
    assert broken == 0 and len(frames) > 50
    _, _, rtcp = run(pkts, fast=True)
    assert any(r.startswith("RtcpRtpfbPacket") for r in rtcp)  # the NACK went out


def test_lost_packet_is_broken(packets) -> None:
    pkts = list(packets)
    del pkts[50]  # never repaired: aiortc stalls until its buffer overruns, drops, asks for a keyframe
    _, broken = assert_same(pkts)
    assert broken == 0  # 4 s of packets (< 512 after the gap): nothing overran yet; add more traffic
    more = bench_rtp.make_packets(bench_rtp.encode_stream(6.0, 1500, width=320, height=240, fps=15, gop_s=1.0),
                                  seq0=(pkts[-1].sequence_number + 1) & 0xFFFF, ts0=pkts[-1].timestamp + 6000)
    frames, broken = assert_same(pkts + more)
    assert broken >= 1
    assert frames and frames[-1][0]  # delivery resumed after the loss


def test_big_sequence_jump_is_broken(packets) -> None:
    pkts = list(packets)
    tail = []
    for p in pkts[100:]:
        q = copy.copy(p)
        q.sequence_number = (q.sequence_number + 20000) & 0xFFFF
        tail.append(q)
    frames, broken = assert_same(pkts[:100] + tail)
    assert broken >= 1 and frames


async def test_batch_datagram_reads_delivers_everything_in_order() -> None:
    import socket

    from hub.ingest.fastpath import batch_datagram_reads
    from tests.udp import Arrivals, collecting_endpoint

    wakeups = 0
    loop = asyncio.get_running_loop()
    arrivals = Arrivals()
    transport, got = await collecting_endpoint(arrivals)
    assert batch_datagram_reads(transport)
    assert not batch_datagram_reads(transport)  # once only
    await asyncio.sleep(0)  # one loop step, not a wait: the batched reader is registered with call_soon
    port = transport.get_extra_info("sockname")[1]
    key = loop._selector.get_key(transport._sock_fd)
    inner = key.data[0]._callback

    def counting() -> None:
        nonlocal wakeups
        wakeups += 1
        inner()

    key.data[0]._callback = counting
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for burst in range(5):
            for i in range(40):
                tx.sendto(f"{burst}:{i}".encode(), ("127.0.0.1", port))
            await arrivals.until(lambda n=(burst + 1) * 40: len(got) >= n, f"burst {burst}")
        assert got == [f"{b}:{i}".encode() for b in range(5) for i in range(40)]
        assert wakeups < len(got)  # bursts were read several datagrams per wake-up
    finally:
        tx.close()
        transport.close()
    # close() removes the batched reader at once (the socket itself goes in a call_soon callback)
    assert transport._sock_fd not in loop._selector.get_map()


def test_batch_datagram_reads_ignores_other_transports() -> None:
    from hub.ingest.fastpath import batch_datagram_reads

    assert batch_datagram_reads(object()) is False
