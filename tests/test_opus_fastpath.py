"""hub/ingest/opus_fastpath.py on a real aiortc audio receiver (no sockets): packets in order reach the tap at
once with aiortc's rebased timestamps, a gap is skipped, late and duplicate packets are dropped, levels go to
the trigger, and RTCP statistics still count every packet."""

from __future__ import annotations

import time

from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtcrtpreceiver import RTCRtpReceiver
from aiortc.rtp import RtpPacket

from hub.ingest.opus_fastpath import install_opus_fastpath
from hub.ingest.srtp_direct import SYNC_HANDLER
from hub.ingest.tap import EncodedTap

PT, SSRC, TS0 = 111, 0x4242, 4_294_960_000  # the RTP timestamp wraps during the test


def _receiver() -> RTCRtpReceiver:
    class _StubTransport:
        state = "new"
        _stats_id = "stub"

    r = RTCRtpReceiver("audio", _StubTransport())  # type: ignore[arg-type]
    r._RTCRtpReceiver__codecs[PT] = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2,
                                                          payloadType=PT)
    r._RTCRtpReceiver__decoder_thread = object()  # truthy: frames are handed to the (tapped) decoder queue
    return r


def _packet(seq: int, level: int | None = 30) -> RtpPacket:
    p = RtpPacket(payload_type=PT, sequence_number=seq & 0xFFFF, timestamp=(TS0 + 960 * seq) & 0xFFFFFFFF,
                  ssrc=SSRC, payload=bytes([seq & 0xFF]) * 60)
    if level is not None:
        p.extensions.audio_level = (False, level + seq % 3)
    return p


def test_in_order_gap_late_duplicate() -> None:
    receiver = _receiver()
    frames, levels = [], []
    tap = EncodedTap(receiver, "audio", kind="audio", on_frame=frames.append)
    tap.tap_levels(levels.append, hook=False)
    fast = install_opus_fastpath(receiver, tap)
    handle = getattr(receiver, SYNC_HANDLER)
    assert handle == fast.handle_sync

    order = [0, 1, 2, 4, 3, 4, 5, 6]  # 3 lost then late, 4 duplicated
    before = time.time()
    for seq in order:
        handle(_packet(seq), 0)
    after = time.time()

    assert [f.data[0] for f in frames] == [0, 1, 2, 4, 5, 6]
    assert [f.pts for f in frames] == [960 * s for s in (0, 1, 2, 4, 5, 6)]  # rebased across the wrap
    assert all(f.kind == "audio" and f.codec == "opus" for f in frames)
    # released on arrival: no jitter-buffer prefetch delay is subtracted from the arrival time any more
    assert all(before <= f.t <= after for f in frames)
    assert [lv.dbfs for lv in levels] == [-(30 + s % 3) for s in (0, 1, 2, 4, 5, 6)]
    assert (fast.packets, fast.gaps, fast.late) == (6, 1, 2)
    assert tap.levels == 6
    stats = receiver._RTCRtpReceiver__remote_streams[SSRC]
    assert stats.packets_received == len(order)  # receiver reports see every packet, as on aiortc's path
    assert receiver.getSynchronizationSources()[0].source == SSRC

    fast.remove()
    assert not hasattr(receiver, SYNC_HANDLER) and "_handle_rtp_packet" not in vars(receiver)


def test_disabled_receiver_and_empty_payload() -> None:
    receiver = _receiver()
    frames = []
    tap = EncodedTap(receiver, "audio", kind="audio", on_frame=frames.append)
    fast = install_opus_fastpath(receiver, tap)
    receiver._enabled = False
    fast.handle_sync(_packet(0), 0)
    assert frames == [] and not receiver._RTCRtpReceiver__remote_streams
    receiver._enabled = True
    empty = _packet(1, level=None)
    empty.payload = b""
    fast.handle_sync(empty, 0)
    fast.handle_sync(_packet(2, level=None), 0)
    assert [f.data[0] for f in frames] == [2]  # a packet without payload carries no frame
    assert tap.levels == 0  # no level extension, nobody listening: nothing delivered
