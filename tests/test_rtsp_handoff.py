"""How an RTSP camera's items reach the event loop (issue 14, item 7), against a real RTSP server
(gst-rtsp-server, tests/harness/rtsp.py: main stream H.264 + AAC, sub-stream at 5 fps).

With a detect sub-stream, the main stream's batches ride with the sub-stream's hand-offs (each detect frame goes
at once) instead of waking the loop by themselves: the loop wakes about once per detect frame, and nothing of
the main stream is lost, reordered or stranded, also while the sub-stream is down.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hub.ingest.file import FileCamera
from tests.harness.ports import free_port
from tests.harness.rtsp import RtspServer
from tests.sinks import RecordingSink

WAIT_S = 30.0


async def until(cond: Callable[[], Any], what: str, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {timeout:.0f} s")
        await asyncio.sleep(0.05)  # a poll interval under a deadline


class HandOffSpy:
    """Counts the worker threads' hand-offs to the loop (``call_soon_threadsafe``); the real loop runs them."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.calls = 0
        self._real = loop.call_soon_threadsafe

    def __enter__(self) -> HandOffSpy:
        def counting(cb: Any, *args: Any, **kw: Any) -> Any:
            self.calls += 1
            return self._real(cb, *args, **kw)

        self.loop.call_soon_threadsafe = counting  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        del self.loop.call_soon_threadsafe


def in_order(sink: RecordingSink) -> bool:
    """Each kind of main-stream item in arrival order (its ``t``), as the reader handed them on. (Across kinds
    the order may differ: a connection's first video packets wait for a timestamp while audio passes.)"""
    kinds = (sink.video(), sink.audio_frames(), sink.audio)
    return all(kind and [x.t for x in kind] == sorted(x.t for x in kind) for kind in kinds)


async def test_main_stream_rides_with_the_detect_frames(rtsp_server: RtspServer) -> None:
    sink = RecordingSink()
    cam = FileCamera(rtsp_server.main_url, sink, detect_url=rtsp_server.sub_url, detect_fps=5)
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(cam.run())
    try:
        # from the first detect frame on: connecting and the first GOP are not what is counted
        await until(lambda: len(sink.detect) >= 2 and sink.audio, "detect frames and audio")
        with HandOffSpy(loop) as spy:
            detect0, video0, audio0 = len(sink.detect), len(sink.video()), len(sink.audio)
            await until(lambda: len(sink.detect) >= detect0 + 15, "15 more detect frames")
            detect = len(sink.detect) - detect0
            calls = spy.calls
        video, audio = len(sink.video()) - video0, len(sink.audio) - audio0
    finally:
        await cam.stop()
        await asyncio.wait_for(task, 10)
    assert video >= 30 and audio >= 30, f"main stream not flowing: {video} video packets, {audio} audio chunks"
    # about one hand-off per detect frame, the main stream's batches with them (they used to add ~1.5 per detect
    # frame: 37 hand-offs for 15); the slack is for a detect frame late enough that a parked batch went alone
    assert calls < 1.5 * detect, f"{calls} hand-offs for {detect} detect frames, {video} video, {audio} audio items"
    # nothing of the main stream lost or reordered, nothing left behind at stop()
    assert in_order(sink)
    assert len(sink.video()) == cam.video_stats.frames, (len(sink.video()), cam.video_stats.frames)


async def test_main_stream_goes_on_its_own_while_the_sub_stream_is_down(rtsp_server: RtspServer) -> None:
    # A sub-stream that never connects: the main stream's batches must not wait for hand-offs that never come.
    dead = f"rtsp://127.0.0.1:{free_port()}/sub"
    sink = RecordingSink()
    cam = FileCamera(rtsp_server.main_url, sink, detect_url=dead, detect_fps=5)
    task = asyncio.ensure_future(cam.run())
    try:
        await until(lambda: len(sink.video()) >= 45 and len(sink.audio) >= 30, "main stream items")
    finally:
        await cam.stop()
        await asyncio.wait_for(task, 10)
    assert not sink.detect and in_order(sink)
    assert len(sink.video()) == cam.video_stats.frames


def strays(video: list[Any]) -> tuple[float, float]:
    """How far consecutive video packets' ``t`` moves from their decode times' spacing, |Δt - Δdts|: (median,
    90th percentile). Read times as ``t`` put a round's packets within a few ms of each other (median ~1/fps);
    a step of the stream's clock (FFmpeg re-bases RTP times at the first RTCP report) is one outlier."""
    dts = [f.pts if f.dts is None else f.dts for f in video]  # dts None: the same as pts
    d = sorted(abs((b.t - a.t) - (db - da) / 90000)
               for (a, da), (b, db) in itertools.pairwise(zip(video, dts, strict=True)))
    return d[len(d) // 2], d[int(len(d) * 0.9)]


def voluntary_switches(thread_name: str) -> int:
    """How often the named thread of this process gave up the CPU to wait (for data, a lock, a timer): its
    wake-ups, from /proc."""
    tid = next(t.native_id for t in threading.enumerate() if t.name == thread_name)
    status = Path(f"/proc/self/task/{tid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("voluntary_ctxt_switches")))


async def test_main_stream_is_read_in_rounds_with_its_arrival_times(rtsp_server: RtspServer) -> None:
    # The main-stream reader used to wake for every packet the camera sent; now it reads at the live edge, sleeps
    # until shortly before the next detect frame, and reads what piled up back to back. What it read from that
    # backlog must still carry the time it arrived, not the time it was read.
    sink = RecordingSink()
    cam = FileCamera(rtsp_server.main_url, sink, detect_url=rtsp_server.sub_url, detect_fps=5)
    task = asyncio.ensure_future(cam.run())
    try:
        await until(lambda: len(sink.detect) >= 2 and sink.audio, "detect frames and audio")
        video0, audio0 = len(sink.video()), len(sink.audio_frames())
        woke0 = voluntary_switches("file-camera")
        await until(lambda: len(sink.video()) >= video0 + 60, "60 more video packets")
        woke = voluntary_switches("file-camera") - woke0
        packets = len(sink.video()) - video0 + len(sink.audio_frames()) - audio0
    finally:
        await cam.stop()
        await asyncio.wait_for(task, 10)
    # read packet by packet it woke at least once per packet (more: a frame's RTP packets come one by one)
    # (0.2-0.4 a packet on a quiet machine; a loaded one adds waits for the GIL: 0.61 once in CI)
    assert woke < 0.85 * packets, f"the reader woke {woke} times for {packets} packets"
    # arrival times: spaced as the packets were sent; read times would put a round's ~0.2 s backlog into a few ms
    median, p90 = strays(sink.video()[video0:])
    assert median < 0.015 and p90 < 0.05, f"video t strays from its clock: median {median:.4f}, p90 {p90:.4f} s"
    assert in_order(sink)


async def test_main_stream_flows_in_full_at_one_detect_frame_a_second(rtsp_server: RtspServer) -> None:
    # Rounds are at most MAX_PAUSE_S apart whatever the detect rate; a round must not end at a packet whose time is
    # only its read time (at 1 fps that once let through 7 video packets in 12 s).
    sink = RecordingSink()
    cam = FileCamera(rtsp_server.main_url, sink, detect_url=rtsp_server.sub_url, detect_fps=1)
    task = asyncio.ensure_future(cam.run())
    try:
        await until(lambda: sink.detect and sink.audio, "a detect frame and audio")
        video0 = len(sink.video())
        started = time.monotonic()
        await until(lambda: len(sink.video()) >= video0 + 45, "45 more video packets (3 s at 15 fps)", 10)
        took = time.monotonic() - started
        median, p90 = strays(sink.video()[video0:])
    finally:
        await cam.stop()
        await asyncio.wait_for(task, 10)
    assert median < 0.015 and p90 < 0.05, f"video t strays from its clock: median {median:.4f}, p90 {p90:.4f} s"
    assert in_order(sink), f"out of order after {took:.1f} s"


async def test_sub_stream_is_asked_for_its_video_alone(rtsp_server_sub_audio: RtspServer) -> None:
    # Many cameras send their audio on the sub-stream too. The detect reader decodes its video only: the audio
    # track used to be set up as well, and its packets read and thrown away one by one.
    server = rtsp_server_sub_audio
    sink = RecordingSink()
    cam = FileCamera(server.main_url, sink, detect_url=server.sub_url, detect_fps=5)
    task = asyncio.ensure_future(cam.run())
    try:
        await until(lambda: len(sink.detect) >= 2 and sink.audio, "detect frames and audio")
    finally:
        await cam.stop()
        await asyncio.wait_for(task, 10)
        server.stop()
    setups = set(server.setups())  # a set: a reader that reconnected asked again
    # the sub-stream offers both tracks (the second is its audio): only its video was taken; the main stream's
    # both, its audio being what is recorded and heard
    assert {p for p in setups if p.startswith("/sub/")} == {"/sub/stream=0"}, setups
    assert {p for p in setups if p.startswith("/main/")} == {"/main/stream=0", "/main/stream=1"}, setups
