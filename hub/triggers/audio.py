"""Sound trigger: loudness per 20 ms frame against an adaptive noise floor.

The phone sends Opus in 20 ms frames, so 20 ms is the natural unit. A sound triggers when its RMS level rises
``rise_db`` above the room's noise floor and stays there for ``hold_ms`` (a click of a few ms does not, a clap
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


class AudioConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rise_db: float = Field(18.0, gt=0, description="Rise over the noise floor that triggers.")
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


class AudioTrigger:
    """Stateful per-camera trigger: feed every decoded chunk in order to ``process``."""

    def __init__(self, config: AudioConfig | None = None) -> None:
        self.config = config or AudioConfig()
        self.reset()

    def reset(self) -> None:
        self._floor: float | None = None
        self._held_ms = 0.0
        self._active = False
        self._rate = 0
        self._frame_len = 0
        self._pending = np.zeros(0, np.float32)
        self._last_level = _SILENCE_DBFS

    @property
    def floor_dbfs(self) -> float | None:
        return self._floor

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
        for i in range(whole):
            frame = x[i * n:(i + 1) * n]
            level = _dbfs(float(np.dot(frame, frame)) / n)
            triggered |= self._step(level)
            peak = level if peak is None or level > peak else peak
        if peak is not None:
            self._last_level = peak
        floor = self._floor if self._floor is not None else self._last_level
        return AudioResult(self._last_level, floor, triggered)

    def process_level(self, level_dbfs: float) -> AudioResult:
        """One frame's level measured by the sender (RFC 6464), instead of samples: the same decision per frame.

        The sender's level is quantised to 1 dB; the trigger's rise, hold and floor work in whole dB anyway.
        """
        triggered = self._step(level_dbfs)
        self._last_level = level_dbfs
        return AudioResult(level_dbfs, self._floor if self._floor is not None else level_dbfs, triggered)

    def _step(self, level: float) -> bool:
        c = self.config
        dt = c.frame_ms / 1000.0
        if self._floor is None:
            self._floor = max(level, c.floor_min_dbfs)
        trigger_at = max(self._floor + c.rise_db, c.min_level_dbfs)
        # Once a sound has crossed the trigger level it keeps counting while it stays within release_db of it:
        # a clap's reverberation decays a few dB per frame and is still the same sound.
        sustaining = self._active or self._held_ms > 0
        above = level >= (trigger_at - c.release_db if sustaining else trigger_at)
        self._held_ms = self._held_ms + c.frame_ms if above else 0.0
        # Knocks, claps and breaking glass are often shorter than the hold but well above it: they count at once.
        impulse = level >= trigger_at + c.impulse_db
        self._active = above and (self._active or impulse or self._held_ms >= c.hold_ms)
        # Floor update runs during sounds too: that is what stops a steady new noise from triggering forever.
        if level > self._floor:
            self._floor += min(level - self._floor, c.floor_rise_db_s * dt)
        else:
            self._floor += (level - self._floor) * (1.0 - math.exp(-dt / c.floor_fall_s))
        self._floor = max(self._floor, c.floor_min_dbfs)
        return self._active


def _dbfs(mean_square: float) -> float:
    """RMS level relative to a full-scale square wave (0 dBFS); a full-scale sine reads -3 dBFS."""
    return 10.0 * math.log10(mean_square) if mean_square > 1e-12 else _SILENCE_DBFS
