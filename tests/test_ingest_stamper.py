"""The file/RTSP reader's packet stamper: the fast path the demux loop takes for packets that come with both
timestamps (``_Stamper.passes``, issue 14, item 7) must leave every packet and the stream clock exactly as
``push`` alone would."""

from __future__ import annotations

import av

from hub.ingest.file import _Stamper


def _packet(pts: int | None, dts: int | None, duration: int = 0) -> av.Packet:
    p = av.Packet(b"\x00\x00\x00\x01\x65")
    p.pts, p.dts, p.duration = pts, dts, duration
    return p


# An RTSP connection as FFmpeg hands it over: the opening keyframe without stamps, then stamped packets, one with
# only its pts (RTP time), one without any in the middle, and B-frame reordering (pts != dts).
_SEQUENCE = [(None, None, 0), (9000, 6000, 3000), (15000, 9000, 3000), (12000, None, 0), (None, None, 0),
             (24000, 18000, 6000), (21000, 21000, 0)]


def _run(fast: bool) -> tuple[list[tuple[int, int, float]], tuple[int | None, int, int]]:
    stamper = _Stamper(3000, None)
    out: list[tuple[int, int, float]] = []
    for i, (pts, dts, dur) in enumerate(_SEQUENCE):
        p = _packet(pts, dts, dur)
        arrival = 100.0 + i
        if fast and stamper.passes(p):  # what FileCamera._play_once does
            ready = [(p, arrival)]
        else:
            ready = stamper.push(p, arrival)
        out.extend((q.pts, q.dts, a) for q, a in ready)
    return out, (stamper.last_dts, stamper.last_dur, stamper.synthesized)


def test_fast_path_stamps_and_orders_exactly_as_push() -> None:
    slow, slow_clock = _run(fast=False)
    fast, fast_clock = _run(fast=True)
    assert fast == slow
    assert fast_clock == slow_clock
    # and what push gives is what the stamper promises: the keyframe one frame before the first stamped packet,
    # a pts-only packet with dts = pts, a packet without stamps right after the previous one
    assert slow[:4] == [(3000, 3000, 100.0), (9000, 6000, 101.0), (15000, 9000, 102.0), (12000, 12000, 103.0)]
    assert slow[4] == (15000, 15000, 104.0)
    assert slow_clock == (21000, 3000, 2)


def test_passes_only_stamped_packets_with_nothing_held() -> None:
    stamper = _Stamper(3000, None)
    opening = _packet(None, None)
    assert not stamper.passes(opening)
    assert stamper.push(opening, 1.0) == []  # held until a stamp comes
    stamped = _packet(9000, 6000, 3000)
    assert not stamper.passes(stamped)  # the held keyframe must come out first, through push
    assert [q.dts for q, _ in stamper.push(stamped, 2.0)] == [3000, 6000]
    assert stamper.passes(_packet(12000, 9000, 1500))
    assert (stamper.last_dts, stamper.last_dur) == (9000, 1500)
    assert not stamper.passes(_packet(15000, None))
    assert not stamper.passes(_packet(None, 12000))
