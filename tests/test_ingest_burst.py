"""A live source's packets handled in bursts (issue 14, item 7): against a real RTSP camera (gst-rtsp-server,
tests/harness/rtsp.py), every packet still reaches the sink, in arrival order, with its own arrival time as ``t``,
and what was waiting when ``stop()`` came is delivered too."""

from __future__ import annotations

import asyncio
import time

from hub.ingest.file import FLUSH_S, MAX_BATCH, FileCamera, _Burst
from tests.harness.rtsp import RtspServer
from tests.sinks import RecordingSink
from tests.test_rtsp import until


class ArrivalSink(RecordingSink):
    """Notes the wall clock at which each frame reached the sink (on the event loop)."""

    def __init__(self) -> None:
        super().__init__()
        self.arrived: list[float] = []

    def on_frame(self, frame) -> None:
        super().on_frame(frame)
        self.arrived.append(time.time())


async def test_live_packets_in_bursts_keep_order_arrival_time_and_the_tail(rtsp_server: RtspServer) -> None:
    sink = ArrivalSink()
    # with a detect sub-stream the main stream is not decoded: its packets are handled in bursts
    cam = FileCamera(rtsp_server.main_url, sink, detect_url=rtsp_server.sub_url)
    start = time.time()
    task = asyncio.ensure_future(cam.run())
    try:
        await until(lambda: len(sink.video()) >= 45 and len(sink.audio) >= 20 and sink.detect,
                    "3 s of video, audio chunks and detect frames", timeout=30.0)
    finally:
        await cam.stop()
        await asyncio.wait_for(task, 10)

    # every packet the reader counted reached the sink, the ones waiting at stop() included
    assert len(sink.video()) == cam.video_stats.frames
    assert len(sink.audio_frames()) == cam.audio_stats.frames
    assert len(sink.audio) == cam.audio_chunks
    # in arrival order: t (the arrival time) never goes back within a stream (across streams the connection's
    # first keyframe, held by the stamper until a stamped packet comes, may follow an earlier-handled audio
    # packet), and is never after the sink got the frame
    for kind in ("video", "audio"):
        ts = [f.t for f in sink.frames if f.kind == kind]
        assert ts == sorted(ts), kind
    assert all(start <= f.t <= a for f, a in zip(sink.frames, sink.arrived, strict=True))
    # each packet keeps its own arrival time, not the time its burst was handled: ~15 distinct times a second
    video_t = [f.t for f in sink.video()]
    assert len(set(video_t)) == len(video_t)
    assert (video_t[-1] - video_t[0]) / (len(video_t) - 1) < 0.2
    assert sink.video()[0].keyframe  # the connection's opening keyframe, held by the stamper, kept its place


def test_burst_is_due_after_flush_s_or_max_batch_and_hands_back_in_order() -> None:
    now = [100.0]
    burst = _Burst(clock=lambda: now[0])
    # by time: the first packet waits; a later arrival FLUSH_S or more after it makes the burst due
    assert burst.add("k", 1.0) is False
    now[0] = 100.0 + FLUSH_S / 2
    assert burst.add("p1", 2.0) is False
    now[0] = 100.0 + 2 * FLUSH_S
    assert burst.add("p2", 3.0) is True
    assert burst.take() == [("k", 1.0), ("p1", 2.0), ("p2", 3.0)]
    assert burst.packets == [] and burst.take() == []
    # the clock starts over with the next burst's first packet
    assert burst.add("a", 4.0) is False
    # by count: MAX_BATCH packets at one instant
    due = [burst.add(i, float(i)) for i in range(MAX_BATCH - 1)]
    assert due == [False] * (MAX_BATCH - 2) + [True]
    assert [p for p, _ in burst.take()] == ["a", *range(MAX_BATCH - 1)]
    # what a stamper hands over at once (a held keyframe and the packet that stamped it) counts packet by packet
    assert burst.extend([]) is False
    now[0] = 200.0
    assert burst.extend([("held", 5.0), ("next", 6.0)]) is False  # the first of a burst never makes it due alone
    now[0] = 200.0 + 2 * FLUSH_S
    assert burst.extend([("later", 7.0)]) is True
    assert [p for p, _ in burst.take()] == ["held", "next", "later"]
