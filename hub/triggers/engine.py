"""Per-camera trigger engine: turns motion and sound results into events.

States: ``idle`` → ``active`` (activity ongoing) → ``post_roll`` (activity stopped; the event ends if nothing
happens for ``post_roll_s``, activity sends it back to ``active``) → ``cooldown`` (no new event for
``cooldown_s``) → ``idle``. An event is also cut at ``max_length_s`` and when the camera is disarmed.

The engine knows no clock and no event loop: every input carries the camera's stream time ``t`` and every call
returns the outputs it caused, in order. That makes it deterministic, replayable from a recording and testable
without sleeping; the caller (the camera pipeline) calls ``tick`` now and then so time-outs fire while a
camera sends nothing.

Motion state (for Home Assistant's motion sensor) is reported while disarmed too; events are not.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import Enum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from hub.triggers.audio import AudioResult
from hub.triggers.motion import Box, MotionResult

Trigger = Literal["motion", "sound"]  # the names the store, the bus and MQTT use
EndReason = Literal["post_roll", "max_length", "disarmed"]
_HOUR_S = 3600.0


class EngineConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    pre_roll_s: float = Field(5.0, ge=0, description="Video kept before the activity onset.")
    post_roll_s: float = Field(5.0, ge=0, description="An event ends this long after the last activity.")
    max_length_s: float = Field(120.0, gt=0, description="Longest event; longer activity is cut here.")
    # 0 by default: a cooldown holds back the *next visit*, not a repeat of this one (a person who leaves and
    # comes back 30 s later was reported 3.6 s late behind a 30 s cooldown). Post-roll merges the bursts of one
    # visit and max_events_per_hour bounds a storm; a user who wants fewer clips can still set it.
    cooldown_s: float = Field(0.0, ge=0, description="No new event for this long after one ends.")
    max_events_per_hour: int = Field(30, ge=1, description="Events started in any trailing hour.")
    motion_enabled: bool = True
    audio_enabled: bool = True
    debounce_hits: int = Field(2, ge=1, description="Motion frames needed among the last debounce_window.")
    debounce_window: int = Field(3, ge=1, description="Detect frames the debounce looks at.")
    motion_clear_s: float = Field(1.0, gt=0, description="Motion state ends after this long without motion.")
    sound_clear_s: float = Field(1.0, gt=0, description="Sound state ends after this long without a trigger.")
    update_interval_s: float = Field(1.0, gt=0, description="Least often EventUpdated is sent while active.")


class State(str, Enum):  # noqa: UP042 - a StrEnum would change str() and f-strings of the states
    IDLE = "idle"
    ACTIVE = "active"
    POST_ROLL = "post_roll"
    COOLDOWN = "cooldown"


def _remember(recent: deque[tuple[float, bool]], window: int, t: float, moved: bool) -> None:
    """Put a frame into the debounce window by its time, keeping the newest ``window`` frames. A frame older than
    a full window, or a second copy of a frame time already there, changes nothing."""
    if any(ts == t for ts, _ in recent) or (len(recent) >= window and t < recent[0][0]):
        return
    items = sorted([*recent, (t, moved)], key=lambda item: item[0])[-window:]
    recent.clear()
    recent.extend(items)


# -- outputs ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EventStarted:
    event_key: str
    t_start: float  # onset of the activity (the clip starts pre_roll_s before it)
    detected_at: float  # when the engine decided (debounce included)
    trigger: Trigger
    pre_roll_s: float

    @property
    def clip_start(self) -> float:
        return self.t_start - self.pre_roll_s


@dataclass(frozen=True, slots=True)
class EventUpdated:
    event_key: str
    t: float
    trigger: Trigger
    score: float | None  # motion score of this sample
    boxes: tuple[Box, ...]
    level_dbfs: float | None  # sound level of this sample
    peak_motion: float
    audio_peak_dbfs: float | None
    triggers: tuple[Trigger, ...]


@dataclass(frozen=True, slots=True)
class EventEnded:
    event_key: str
    t_end: float  # end of the clip: last activity + post_roll, the max-length cut, or the disarm time
    reason: EndReason
    peak_motion: float
    audio_peak_dbfs: float | None
    triggers: tuple[Trigger, ...]


@dataclass(frozen=True, slots=True)
class EventSuppressed:
    """Activity that would have started an event but the hourly cap was reached (reported once per run)."""

    t: float
    trigger: Trigger
    reason: Literal["hourly_cap"] = "hourly_cap"


@dataclass(frozen=True, slots=True)
class MotionState:
    t: float
    active: bool
    score: float


@dataclass(frozen=True, slots=True)
class SoundState:
    t: float
    active: bool
    level_dbfs: float


EngineEvent = EventStarted | EventUpdated | EventEnded | EventSuppressed | MotionState | SoundState


@dataclass
class _Event:
    key: str
    t_start: float
    last_activity: float
    triggers: list[Trigger]
    peak_motion: float = 0.0
    audio_peak: float | None = None
    last_update: float = float("-inf")


@dataclass
class _Signal:
    """One trigger's debounced on/off state."""

    active: bool = False
    onset: float | None = None  # start of the current run of activity
    last: float = float("-inf")  # last time it was seen
    value: float = 0.0
    recent: deque[tuple[float, bool]] = field(default_factory=deque)


class TriggerEngine:
    def __init__(self, camera_id: str, config: EngineConfig | None = None, armed: bool = True) -> None:
        self.camera_id = camera_id
        self.config = config or EngineConfig()
        self._armed = armed
        self._state = State.IDLE
        self._event: _Event | None = None
        self._cooldown_until = float("-inf")
        self._last_end = float("-inf")
        self._starts: deque[float] = deque()
        self._motion = _Signal(recent=deque(maxlen=self.config.debounce_window))
        self._sound = _Signal()
        self._suppressed = False
        self._now = float("-inf")

    # -- properties -----------------------------------------------------------------------------------------

    @property
    def state(self) -> State:
        return self._state

    @property
    def armed(self) -> bool:
        return self._armed

    @property
    def motion_active(self) -> bool:
        return self._motion.active

    @property
    def sound_active(self) -> bool:
        return self._sound.active

    @property
    def event_key(self) -> str | None:
        return self._event.key if self._event else None

    # -- inputs ---------------------------------------------------------------------------------------------

    def feed_motion(self, t: float, result: MotionResult) -> list[EngineEvent]:
        out: list[EngineEvent] = []
        frame_t = t
        t = self._advance(t, out)
        sig, c = self._motion, self.config
        # The debounce looks at the newest frames by their own time, not by arrival: a frame delivered late (a
        # retransmission, a decoder catching up) takes its place in the past, and one older than the whole window
        # has no say. Counted by arrival, a stale motion frame would complete a debounce it never belonged to and
        # start an event early (and a late still frame would push a real motion frame out of the window).
        _remember(sig.recent, c.debounce_window, frame_t, result.motion)
        if result.motion:
            sig.last = max(sig.last, frame_t)
            sig.value = result.score
        if not sig.active:
            # A motion frame older than motion_clear_s belongs to a run that is over (a late frame from long ago).
            hits = [ts for ts, m in sig.recent if m and t - ts <= c.motion_clear_s]
            if len(hits) >= c.debounce_hits:
                sig.active, sig.onset = True, hits[0]
                out.append(MotionState(t, True, result.score))
        if sig.active and result.motion and c.motion_enabled:
            self._activity(frame_t, "motion", sig.onset, out, score=result.score, boxes=tuple(result.boxes))
        return out

    def feed_audio(self, t: float, result: AudioResult) -> list[EngineEvent]:
        out: list[EngineEvent] = []
        t = self._advance(t, out)
        sig = self._sound
        if result.triggered:
            sig.last = t
            sig.value = result.level_dbfs
            if not sig.active:
                # The audio trigger already required the rise to hold, so no second debounce here.
                sig.active, sig.onset = True, t
                out.append(SoundState(t, True, result.level_dbfs))
            if self.config.audio_enabled:
                self._activity(t, "sound", sig.onset, out, level=result.level_dbfs)
        return out

    def tick(self, t: float) -> list[EngineEvent]:
        out: list[EngineEvent] = []
        self._advance(t, out)
        return out

    def set_armed(self, armed: bool, t: float) -> list[EngineEvent]:
        out: list[EngineEvent] = []
        t = self._advance(t, out)
        self._armed = armed
        if not armed and self._event is not None:
            self._end(t, "disarmed", out)
            # Disarming is the user's decision, not the end of activity: re-arming may start at once.
            self._state = State.IDLE
            self._cooldown_until = float("-inf")
        return out

    # -- internals ------------------------------------------------------------------------------------------

    def _advance(self, t: float, out: list[EngineEvent]) -> float:
        """Apply every time-out due by ``t``; returns ``t`` (never earlier than an earlier call's)."""
        t = max(t, self._now)
        self._now = t
        c = self.config
        for sig, clear in ((self._motion, c.motion_clear_s), (self._sound, c.sound_clear_s)):
            if sig.active and t - sig.last > clear:
                sig.active, sig.onset = False, None
                out.append(MotionState(t, False, 0.0) if sig is self._motion else SoundState(t, False, sig.value))
        if not self._motion.active and not self._sound.active:
            self._suppressed = False  # the run is over: a later one may report suppression again
        ev = self._event
        if ev is not None:
            if self._state is State.ACTIVE and not self._any_active():
                self._state = State.POST_ROLL
            cut = ev.t_start + c.max_length_s
            quiet_end = ev.last_activity + c.post_roll_s
            if self._state is State.POST_ROLL and t >= quiet_end and quiet_end <= cut:
                self._end(quiet_end, "post_roll", out)
            elif t >= cut:
                self._end(cut, "max_length", out)
        if self._state is State.COOLDOWN and t >= self._cooldown_until:
            self._state = State.IDLE
        return t

    def _any_active(self) -> bool:
        c = self.config
        return (c.motion_enabled and self._motion.active) or (c.audio_enabled and self._sound.active)

    def _activity(self, t: float, trigger: Trigger, onset: float | None, out: list[EngineEvent], *,
                  score: float | None = None, boxes: tuple[Box, ...] = (), level: float | None = None) -> None:
        # t is the sample's own time, which a late sample puts before the engine's now: the event's last activity
        # never moves back, and decisions (start, updates) are stamped with now.
        sample_t, t = t, max(t, self._now)
        ev = self._event
        if ev is None:
            if self._state is not State.IDLE or not self._armed:
                return
            if not self._start(t, trigger, onset, out):
                return
            ev = self._event
            assert ev is not None
        self._state = State.ACTIVE
        ev.last_activity = max(ev.last_activity, sample_t)
        if trigger not in ev.triggers:
            ev.triggers.append(trigger)
        peaked = False
        if score is not None and score > ev.peak_motion:
            ev.peak_motion, peaked = score, True
        if level is not None and (ev.audio_peak is None or level > ev.audio_peak):
            ev.audio_peak, peaked = level, True
        # Every new peak goes out (the recorder picks the snapshot there); otherwise at most once per interval.
        if peaked or t - ev.last_update >= self.config.update_interval_s:
            ev.last_update = t
            out.append(EventUpdated(ev.key, t, trigger, score, boxes, level, ev.peak_motion, ev.audio_peak,
                                    tuple(ev.triggers)))

    def _start(self, t: float, trigger: Trigger, onset: float | None, out: list[EngineEvent]) -> bool:
        while self._starts and self._starts[0] <= t - _HOUR_S:
            self._starts.popleft()
        if len(self._starts) >= self.config.max_events_per_hour:
            if not self._suppressed:
                self._suppressed = True
                out.append(EventSuppressed(t, trigger))
            return False
        # Activity that carried on through the previous event's end and cooldown starts this one when the
        # cooldown ran out: clips never overlap and the onset stays within reach of the pre-roll buffer.
        t_start = max(onset if onset is not None else t, self._last_end, self._cooldown_until)
        key = f"{self.camera_id}-{round(t_start * 1000)}"
        self._event = _Event(key, t_start, t, [trigger])
        self._starts.append(t)
        out.append(EventStarted(key, t_start, t, trigger, self.config.pre_roll_s))
        return True

    def _end(self, t_end: float, reason: EndReason, out: list[EngineEvent]) -> None:
        ev = self._event
        assert ev is not None
        out.append(EventEnded(ev.key, t_end, reason, ev.peak_motion, ev.audio_peak, tuple(ev.triggers)))
        self._event = None
        self._last_end = t_end
        self._cooldown_until = t_end + self.config.cooldown_s
        self._state = State.COOLDOWN
