"""Event clips across a discontinuity, and their pre-roll bounds, read back with PyAV (issues 14 and 15).

A camera that goes silent for 10 s (an RTSP server restarting, a phone losing its network) and comes back must
not give clips that reach back across the silence: the pre-roll starts after it, and a clip recording through it
has no frozen picture where the camera sent nothing. The pre-roll is bounded on both sides: at least
``pre_roll_s`` before the event, and no more than one GOP beyond that.

Everything runs through the real parts: RingBuffer -> EventRecorder (Store, Bus) -> ClipWriter -> MP4 / WebM file.
"""

from __future__ import annotations

import functools
import itertools
from pathlib import Path

import av
import pytest

from hub.buffer import RingBuffer
from hub.bus import Bus
from hub.clips import ClipWriter
from hub.media import h264
from hub.media.frames import AUDIO_TIME_BASE, VIDEO_TIME_BASE, EncodedFrame
from hub.recorder import EventRecorder
from hub.store import Store
from tests.test_clips import encode_opus, encode_video

FPS = 15  # encode_video's rate; one keyframe every 15 frames (1 s)
GOP_S = 1.0
T0 = 20_000.0
AUDIO_OFFSET_S = 0.03
GAP_S = 10.0
BEFORE_FRAMES = 80  # the silence starts here: mid-GOP (keyframes at 75 and 90), so P-frames follow it
TOTAL_FRAMES = 165  # 11 s of video in all: 5.3 s before the silence, 5.7 s after it


@functools.cache
def _stream(codec: str, *, pts_jumps: bool, gap_s: float = GAP_S) -> list[EncodedFrame]:
    """Video + Opus as a live source delivers them, silent for ``gap_s`` from video frame BEFORE_FRAMES on.

    ``t`` (arrival) always jumps over the silence; ``pts`` jumps with it (a source that reconnected and kept its
    clock, like the RTSP path) or not (an encoder that never noticed, e.g. a stalled network).
    """
    gap_from = BEFORE_FRAMES / FPS

    def times(base: float) -> tuple[float, float]:
        jump = gap_s if base >= gap_from - 1e-9 else 0.0
        return T0 + base + jump, base + (jump if pts_jumps else 0.0)

    frames = []
    for data, pts, key in encode_video(codec, n=TOTAL_FRAMES):
        if codec == "h264":
            data = h264.join_annexb(h264.split_annexb(data))
        t, st = times(pts / 90000)
        frames.append(EncodedFrame("video", codec, data, round(st * 90000), VIDEO_TIME_BASE, t, key))  # type: ignore[arg-type]
    for i, data in enumerate(encode_opus(TOTAL_FRAMES / FPS)):
        t, st = times(AUDIO_OFFSET_S + i * 0.02)
        frames.append(EncodedFrame("audio", "opus", data, round(st * 48000), AUDIO_TIME_BASE, t))
    frames.sort(key=lambda f: f.t)
    return frames


def _read(path: Path) -> tuple[list[tuple[float, bool, bytes]], list[float], int]:
    """(seconds, keyframe, Annex-B data) per video packet, audio packet times in seconds, decoded frame count."""
    video, audio = [], []
    with av.open(str(path)) as c:
        for p in c.demux():
            if p.size == 0:
                continue
            assert p.pts is not None and p.time_base is not None
            s = float(p.pts * p.time_base)
            if p.stream.type == "video":
                data = bytes(p)
                video.append((s, bool(p.is_keyframe), h264.avcc_to_annexb(data) if path.suffix == ".mp4" else data))
            else:
                audio.append(s)
    with av.open(str(path)) as c:
        decoded = sum(1 for _ in c.decode(video=0))
    return video, audio, decoded


def _max_step(times: list[float]) -> float:
    return max(b - a for a, b in itertools.pairwise(times))


async def _record(tmp_path: Path, frames: list[EncodedFrame], start: float, pre_roll_s: float,
                  codec: str = "h264") -> Path:
    """Push ``frames`` into a camera's buffer, start an event at camera time ``start``, end it after the last
    frame; returns the finished clip."""
    store = Store(tmp_path / "hub.db")
    try:
        buffer = RingBuffer(window_s=15.0)
        recorder = EventRecorder("cam", buffer, store, Bus(), tmp_path / "clips", pre_roll_s, 2.0)
        recorder.codec = codec
        event_id = None
        for f in frames:
            if event_id is None and f.t > start:
                event_id = recorder.start(start, start, "motion")
            buffer.push(f)
        task = recorder.end(frames[-1].t, "test")
        assert task is not None
        event = await task
        assert event["status"] == "complete" and event["clip_path"], event
        return Path(event["clip_path"])
    finally:
        store.close()


def _video(frames: list[EncodedFrame]) -> list[EncodedFrame]:
    return [f for f in frames if f.kind == "video"]


# --- pre-roll bounds -----------------------------------------------------------------------------------------------


async def test_pre_roll_starts_at_the_last_keyframe_before_it_not_earlier(tmp_path: Path) -> None:
    """Lower and upper bound: the clip starts on the newest keyframe at or before start - pre_roll_s."""
    frames = [f for f in _stream("h264", pts_jumps=True) if f.t < T0 + BEFORE_FRAMES / FPS]  # no silence here
    start, pre_roll = T0 + 4.5, 2.0  # 2.5 s of video before the target: keyframes at 0, 1, 2 s stay buffered
    clip = await _record(tmp_path, frames, start, pre_roll)
    video, audio, decoded = _read(clip)
    expected = [f for f in _video(frames) if f.t >= T0 + 2.0]  # keyframe at 2.0 s <= 2.5 s < next one at 3.0 s
    assert expected[0].keyframe
    assert [d for _, _, d in video] == [f.data for f in expected]
    pre = start - expected[0].t
    assert pre_roll <= pre < pre_roll + GOP_S  # at least the pre-roll, less than one GOP more
    assert video[0][0] == 0 and video[0][1]  # starts at 0 on a keyframe
    assert decoded == len(video)
    first_audio = next(f for f in frames if f.kind == "audio" and f.t >= expected[0].t)
    assert abs(audio[0] - (first_audio.t - expected[0].t)) < 0.002  # cut at that keyframe, in sync with it


# --- a silence before the event ------------------------------------------------------------------------------------


@pytest.mark.parametrize("pts_jumps", [True, False], ids=["pts-jumps", "pts-continuous"])
async def test_pre_roll_does_not_reach_back_across_a_silence(tmp_path: Path, pts_jumps: bool) -> None:
    frames = _stream("h264", pts_jumps=pts_jumps)
    resumed = next(f.t for f in frames if f.t > T0 + GAP_S)  # first frame after the silence (any track)
    start = resumed + 2.0  # 2 s after the camera came back, with 5 s of pre-roll asked for
    clip = await _record(tmp_path, frames, start, pre_roll_s=5.0)
    video, audio, decoded = _read(clip)

    after = [f for f in _video(frames) if f.t >= resumed]
    first_key = next(f for f in after if f.keyframe)  # P-frames right after the silence decode against nothing
    assert first_key.t > resumed
    expected = [f for f in after if f.t >= first_key.t]
    assert [d for _, _, d in video] == [f.data for f in expected]  # nothing from before the silence
    assert video[0] == (0.0, True, first_key.data)
    assert decoded == len(video)
    assert _max_step([s for s, _, _ in video]) <= 1.5 / FPS
    assert abs(video[-1][0] - (expected[-1].t - first_key.t)) < 1 / FPS  # duration as sent, no frozen stretch
    assert audio[0] >= 0 and _max_step(audio) <= 0.03
    assert audio[-1] - video[-1][0] < 0.1


# --- a silence inside the event ------------------------------------------------------------------------------------


@pytest.mark.parametrize("codec,pts_jumps", [("h264", True), ("h264", False), ("vp8", True)],
                         ids=["mp4-pts-jumps", "mp4-pts-continuous", "webm-pts-jumps"])
async def test_a_silence_inside_a_clip_leaves_no_frozen_gap(tmp_path: Path, codec: str, pts_jumps: bool) -> None:
    frames = _stream(codec, pts_jumps=pts_jumps)
    start = T0 + 4.0  # before the silence, which then falls in the post-roll
    clip = await _record(tmp_path, frames, start, pre_roll_s=2.0, codec=codec)
    assert clip.suffix == (".mp4" if codec == "h264" else ".webm")
    video, audio, decoded = _read(clip)

    vids = _video(frames)
    before = [f for f in vids[:BEFORE_FRAMES] if f.t >= T0 + 2.0]
    resumed = next(f for f in frames if f.t > before[-1].t + GAP_S - 1)  # first frame after the silence
    resume_key = next(f for f in vids[BEFORE_FRAMES:] if f.keyframe)  # P-frames before it decode against nothing
    after = [f for f in vids[BEFORE_FRAMES:] if f.t >= resume_key.t]
    assert [d for _, _, d in video] == [f.data for f in before + after]
    assert decoded == len(video)
    times = [s for s, _, _ in video]
    i_key = len(before)
    assert video[i_key][1]
    assert all(b > a for a, b in itertools.pairwise(times))
    assert _max_step(times[:i_key]) <= 1.5 / FPS and _max_step(times[i_key:]) <= 1.5 / FPS
    # Across the silence the picture holds only while the camera sent video that could not be shown (the
    # P-frames before its next keyframe) and the sound that outlasted the last frame, not for the 10 s it sent
    # nothing.
    assert times[i_key] - times[i_key - 1] <= (resume_key.t - resumed.t) + 2.5 / FPS
    sent = (before[-1].t - before[0].t) + (after[-1].t - resumed.t)
    assert abs(times[-1] - sent) <= 2.5 / FPS  # the clip is as long as what was sent, not 10 s longer
    assert _max_step(audio) <= 0.1
    # Picture and sound stay together after the silence: the first frame and the first sound the camera sent
    # after it keep their distance in the clip.
    first_audio_after = next(f for f in frames if f.kind == "audio" and f.t >= resumed.t)
    j = sum(1 for f in frames if f.kind == "audio" and before[0].t <= f.t < resumed.t)  # its index in the clip
    assert abs((times[i_key] - audio[j]) - (resume_key.t - first_audio_after.t)) < 0.05


# --- the clip writer alone -----------------------------------------------------------------------------------------


def test_a_forward_pts_jump_with_a_steady_clock_is_bridged(tmp_path: Path) -> None:
    """The encoder's pts leaps an hour ahead (a source restart) while the camera clock runs on: the clip keeps
    its pace instead of holding one frame for an hour."""
    frames = [f for f in _stream("h264", pts_jumps=False) if f.t < T0 + BEFORE_FRAMES / FPS]
    hour_v, hour_a = 3600 * 90000, 3600 * 48000
    jumped = [
        EncodedFrame(f.kind, f.codec, f.data,
                     f.pts + ((hour_v if f.kind == "video" else hour_a) if f.t >= T0 + 2.5 else 0),
                     f.time_base, f.t, f.keyframe)
        for f in frames
    ]
    w = ClipWriter(tmp_path / "jump.mp4")
    w.write_many(jumped)
    info = w.close()
    video, audio, decoded = _read(info.path)
    assert len(video) == decoded == len(_video(frames))
    times = [s for s, _, _ in video]
    assert max(abs((b - a) - 1 / FPS) for a, b in itertools.pairwise(times)) < 0.002
    assert abs(info.duration_s - len(video) / FPS) < 0.002
    assert _max_step(audio) <= 0.021


@pytest.mark.parametrize("gap_s", [4.0, GAP_S])
def test_the_writer_bridges_a_silence_in_frames_it_is_given(tmp_path: Path, gap_s: float) -> None:
    """Frames that span a silence (e.g. a buffer made before the cut) still give a clip without a frozen gap, also
    when the pts jumped with the clock by less than the writer's pts-versus-clock tolerance."""
    frames = _stream("h264", pts_jumps=True, gap_s=gap_s)
    w = ClipWriter(tmp_path / "given.mp4")
    w.write_many(frames)
    info = w.close()
    video, audio, decoded = _read(info.path)
    assert len(video) == decoded == TOTAL_FRAMES
    times = [s for s, _, _ in video]
    assert _max_step(times) <= 2.5 / FPS  # a frame interval, plus the sound that outlasted the last frame
    assert abs(info.duration_s - TOTAL_FRAMES / FPS) <= 1.5 / FPS
    assert _max_step(audio) <= 0.1

