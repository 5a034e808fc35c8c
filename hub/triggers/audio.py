"""Sound trigger: loudness per 20 ms frame against an adaptive noise floor.

The phone sends Opus in 20 ms frames, so 20 ms is the natural unit. A sound triggers when its RMS level rises
above the room's noise floor (by a bar between ``min_rise_db`` and ``rise_db`` that follows how steady the floor
is) and stays there for ``hold_ms`` (a click of a few ms does not, a clap
or a bark does; a single frame far above the level, a knock or breaking glass, counts at once). Two guards keep it
useful:

* the floor adapts: it follows quieter levels quickly (a fan switching off) and louder ones slowly, so a fan or
  mains hum becomes the new normal within seconds instead of an alarm that never ends;
* ``min_level_dbfs`` is an absolute floor: in a silent room the relative rise alone would fire on a fridge
  compressor clicking, so quiet sounds never trigger whatever the floor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from hub.media.frames import AudioChunk

_SILENCE_DBFS = -120.0  # what digital silence reads as (log of zero avoided)
_DEV_TC_S = 2.0  # memory of the level's wander around the floor


class AudioConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rise_db: float = Field(18.0, gt=0, description="Rise over the noise floor that triggers (an unsteady floor).")
    min_rise_db: float = Field(8.0, gt=0, description="Least rise that triggers over a steady floor (a fan).")
    steadiness_k: float = Field(4.0, gt=0, description="Rise needed, in mean deviations of the level from its floor.")
    hold_ms: float = Field(40.0, ge=0, description="How long the rise must last.")
    min_level_dbfs: float = Field(-45.0, le=0, description="Sounds quieter than this never trigger.")
    impulse_db: float = Field(6.0, ge=0, description="One frame this far above the trigger level skips the hold.")
    release_db: float = Field(6.0, ge=0, description="Hysteresis: a sound ends this far below the trigger level.")
    floor_rise_db_s: float = Field(3.0, gt=0, description="How fast the floor follows louder levels (dB/s).")
    floor_fall_s: float = Field(0.5, gt=0, description="Time constant of the floor following quieter levels.")
    floor_min_dbfs: float = Field(-80.0, le=0, description="The floor never goes below this.")
    frame_ms: float = Field(20.0, gt=0, le=200, description="Analysis frame.")


@dataclass(slots=True)
class AudioResult:
    level_dbfs: float  # loudest 20 ms frame in the chunk
    floor_dbfs: float  # noise floor after the chunk
    triggered: bool  # a sound held above the trigger level during the chunk


class _LevelTrigger:
    """The decision on one stream of 20 ms levels: adaptive floor, its steadiness, rise, hold, impulse, release."""

    def __init__(self, config: AudioConfig) -> None:
        self.config = config
        self.floor: float | None = None
        self.held_ms = 0.0
        self.active = False
        self.dev = config.rise_db / config.steadiness_k  # unknown: assume an unsteady room at first

    def rise_db(self) -> float:
        """The rise that triggers now: a multiple of how much the level wanders around its floor, between
        ``min_rise_db`` (a fan or an air conditioner: steady within a dB or two) and ``rise_db`` (a street, a TV).
        A fixed 18 dB missed a clap over a steady fan: the clap's 20 ms RMS rose only 10-14 dB over it."""
        c = self.config
        return min(max(c.steadiness_k * self.dev, c.min_rise_db), c.rise_db)

    def step(self, level: float, loudness: float) -> bool:
        """``level`` is what is compared with this stream's floor; ``loudness`` (the broadband level) is what
        ``min_level_dbfs`` applies to."""
        c = self.config
        dt = c.frame_ms / 1000.0
        if self.floor is None:
            self.floor = max(level, c.floor_min_dbfs)
        trigger_at = self.floor + self.rise_db()
        # Once a sound has crossed the trigger level it keeps counting while it stays within release_db of it:
        # a clap's reverberation decays a few dB per frame and is still the same sound.
        sustaining = self.active or self.held_ms > 0
        slack = c.release_db if sustaining else 0.0
        above = level >= trigger_at - slack and loudness >= c.min_level_dbfs - slack
        self.held_ms = self.held_ms + c.frame_ms if above else 0.0
        # Knocks, claps and breaking glass are often shorter than the hold but well above it: they count at once.
        impulse = level >= trigger_at + c.impulse_db
        self.active = above and (self.active or impulse or self.held_ms >= c.hold_ms)
        # The level's wander around the floor (mean absolute deviation, ~2 s memory), learnt from the ordinary
        # frames only: a sound must not make the room look unsteady and raise the bar for the next one.
        if not sustaining and not above:
            self.dev += (abs(level - self.floor) - self.dev) * (1.0 - math.exp(-dt / _DEV_TC_S))
        # Floor update runs during sounds too: that is what stops a steady new noise from triggering forever.
        if level > self.floor:
            self.floor += min(level - self.floor, c.floor_rise_db_s * dt)
        else:
            self.floor += (level - self.floor) * (1.0 - math.exp(-dt / c.floor_fall_s))
        self.floor = max(self.floor, c.floor_min_dbfs)
        return self.active


class AudioTrigger:
    """Stateful per-camera trigger: feed every decoded chunk in order to ``process``.

    Decoded samples are judged twice: on their broadband level and on the level of their first difference (a
    +6 dB/octave tilt). Fans, air conditioners and hum put their energy low; claps, knocks' clicks and glass put
    theirs high, so over a loud fan a sound that barely lifts the broadband level stands well clear of the tilted
    one. Levels sent by the phone (RFC 6464, ``process_level``) are broadband only.
    """

    def __init__(self, config: AudioConfig | None = None) -> None:
        self.config = config or AudioConfig()
        self.reset()

    def reset(self) -> None:
        self._broad = _LevelTrigger(self.config)
        self._high = _LevelTrigger(self.config)
        self._rate = 0
        self._frame_len = 0
        self._pending = np.zeros(0, np.float32)
        self._prev_sample = 0.0
        self._last_level = _SILENCE_DBFS

    @property
    def floor_dbfs(self) -> float | None:
        return self._broad.floor

    def rise_db(self) -> float:
        """The broadband rise that triggers now (see ``_LevelTrigger.rise_db``)."""
        return self._broad.rise_db()

    def process(self, chunk: AudioChunk) -> AudioResult:
        x = np.asarray(chunk.samples, np.float32).ravel()
        if chunk.sample_rate != self._rate:
            self._rate = chunk.sample_rate
            self._frame_len = max(round(chunk.sample_rate * self.config.frame_ms / 1000), 1)
            self._pending = np.zeros(0, np.float32)
        if self._pending.size:
            x = np.concatenate((self._pending, x))
        n = self._frame_len
        whole = x.size // n
        self._pending = x[whole * n:].copy()
        peak = None
        triggered = False
        prev = self._prev_sample
        for i in range(whole):
            frame = x[i * n:(i + 1) * n]
            energy = float(np.dot(frame, frame))
            # The first difference's energy without building it: sum (x[i] - x[i-1])^2 expands into the frame's
            # energy twice, less its lag-1 correlation (the frame's last sample and the previous frame's one
            # at the ends). Two dot products instead of an array the size of the frame.
            first, last = float(frame[0]), float(frame[-1])
            lag = float(np.dot(frame[1:], frame[:-1])) + first * prev
            tilted = max(2.0 * energy - last * last + prev * prev - 2.0 * lag, 0.0)
            prev = last
            level = _dbfs(energy / n)
            # Both streams step on every frame (their floors must follow the room); either one triggers.
            fired = self._broad.step(level, level)
            fired = self._high.step(_dbfs(tilted / n), level) or fired
            triggered |= fired
            peak = level if peak is None or level > peak else peak
        self._prev_sample = prev
        if peak is not None:
            self._last_level = peak
        floor = self._broad.floor if self._broad.floor is not None else self._last_level
        return AudioResult(self._last_level, floor, triggered)

    def process_level(self, level_dbfs: float) -> AudioResult:
        """One frame's level measured by the sender (RFC 6464), instead of samples: the same decision per frame.

        The sender's level is quantised to 1 dB; the trigger's rise, hold and floor work in whole dB anyway.
        """
        triggered = self._broad.step(level_dbfs, level_dbfs)
        self._last_level = level_dbfs
        floor = self._broad.floor
        return AudioResult(level_dbfs, floor if floor is not None else level_dbfs, triggered)


def _dbfs(mean_square: float) -> float:
    """RMS level relative to a full-scale square wave (0 dBFS); a full-scale sine reads -3 dBFS."""
    return 10.0 * math.log10(mean_square) if mean_square > 1e-12 else _SILENCE_DBFS
