"""Durations as people type them: '90s', '15m', '1h', '2d', '1w' -> seconds.

One parser for every place a user types a duration (the CLI's --for and --since, the hub's Telegram commands),
so '1h' means the same everywhere. What a bare number means is the caller's choice: seconds on the command line
(like sleep(1)), minutes in a chat message ("/disarm 30").
"""

from __future__ import annotations

import re

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|min|h|d|w)?\s*$", re.IGNORECASE)
_UNITS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str, *, bare_unit_s: float = 1.0) -> float | None:
    """Seconds, or None when ``text`` is not a duration. ``bare_unit_s``: what a number without a unit counts."""
    m = _DURATION.match(text)
    if not m:
        return None
    unit = m.group(2)
    return float(m.group(1)) * (_UNITS[unit.lower()] if unit else bare_unit_s)
