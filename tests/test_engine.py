"""The trigger engine's state machine, driven by synthetic results on stream time."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from hub.triggers.audio import AudioResult
from hub.triggers.engine import (
    EngineConfig,
    EngineEvent,
    EventEnded,
    EventStarted,
    EventSuppressed,
    EventUpdated,
    MotionState,
    SoundState,
    State,
    TriggerEngine,
)
from hub.triggers.motion import MotionResult

DT = 0.2  # 5 fps detect frames
MOVE = MotionResult(True, 0.05, [(0.1, 0.2, 0.3, 0.6)])
STILL = MotionResult(False, 0.0, [])
SOUND = AudioResult(-20.0, -60.0, True)
QUIET = AudioResult(-60.0, -60.0, False)


def motion(eng: TriggerEngine, t0: float, t1: float, result: MotionResult = MOVE) -> list[EngineEvent]:
    """Feed detect frames from t0 (inclusive) to t1 (exclusive)."""
    out: list[EngineEvent] = []
    n = round((t1 - t0) / DT)
    for i in range(n):
        out += eng.feed_motion(t0 + i * DT, result)
    return out


def of(events: list[EngineEvent], kind: type) -> list:
    return [e for e in events if isinstance(e, kind)]


def test_debounce_two_of_three() -> None:
    eng = TriggerEngine("cam")
    out = eng.feed_motion(0.0, MOVE) + eng.feed_motion(0.2, STILL) + eng.feed_motion(0.4, STILL)
    out += eng.feed_motion(0.6, MOVE)
    assert not of(out, EventStarted) and eng.state is State.IDLE
    out = eng.feed_motion(0.8, STILL) + eng.feed_motion(1.0, MOVE)
    started = of(out, EventStarted)
    assert len(started) == 1
    assert started[0].t_start == 0.6 and started[0].detected_at == 1.0 and started[0].trigger == "motion"
    assert started[0].clip_start == 0.6 - 5.0
    assert of(out, MotionState) == [MotionState(1.0, True, 0.05)]
    assert eng.state is State.ACTIVE


def test_lifecycle_active_post_roll_cooldown_idle() -> None:
    eng = TriggerEngine("cam", EngineConfig(post_roll_s=5, cooldown_s=30))
    out = motion(eng, 0.0, 3.0)
    assert len(of(out, EventStarted)) == 1
    key = of(out, EventStarted)[0].event_key
    out = motion(eng, 3.0, 4.2, STILL)
    assert eng.state is State.POST_ROLL  # motion cleared just over 1 s after the last motion frame at 2.8
    assert [(round(s.t, 1), s.active) for s in of(out, MotionState)] == [(4.0, False)]
    out = eng.tick(7.7)
    assert not of(out, EventEnded)
    out = eng.tick(7.9)
    ended = of(out, EventEnded)
    assert len(ended) == 1 and abs(ended[0].t_end - 7.8) < 1e-9
    assert (ended[0].event_key, ended[0].reason, ended[0].peak_motion, ended[0].triggers) == \
        (key, "post_roll", 0.05, ("motion",))
    assert eng.state is State.COOLDOWN
    # Activity during cooldown starts nothing...
    out = motion(eng, 10.0, 12.0)
    assert not of(out, EventStarted) and of(out, MotionState)
    # ...after it, the next activity does.
    eng.tick(38.0)
    assert eng.state is State.IDLE
    out = motion(eng, 40.0, 41.0)
    assert len(of(out, EventStarted)) == 1


def test_activity_in_post_roll_extends_the_event() -> None:
    eng = TriggerEngine("cam", EngineConfig(post_roll_s=5))
    motion(eng, 0.0, 2.0)
    motion(eng, 2.0, 5.0, STILL)
    assert eng.state is State.POST_ROLL
    out = motion(eng, 5.0, 6.0)
    assert not of(out, EventStarted) and not of(out, EventEnded)
    assert eng.state is State.ACTIVE
    out = motion(eng, 6.0, 12.0, STILL)
    ended = of(out, EventEnded)
    assert len(ended) == 1 and abs(ended[0].t_end - (5.8 + 5)) < 1e-9


def test_max_length_cuts_then_continuing_activity_starts_after_cooldown() -> None:
    eng = TriggerEngine("cam", EngineConfig(max_length_s=20, cooldown_s=10))
    out = motion(eng, 0.0, 45.0)
    started, ended = of(out, EventStarted), of(out, EventEnded)
    assert ended[0].reason == "max_length" and ended[0].t_end == started[0].t_start + 20
    assert len(started) == 2
    # The second event starts when the cooldown ran out, never overlapping the first.
    assert abs(started[1].t_start - (ended[0].t_end + 10)) < 1e-9
    assert started[1].event_key != started[0].event_key


def test_hourly_cap() -> None:
    eng = TriggerEngine("cam", EngineConfig(max_events_per_hour=3, cooldown_s=0, post_roll_s=1))
    starts, suppressed = [], []
    for k in range(6):
        t = k * 100.0
        out = motion(eng, t, t + 2) + motion(eng, t + 2, t + 6, STILL)
        starts += of(out, EventStarted)
        suppressed += of(out, EventSuppressed)
    assert len(starts) == 3 and len(suppressed) == 3  # reported once per blocked run
    out = motion(eng, 3700.0, 3702.0)  # the first start left the trailing hour
    assert len(of(out, EventStarted)) == 1


def test_disarmed_reports_motion_but_starts_nothing() -> None:
    eng = TriggerEngine("cam", armed=False)
    out = motion(eng, 0.0, 2.0) + motion(eng, 2.0, 4.0, STILL)
    assert not of(out, EventStarted)
    assert [s.active for s in of(out, MotionState)] == [True, False]


def test_disarm_ends_the_event_and_rearm_can_start_at_once() -> None:
    eng = TriggerEngine("cam")
    motion(eng, 0.0, 2.0)
    out = eng.set_armed(False, 2.1)
    assert of(out, EventEnded)[0].reason == "disarmed" and of(out, EventEnded)[0].t_end == 2.1
    assert not eng.armed and eng.state is State.IDLE
    assert not of(motion(eng, 2.2, 3.0), EventStarted)
    eng.set_armed(True, 3.0)
    out = motion(eng, 3.0, 3.4)
    assert len(of(out, EventStarted)) == 1


def test_sound_starts_and_extends_without_debounce() -> None:
    eng = TriggerEngine("cam", EngineConfig(post_roll_s=2))
    out = eng.feed_audio(1.0, SOUND)
    started = of(out, EventStarted)
    assert started and started[0].trigger == "sound" and started[0].t_start == 1.0
    assert of(out, SoundState)[0].active
    out = motion(eng, 1.2, 2.0)
    upd = of(out, EventUpdated)
    assert upd and upd[-1].triggers == ("sound", "motion") and upd[-1].audio_peak_dbfs == -20.0
    out = eng.feed_audio(2.0, QUIET) + eng.tick(10.0)
    ended = of(out, EventEnded)
    assert ended and ended[0].triggers == ("sound", "motion") and ended[0].peak_motion == 0.05


def test_disabled_triggers() -> None:
    eng = TriggerEngine("cam", EngineConfig(motion_enabled=False))
    out = motion(eng, 0.0, 2.0)
    assert not of(out, EventStarted) and of(out, MotionState)  # still reported for Home Assistant
    eng = TriggerEngine("cam", EngineConfig(audio_enabled=False))
    assert not of(eng.feed_audio(0.0, SOUND), EventStarted)


def test_updates_carry_peaks_and_are_throttled() -> None:
    eng = TriggerEngine("cam")
    out = []
    for i, score in enumerate([0.01, 0.02, 0.03, 0.03, 0.03, 0.03, 0.03, 0.03, 0.03, 0.03, 0.03, 0.02]):
        out += eng.feed_motion(i * DT, MotionResult(True, score, [(0, 0, 0.1, 0.1)]))
    upd = of(out, EventUpdated)
    peaks = [u.peak_motion for u in upd]
    assert peaks == sorted(peaks) and peaks[-1] == 0.03
    assert len(upd) < 8  # not one per frame once the peak stops growing
    assert upd[0].boxes == ((0, 0, 0.1, 0.1),)


def test_time_never_runs_backwards() -> None:
    eng = TriggerEngine("cam")
    motion(eng, 10.0, 11.0)
    out = eng.feed_motion(5.0, MOVE)  # a stale timestamp is treated as "now"
    assert not of(out, EventEnded) and eng.state is State.ACTIVE


def test_late_and_out_of_order_timestamps_do_not_end_an_event_early() -> None:
    """A frame delivered late (an audio chunk behind the video, a retransmission) carries a time before the
    engine's newest: it must not pull the last activity back (which would end the event on an earlier post-roll)."""
    eng = TriggerEngine("cam", EngineConfig(post_roll_s=5, cooldown_s=30))
    out = motion(eng, 0.0, 10.0)  # motion until 9.8
    assert len(of(out, EventStarted)) == 1
    out = eng.feed_motion(3.0, MOVE) + eng.feed_audio(2.0, SOUND) + eng.feed_motion(1.0, STILL)
    assert not of(out, EventEnded)
    out = eng.tick(10.0)
    assert not of(out, EventEnded) and eng.state is State.ACTIVE, out
    out = motion(eng, 10.0, 12.0, STILL) + eng.tick(14.7)
    assert not of(out, EventEnded), out  # the last activity is still 9.8 (+ 5 s post-roll = 14.8)
    ended = of(eng.tick(14.9), EventEnded)
    assert len(ended) == 1 and abs(ended[0].t_end - 14.8) < 1e-6, ended


def test_a_late_motion_frame_does_not_complete_the_debounce() -> None:
    """The debounce counts the newest frames by their time: a stale motion frame delivered now (from 9.0, a
    retransmission) is not one of the last three frames and must not start an event with the single real one."""
    eng = TriggerEngine("cam")
    out = eng.feed_motion(10.0, STILL) + eng.feed_motion(10.2, STILL) + eng.feed_motion(10.4, MOVE)
    out += eng.feed_motion(9.0, MOVE)
    assert not of(out, EventStarted) and not of(out, MotionState) and eng.state is State.IDLE, out
    # The next real motion frame is the second of the last three: now it starts, with the real onset.
    started = of(eng.feed_motion(10.6, MOVE), EventStarted)
    assert [(s.t_start, s.detected_at) for s in started] == [(10.4, 10.6)]


def test_late_still_frames_do_not_push_motion_out_of_the_debounce() -> None:
    """Still frames from the past (a decoder catching up) are older than the window: the two real motion frames
    of the last three still start the event at the second one."""
    eng = TriggerEngine("cam")
    out = eng.feed_motion(10.0, STILL) + eng.feed_motion(10.2, MOVE)
    out += eng.feed_motion(9.6, STILL) + eng.feed_motion(9.8, STILL)
    started = of(out + eng.feed_motion(10.4, MOVE), EventStarted)
    assert [(s.t_start, s.detected_at) for s in started] == [(10.2, 10.4)]


def test_a_late_motion_frame_does_not_stretch_the_motion_state() -> None:
    """Motion last seen at 5.0 clears at 6.0 + even if a frame from 4.0 arrives at 5.8."""
    eng = TriggerEngine("cam", EngineConfig(post_roll_s=5))
    feed(eng, [4.0, 4.5, 5.0])
    out = eng.feed_motion(5.75, STILL) + eng.feed_motion(4.25, MOVE) + eng.tick(6.25)
    assert [(m.t, m.active) for m in of(out, MotionState)] == [(6.25, False)]
    ended = of(eng.tick(10.25), EventEnded)
    assert [e.t_end for e in ended] == [10.0]  # last activity 5.0 + post-roll, not the late frame's arrival


# -- exact boundaries: times below are binary fractions (0.25 s steps), so equal means equal ------------------


def feed(eng: TriggerEngine, times: list[float], result: MotionResult = MOVE) -> list[EngineEvent]:
    out: list[EngineEvent] = []
    for t in times:
        out += eng.feed_motion(t, result)
    return out


def steps(t0: float, t1: float, dt: float = 0.25) -> list[float]:
    """t0, t0 + dt, ... up to and including t1 (dt a binary fraction: every time exact)."""
    return [t0 + i * dt for i in range(round((t1 - t0) / dt) + 1)]


def test_the_smallest_settings_are_valid_and_take_effect() -> None:
    # Camera settings reach the engine as they are (hub/pipeline.py): a pre-roll, post-roll or cooldown of 0, one
    # event an hour, a single-frame debounce and sub-second times are all a user's to choose.
    cfg = EngineConfig(pre_roll_s=0, post_roll_s=0, cooldown_s=0, max_events_per_hour=1, debounce_hits=1,
                       debounce_window=1, max_length_s=0.5, motion_clear_s=0.5, sound_clear_s=0.5,
                       update_interval_s=0.5)
    eng = TriggerEngine("cam", cfg)
    out = eng.feed_motion(1.0, MOVE)
    started = of(out, EventStarted)
    assert len(started) == 1 and started[0].t_start == 1.0 and started[0].clip_start == 1.0
    ended = of(eng.tick(1.5), EventEnded)
    assert [(e.t_end, e.reason) for e in ended] == [(1.5, "max_length")]
    for bad in ({"post_roll_s": -1}, {"max_length_s": 0}, {"max_events_per_hour": 0}, {"debounce_hits": 0},
                {"motion_clear_s": 0}, {"update_interval_s": 0}):
        with pytest.raises(ValidationError):
            EngineConfig(**bad)
    with pytest.raises(ValidationError):  # one config per engine, swapped whole: never changed under it
        cfg.post_roll_s = 5.0


def test_motion_state_holds_for_exactly_motion_clear_s_and_ends_with_score_zero() -> None:
    eng = TriggerEngine("cam")  # the hub's motion_clear_s: the default, 1 s
    out = feed(eng, [0.0, 0.5])
    assert of(out, MotionState) == [MotionState(0.5, True, 0.05)] and eng.motion_active
    assert not of(eng.feed_motion(1.5, STILL), MotionState) and eng.motion_active  # 1.0 s after: still on
    assert of(eng.feed_motion(1.75, STILL), MotionState) == [MotionState(1.75, False, 0.0)]
    assert not eng.motion_active


def test_sound_state_ends_sound_clear_s_after_the_last_loud_chunk_with_its_level() -> None:
    eng = TriggerEngine("cam")  # the hub's sound_clear_s: the default, 1 s
    assert of(eng.feed_audio(0.0, SOUND), SoundState) == [SoundState(0.0, True, -20.0)] and eng.sound_active
    assert not of(eng.feed_audio(1.0, QUIET), SoundState) and eng.sound_active
    assert of(eng.tick(1.25), SoundState) == [SoundState(1.25, False, -20.0)]
    assert not eng.sound_active


def test_the_running_event_is_named_until_it_ends() -> None:
    eng = TriggerEngine("cam", EngineConfig(post_roll_s=1.0))
    assert eng.event_key is None
    key = of(feed(eng, [0.0, 0.5]), EventStarted)[0].event_key
    assert eng.event_key == key
    assert of(eng.tick(10.0), EventEnded)[0].event_key == key and eng.event_key is None


def test_post_roll_ends_exactly_post_roll_s_after_the_last_activity() -> None:
    eng = TriggerEngine("cam", EngineConfig(post_roll_s=2.0, motion_clear_s=0.5))
    feed(eng, [0.0, 0.5, 1.0])
    assert not of(eng.tick(2.0), EventEnded) and eng.state is State.POST_ROLL
    ended = of(eng.tick(3.0), EventEnded)  # exactly 1.0 + 2.0
    assert [(e.t_end, e.reason) for e in ended] == [(3.0, "post_roll")]


def test_an_event_going_quiet_exactly_at_the_cut_ended_by_itself() -> None:
    # The last activity plus the post-roll lands on max_length: the event ended by going quiet, not by the cut.
    eng = TriggerEngine("cam", EngineConfig(post_roll_s=2.0, max_length_s=3.0, motion_clear_s=0.5))
    feed(eng, [0.0, 0.5, 1.0])
    ended = of(eng.tick(3.0), EventEnded)
    assert [(e.t_end, e.reason) for e in ended] == [(3.0, "post_roll")]


def test_max_length_cuts_at_the_frame_that_reaches_it() -> None:
    eng = TriggerEngine("cam", EngineConfig(max_length_s=2.0))
    out = feed(eng, steps(0.0, 1.75))
    assert of(out, EventStarted)[0].t_start == 0.0 and not of(out, EventEnded)
    ended = of(eng.feed_motion(2.0, MOVE), EventEnded)
    assert [(e.t_end, e.reason) for e in ended] == [(2.0, "max_length")]


def test_a_new_event_may_start_the_moment_the_cooldown_ends() -> None:
    eng = TriggerEngine("cam", EngineConfig(post_roll_s=0.5, motion_clear_s=0.5, cooldown_s=2.0))
    feed(eng, [0.0, 0.5])
    ended = of(eng.tick(1.5), EventEnded)
    assert [e.t_end for e in ended] == [1.0]  # cooldown until 3.0
    out = feed(eng, [2.5, 3.0])
    started = of(out, EventStarted)
    assert [(s.detected_at, s.t_start) for s in started] == [(3.0, 3.0)]


def test_updates_go_out_once_per_update_interval_while_the_peak_holds() -> None:
    eng = TriggerEngine("cam", EngineConfig(update_interval_s=1.0))
    upd = of(feed(eng, steps(0.0, 3.0)), EventUpdated)
    # the first (a new peak) at detection, then one each full second after the last one sent
    assert [u.t for u in upd] == [0.25, 1.25, 2.25]


def test_every_new_peak_goes_out_at_once_and_a_steady_sound_once_per_interval() -> None:
    # The recorder picks the snapshot at the peak (hub/recorder.py): a peak held back a second is a worse photo.
    eng = TriggerEngine("cam")
    out: list[EngineEvent] = []
    for i, t in enumerate(steps(0.0, 1.0)):
        out += eng.feed_motion(t, MotionResult(True, 0.01 * (i + 1), [(0.1, 0.1, 0.2, 0.2)]))
    assert [(u.t, u.peak_motion) for u in of(out, EventUpdated)] == \
        [(0.25, 0.02), (0.5, 0.03), (0.75, 0.04), (1.0, 0.05)]
    eng = TriggerEngine("cam")
    out = []
    for t, level in zip(steps(0.0, 0.5), (-30.0, -25.0, -20.0), strict=True):
        out += eng.feed_audio(t, AudioResult(level, -60.0, True))
    assert [(u.t, u.audio_peak_dbfs) for u in of(out, EventUpdated)] == [(0.0, -30.0), (0.25, -25.0), (0.5, -20.0)]
    out = []
    for t in steps(0.75, 2.0):  # the same level again and again: not a new peak
        out += eng.feed_audio(t, SOUND)
    assert [u.t for u in of(out, EventUpdated)] == [1.5]


def test_a_start_exactly_an_hour_old_no_longer_counts_against_the_hourly_cap() -> None:
    eng = TriggerEngine("cam", EngineConfig(max_events_per_hour=1, cooldown_s=0, post_roll_s=0.5,
                                            motion_clear_s=0.5))
    assert [s.detected_at for s in of(feed(eng, [0.0, 0.5]), EventStarted)] == [0.5]
    assert of(eng.tick(2.0), EventEnded)
    feed(eng, [3000.0, 3000.25, 3000.5], STILL)
    out = feed(eng, [3599.5, 3600.0])  # the first start is 3599.5 s old: the cap holds
    assert not of(out, EventStarted) and len(of(out, EventSuppressed)) == 1
    started = of(eng.feed_motion(3600.5, MOVE), EventStarted)  # exactly an hour after it
    assert [s.detected_at for s in started] == [3600.5]


def test_re_applying_the_arm_state_keeps_the_running_event() -> None:
    # Every arm change re-applies every camera's state (hub/arming.py listeners): "still armed" must not cut it.
    eng = TriggerEngine("cam")
    assert eng.set_armed(False, 0.0) == [] and eng.set_armed(True, 0.25) == []  # nothing running: nothing said
    key = of(feed(eng, [0.5, 0.75]), EventStarted)[0].event_key
    assert eng.set_armed(True, 1.0) == []
    assert eng.armed and eng.state is State.ACTIVE and eng.event_key == key


def test_the_event_stays_active_while_either_trigger_is() -> None:
    eng = TriggerEngine("cam", EngineConfig(motion_clear_s=0.5, sound_clear_s=0.5))
    for t in steps(0.0, 1.0):
        eng.feed_motion(t, MOVE)
        eng.feed_audio(t, SOUND)
    for t in steps(1.25, 2.5):  # the motion stops, the sound goes on
        eng.feed_motion(t, STILL)
        eng.feed_audio(t, SOUND)
    eng.tick(2.5)
    assert not eng.motion_active and eng.sound_active and eng.state is State.ACTIVE


def test_by_default_a_returning_visitor_starts_an_event_at_once() -> None:
    """A person leaves (motion until 9.8, the event ends at 14.8) and is back 30 s after leaving: the default
    engine starts the second event at the second frame of motion, not when a cooldown runs out."""
    eng = TriggerEngine("cam")
    motion(eng, 0.0, 10.0)
    assert of(eng.tick(15.0), EventEnded)
    started = of(motion(eng, 39.8, 41.0), EventStarted)
    assert [(round(s.t_start, 1), round(s.detected_at, 1)) for s in started] == [(39.8, 40.0)]
