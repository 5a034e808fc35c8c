"""RingBuffer bounds, keyframe indexing, loss handling and listeners, on synthetic frames."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hub.buffer import RingBuffer
from hub.media.frames import AUDIO_TIME_BASE, VIDEO_TIME_BASE, EncodedFrame

FPS = 15
GOP = 30  # a keyframe every 2 s, like the hub's PLI cadence
T0 = 5000.0


def stream(
    seconds: float, gop: int = GOP, key_size: int = 20_000, p_size: int = 4_000, audio: bool = True
) -> Iterator[EncodedFrame]:
    """Video at 15 fps and Opus every 20 ms, interleaved by camera time like a live source."""
    nv = int(seconds * FPS)
    na = int(seconds * 50) if audio else 0
    iv = ia = 0
    while iv < nv or ia < na:
        tv = T0 + iv / FPS if iv < nv else float("inf")
        ta = T0 + ia * 0.02 if ia < na else float("inf")
        if tv <= ta:
            key = iv % gop == 0
            yield EncodedFrame(
                "video", "h264", bytes(key_size if key else p_size), iv * 6000, VIDEO_TIME_BASE, tv, key
            )
            iv += 1
        else:
            yield EncodedFrame("audio", "opus", bytes(100), ia * 960, AUDIO_TIME_BASE, ta)
            ia += 1


def contents(buf: RingBuffer) -> tuple[list[EncodedFrame], list[EncodedFrame]]:
    frames = buf.frames_since(float("-inf"))
    return [f for f in frames if f.kind == "video"], [f for f in frames if f.kind == "audio"]


def test_time_eviction_keeps_window_and_starts_on_keyframe() -> None:
    buf = RingBuffer(window_s=15.0, max_bytes=1 << 30)
    for f in stream(60):
        buf.push(f)
        video, audio = contents(buf)
        assert video[0].keyframe
        newest = buf.newest_t
        assert newest is not None
        if newest - T0 >= 15.0:
            # at least the window is kept ...
            assert video[0].t <= newest - 15.0
            # ... and no more than needed: the next keyframe is already inside the window
            keys = buf.keyframe_times()
            assert len(keys) < 2 or keys[1] > newest - 15.0
        assert not audio or audio[0].t >= video[0].t
    s = buf.stats()
    assert s.keyframes == len(buf.keyframe_times()) in (8, 9)
    assert 15.0 <= s.span_s <= 15.0 + GOP / FPS
    assert s.evicted > 0 and s.dropped_broken == 0
    assert s.frames == s.video_frames + s.audio_frames == len(buf)
    video, audio = contents(buf)
    assert s.bytes == sum(len(f.data) for f in video + audio)


def test_byte_bound_holds_and_evicts_whole_gops() -> None:
    limit = 300_000  # ~2.5 GOPs of the synthetic stream
    buf = RingBuffer(window_s=15.0, max_bytes=limit)
    for f in stream(30):
        buf.push(f)
        s = buf.stats()
        assert s.bytes <= limit
        video, _ = contents(buf)
        assert video and video[0].keyframe
    assert buf.stats().keyframes >= 2


def test_oversized_gop_drops_video_until_next_keyframe() -> None:
    buf = RingBuffer(window_s=15.0, max_bytes=50_000)
    for f in stream(6, gop=GOP, key_size=20_000, p_size=4_000, audio=False):
        buf.push(f)
        assert buf.stats().bytes <= 50_000
        video, _ = contents(buf)
        assert not video or video[0].keyframe
    s = buf.stats()
    assert s.dropped_no_keyframe > 0  # P frames after the GOP was pushed out had nothing to attach to


def test_mark_broken_drops_until_keyframe() -> None:
    buf = RingBuffer()
    frames = [f for f in stream(5, audio=False)]
    for f in frames[:10]:
        assert buf.push(f)
    buf.mark_broken()
    assert buf.broken
    accepted = [buf.push(f) for f in frames[10:GOP]]
    assert not any(accepted)
    assert buf.stats().dropped_broken == GOP - 10
    assert buf.push(frames[GOP])  # keyframe heals
    assert not buf.broken
    assert buf.push(frames[GOP + 1])
    video, _ = contents(buf)
    assert [f.pts for f in video] == [f.pts for f in frames[:10] + frames[GOP : GOP + 2]]
    # Audio is never affected by video loss.
    buf.mark_broken()
    assert buf.push(EncodedFrame("audio", "opus", b"x", 0, AUDIO_TIME_BASE, frames[GOP + 1].t))


def test_video_before_first_keyframe_is_dropped() -> None:
    buf = RingBuffer()
    p = EncodedFrame("video", "h264", b"p", 0, VIDEO_TIME_BASE, T0, False)
    assert not buf.push(p)
    assert buf.stats().dropped_no_keyframe == 1 and len(buf) == 0


def test_frames_since_picks_the_right_keyframe() -> None:
    buf = RingBuffer(window_s=15.0)
    for f in stream(20):
        buf.push(f)
    keys = buf.keyframe_times()
    assert keys == sorted(keys) and len(keys) >= 3

    def first_video_t(t: float) -> float:
        return next(f.t for f in buf.frames_since(t) if f.kind == "video")

    assert first_video_t(keys[1]) == keys[1]  # exactly on a keyframe
    assert first_video_t(keys[1] + 0.5) == keys[1]  # inside the GOP
    assert first_video_t(keys[2] - 1e-6) == keys[1]  # just before the next keyframe
    assert first_video_t(keys[0] - 100) == keys[0]  # older than the buffer: the oldest keyframe
    assert first_video_t(keys[-1] + 100) == keys[-1]  # in the future: the newest keyframe

    frames = buf.frames_since(keys[1] + 0.5)
    ts = [f.t for f in frames]
    assert ts == sorted(ts)  # merged by camera time
    video = [f for f in frames if f.kind == "video"]
    audio = [f for f in frames if f.kind == "audio"]
    all_video, all_audio = contents(buf)
    assert video == [f for f in all_video if f.t >= keys[1]]
    assert audio == [f for f in all_audio if f.t >= keys[1]]  # audio from the keyframe's t on


def test_frames_since_without_video_returns_audio() -> None:
    buf = RingBuffer(window_s=5.0)
    for i in range(500):
        buf.push(EncodedFrame("audio", "opus", bytes(50), i * 960, AUDIO_TIME_BASE, T0 + i * 0.02))
    s = buf.stats()
    assert s.span_s <= 5.0 and s.video_frames == 0
    out = buf.frames_since(T0 + 9.0)
    assert out and out[0].t >= T0 + 9.0
    assert RingBuffer().frames_since(0.0) == []


def test_stalled_video_does_not_pin_audio() -> None:
    buf = RingBuffer(window_s=5.0)
    frames = list(stream(3))
    for f in frames:
        buf.push(f)
    last_t = frames[-1].t
    for i in range(1, 600):  # 12 s of audio only: the camera's video froze
        buf.push(EncodedFrame("audio", "opus", bytes(100), 0, AUDIO_TIME_BASE, last_t + i * 0.02))
    s = buf.stats()
    assert s.video_frames == 0 and s.keyframes == 0
    assert s.span_s <= 5.0
    # A P frame after the stall cannot be used; the next keyframe restarts the video.
    assert not buf.push(EncodedFrame("video", "h264", b"p", 0, VIDEO_TIME_BASE, last_t + 12.1, False))
    assert buf.push(EncodedFrame("video", "h264", b"k", 0, VIDEO_TIME_BASE, last_t + 12.2, True))


def test_listeners_get_accepted_frames_after_subscribing() -> None:
    buf = RingBuffer()
    frames = list(stream(4, gop=20))
    for f in frames[:20]:
        buf.push(f)
    got: list[EncodedFrame] = []
    unsubscribe = buf.subscribe(got.append)
    accepted = [f for f in frames[20:60] if buf.push(f)]
    assert accepted == frames[20:60]
    buf.mark_broken()
    after_loss = [f for f in frames[60:150] if buf.push(f)]
    unsubscribe()
    for f in frames[150:]:
        buf.push(f)
    assert got == accepted + after_loss
    # After the loss: audio, then video only from the next keyframe on.
    video_after = [f for f in after_loss if f.kind == "video"]
    assert video_after and video_after[0].keyframe
    skipped = [f for f in frames[60:150] if f.kind == "video" and f.t < video_after[0].t]
    assert skipped and buf.stats().dropped_broken == len(skipped)
    assert any(f.kind == "audio" and f.t < video_after[0].t for f in after_loss)


def test_failing_listener_is_removed_and_push_continues() -> None:
    buf = RingBuffer()
    calls: list[int] = []

    def bad(_: EncodedFrame) -> None:
        calls.append(1)
        raise RuntimeError("disk full")

    good: list[EncodedFrame] = []
    buf.subscribe(bad)
    buf.subscribe(good.append)
    frames = list(stream(1))
    for f in frames:
        assert buf.push(f) or f.kind == "video"
    assert len(calls) == 1
    assert len(good) == len(frames)


def test_unsubscribe_twice_and_same_callback_twice() -> None:
    buf = RingBuffer()
    got: list[EncodedFrame] = []
    callback = got.append  # one object, subscribed twice: two subscriptions
    u1 = buf.subscribe(callback)
    u2 = buf.subscribe(callback)
    f = next(stream(1))
    buf.push(f)
    assert len(got) == 2
    u1()
    u1()  # a second call of the same unsubscribe must not drop the other subscription
    buf.push(EncodedFrame("audio", "opus", b"a", 0, AUDIO_TIME_BASE, T0))
    assert len(got) == 3
    u2()
    buf.push(EncodedFrame("audio", "opus", b"b", 960, AUDIO_TIME_BASE, T0 + 0.02))
    assert len(got) == 3
    assert buf._listeners == ()


def test_clear_and_validation() -> None:
    buf = RingBuffer()
    for f in stream(2):
        buf.push(f)
    n = len(buf)
    buf.clear()
    assert len(buf) == 0 and buf.stats().bytes == 0 and buf.stats().evicted == n
    assert buf.frames_since(0) == []
    # After clear the next keyframe starts a new index correctly.
    for f in stream(3):
        buf.push(f)
    video, _ = contents(buf)
    assert video[0].keyframe and len(video) == 45
    with pytest.raises(ValueError):
        RingBuffer(window_s=0)
    with pytest.raises(ValueError):
        RingBuffer(max_bytes=0)


# -- found by mutation testing (scripts/bench mutation, docs/mutation.md) --------------------------------------


def test_dropped_video_is_reported_as_false_not_just_falsy() -> None:
    buf = RingBuffer()
    p_frame = EncodedFrame("video", "h264", bytes(10), 0, VIDEO_TIME_BASE, T0, False)
    assert buf.push(p_frame) is False  # no keyframe yet
    assert buf.push(EncodedFrame("video", "h264", bytes(10), 6000, VIDEO_TIME_BASE, T0 + 0.1, True)) is True
    buf.mark_broken()
    assert buf.push(EncodedFrame("video", "h264", bytes(10), 12000, VIDEO_TIME_BASE, T0 + 0.2, False)) is False


def test_eviction_is_counted_frame_for_frame() -> None:
    buf = RingBuffer(window_s=5.0, max_bytes=1 << 30)
    accepted = sum(1 for f in stream(30) if buf.push(f))
    s = buf.stats()
    assert s.evicted > 0 and s.evicted == accepted - len(buf)


def test_byte_bound_on_audio_alone_is_exact() -> None:
    # 100-byte Opus frames under a 1000-byte cap: exactly ten stay (the cap is inclusive), bytes add up.
    buf = RingBuffer(window_s=60.0, max_bytes=1000)
    for f in stream(2, audio=True):
        if f.kind == "audio":
            buf.push(f)
    s = buf.stats()
    assert len(buf) == 10 and s.bytes == 1000 and s.evicted == 100 - 10


def test_a_gop_whose_last_frame_is_on_the_window_edge_is_kept() -> None:
    buf = RingBuffer(window_s=5.0, max_gap_s=60.0)  # the 5 s without frames here is no outage
    buf.push(EncodedFrame("video", "h264", bytes(10), 0, VIDEO_TIME_BASE, T0, True))
    buf.push(EncodedFrame("audio", "opus", bytes(10), 0, AUDIO_TIME_BASE, T0 + 5.0))  # horizon == T0
    assert buf.keyframe_times() == [T0]
    buf.push(EncodedFrame("audio", "opus", bytes(10), 960, AUDIO_TIME_BASE, T0 + 5.02))  # now out of the window
    assert buf.keyframe_times() == []


def test_small_positive_bounds_are_valid() -> None:
    assert RingBuffer(window_s=0.5).window_s == 0.5  # any positive window, not only whole seconds
    assert RingBuffer(max_bytes=1).max_bytes == 1
    for bad in ({"window_s": -1}, {"max_bytes": -1}):
        with pytest.raises(ValueError):
            RingBuffer(**bad)


# -- a silence of the whole camera cuts the buffer (issue 14, IP cameras item 3) ----------------------------


def _silent_for(gap_s: float, after_frame: int = 70) -> list[EncodedFrame]:
    """8 s of the synthetic stream, with every frame from video frame ``after_frame`` on sent ``gap_s`` later."""
    frames = list(stream(8))
    cut_t = T0 + after_frame / FPS
    return [f if f.t < cut_t else EncodedFrame(f.kind, f.codec, f.data, f.pts, f.time_base, f.t + gap_s, f.keyframe)
            for f in frames]


def test_a_silence_cuts_the_buffer_and_video_waits_for_a_keyframe() -> None:
    buf = RingBuffer(window_s=15.0, max_bytes=1 << 30)
    frames = _silent_for(10.0)  # starts mid-GOP: keyframes at 60 and 90
    resumed_t = T0 + 70 / FPS + 10.0
    before = [f for f in frames if f.t < resumed_t]
    for f in before:
        assert buf.push(f)
    stored = len(buf)
    accepted = [f for f in frames[len(before):] if buf.push(f)]
    # Nothing from before the silence is left to become pre-roll, however far back a clip asks.
    out = buf.frames_since(float("-inf"))
    assert out and min(f.t for f in out) >= resumed_t
    video = [f for f in out if f.kind == "video"]
    assert video[0].keyframe and video[0].pts == 90 * 6000  # the P-frames 70..89 had nothing to decode against
    assert [f.pts for f in accepted if f.kind == "video"] == [i * 6000 for i in range(90, 120)]
    s = buf.stats()
    assert s.cuts == 1 and s.dropped_no_keyframe == 20 and s.dropped_broken == 0
    assert s.evicted == stored + sum(1 for f in accepted if f.kind == "audio" and f.t < video[0].t)
    assert buf.keyframe_times() == sorted(f.t for f in video if f.keyframe)


def test_a_short_stall_is_not_a_silence() -> None:
    """A jitter buffer that stalled for a second or two releases its burst: that is no outage, the pre-roll stays."""
    buf = RingBuffer(window_s=15.0, max_bytes=1 << 30)
    frames = _silent_for(2.5)
    assert all(buf.push(f) for f in frames)
    s = buf.stats()
    assert s.cuts == 0 and s.evicted == 0 and len(buf) == len(frames)
    assert buf.frames_since(float("-inf"))[0].t == T0


def test_a_silence_is_any_track_not_one() -> None:
    """Video that stalls while audio keeps coming is no outage of the camera (the stale-GOP rule handles it)."""
    buf = RingBuffer(window_s=15.0, max_bytes=1 << 30)
    frames = [f for f in stream(6) if f.kind == "audio" or f.t < T0 + 2.0 or f.t >= T0 + 5.5]
    for f in frames:
        buf.push(f)
    assert buf.stats().cuts == 0 and buf.keyframe_times()[0] == T0
    with pytest.raises(ValueError):
        RingBuffer(max_gap_s=0)
