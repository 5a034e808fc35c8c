"""The user's prompt as structured rules, and the local alert decision made from them.

``parse_prompt`` is deterministic and pure (cached; its result is JSON-serialisable, so the API can store it
with the prompt). It understands a small grammar (docs/worker.md lists it):

* what:   person/people/someone/visitor/intruder..., car/vehicle/truck/bike..., cat/dog/bird/animal/pet...
* ignore: "ignore X", "except X", "not X", "no X", "don't alert/notify me about X" (up to the clause's end)
* when:   "at night" (20:00-06:00), "during the day", "in the morning/afternoon/evening",
          "between 22:00 and 06:00", "from 10pm to 6am", "after 22:00", "before 7am"; "weekdays", "weekends",
          day names. A time inside an ignore clause ("don't alert me between 8am and 6pm") is a quiet time.
* where:  "in the driveway zone", "zone porch"
* count:  "two or more people", "more than one person", "a group"

Anything else falls back to: notify on any person, and the rules say so in ``notes``.
``decide`` turns detections + rules + the event's local time into ``notify`` and a one-line ``reason``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

NIGHT = (20 * 60, 6 * 60)
DAY = (6 * 60, 20 * 60)
PERIODS = {
    "night": NIGHT, "overnight": NIGHT, "nighttime": NIGHT, "night time": NIGHT, "nights": NIGHT,
    "day": DAY, "daytime": DAY, "day time": DAY, "daylight": DAY,
    "morning": (6 * 60, 12 * 60), "afternoon": (12 * 60, 18 * 60), "evening": (18 * 60, 23 * 60),
}
ANIMALS = ("cat", "dog", "bird", "horse", "sheep", "cow", "bear")
VEHICLES = ("car", "truck", "bus", "motorcycle")
# word (singular/plural handled by the regex) -> detector labels (COCO names)
VOCAB: dict[str, tuple[str, ...]] = {
    "person": ("person",), "people": ("person",), "persons": ("person",), "someone": ("person",),
    "somebody": ("person",), "anyone": ("person",), "anybody": ("person",), "man": ("person",),
    "men": ("person",), "woman": ("person",), "women": ("person",), "child": ("person",),
    "children": ("person",), "kid": ("person",), "human": ("person",), "visitor": ("person",),
    "intruder": ("person",), "stranger": ("person",), "burglar": ("person",), "thief": ("person",),
    "thieves": ("person",), "courier": ("person",), "postman": ("person",), "mailman": ("person",),
    "delivery": ("person",), "guest": ("person",),
    "car": ("car",), "vehicle": VEHICLES, "truck": ("truck",), "van": ("truck",), "lorry": ("truck",),
    "bus": ("bus",), "motorcycle": ("motorcycle",), "motorbike": ("motorcycle",), "scooter": ("motorcycle",),
    "bicycle": ("bicycle",), "bike": ("bicycle",), "cyclist": ("bicycle", "person"),
    "cat": ("cat",), "dog": ("dog",), "bird": ("bird",), "horse": ("horse",), "sheep": ("sheep",),
    "cow": ("cow",), "bear": ("bear",), "fox": ("dog",), "animal": ANIMALS, "pet": ("cat", "dog"),
    "wildlife": ANIMALS,
}
UNSUPPORTED = ("package", "parcel", "box", "fire", "smoke", "face", "license plate", "glass")
WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5}
DAYS = {"monday": 0, "tuesday": 1, "wednesday": 2, "thursday": 3, "friday": 4, "saturday": 5, "sunday": 6}

_TIME = r"(?:noon|midnight|\d{1,2}(?::\d{2})?\s*(?:am|pm|a\.m\.|p\.m\.)?|\d{1,2}h\d{0,2})"
_RANGE = re.compile(rf"(?:between|from)\s+({_TIME})\s*(?:and|to|until|till|-|–)\s*({_TIME})|"
                    rf"\b({_TIME})\s*(?:-|–|to|until)\s*({_TIME})")
_AFTER = re.compile(rf"\bafter\s+({_TIME})")
_BEFORE = re.compile(rf"\bbefore\s+({_TIME})")
_IGNORE = re.compile(r"\b(?:ignore|ignoring|except|excluding|not|no|never|without|don'?t|do not|dont|skip)\b")
_VERB = re.compile(r"\s*(?:alert|notify|tell|ping|warn|message|send|bother|wake)(?:\s+(?:me|us))?")
_CLAUSE_END = re.compile(r"[,.;!?]|\b(?:but|only|alert|notify|tell|ping|warn|message|send)\b")
_ZONE = re.compile(r"\b(?:in|inside|within|at|on|near|by|into|enters?|entering)\s+(?:the\s+|my\s+|our\s+)?"
                   r"([a-z0-9][\w -]{0,30}?)\s+(?:zone|area)\b|\bzone\s+[\"']?([\w-]{1,31})")
_COUNT = re.compile(r"\b(\d+|one|two|three|four|five)\s+or\s+more\b|\bmore\s+than\s+(\d+|one|two|three|four)\b|"
                    r"\b(?:a\s+)?(group|crowd|several|multiple)\b")


@dataclass(frozen=True)
class HourRange:
    """Local minutes since midnight, [start, end); wraps past midnight when end <= start."""

    start: int
    end: int

    def contains(self, minute: int) -> bool:
        if self.start < self.end:
            return self.start <= minute < self.end
        return minute >= self.start or minute < self.end

    def __str__(self) -> str:
        return f"{self.start // 60:02d}:{self.start % 60:02d}–{self.end // 60 % 24:02d}:{self.end % 60:02d}"


@dataclass(frozen=True)
class Rules:
    """What the user asked for. Empty ``classes`` means any recognised label that is not ignored."""

    classes: tuple[str, ...] = ("person",)
    ignore: tuple[str, ...] = ()
    hours: tuple[HourRange, ...] = ()  # notify only inside these (empty: any time)
    quiet_hours: tuple[HourRange, ...] = ()  # never notify inside these
    days: tuple[int, ...] = ()  # 0 = Monday (empty: any day)
    zones: tuple[str, ...] = ()
    min_count: int = 1
    fallback: bool = False
    notes: tuple[str, ...] = ()
    prompt: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Rules:
        def hr(items: Any) -> tuple[HourRange, ...]:
            return tuple(HourRange(int(h["start"]), int(h["end"])) for h in items or ())
        return cls(classes=tuple(data.get("classes", ("person",))), ignore=tuple(data.get("ignore", ())),
                   hours=hr(data.get("hours")), quiet_hours=hr(data.get("quiet_hours")),
                   days=tuple(int(d) for d in data.get("days", ())), zones=tuple(data.get("zones", ())),
                   min_count=int(data.get("min_count", 1)), fallback=bool(data.get("fallback", False)),
                   notes=tuple(data.get("notes", ())), prompt=str(data.get("prompt", "")))


def _minutes(text: str) -> int | None:
    s = text.strip().lower().replace(".", "")
    if s == "noon":
        return 12 * 60
    if s == "midnight":
        return 0
    m = re.fullmatch(r"(\d{1,2})(?:[:h](\d{2})?)?\s*(am|pm)?", s)
    if not m:
        return None
    h, mi, ampm = int(m.group(1)), int(m.group(2) or 0), m.group(3)
    if ampm == "pm" and h < 12:
        h += 12
    elif ampm == "am" and h == 12:
        h = 0
    if h > 24 or mi > 59:
        return None
    return (h * 60 + mi) % (24 * 60)


def _ignore_spans(text: str) -> list[tuple[int, int]]:
    spans = []
    for m in _IGNORE.finditer(text):
        verb = _VERB.match(text, m.end())  # "don't alert me about cats": the verb belongs to the negation
        end = _CLAUSE_END.search(text, verb.end() if verb else m.end())
        spans.append((m.start(), end.start() if end else len(text)))
    return spans


def _inside(pos: int, spans: Sequence[tuple[int, int]]) -> bool:
    return any(a <= pos < b for a, b in spans)


@lru_cache(maxsize=1024)
def parse_prompt(prompt: str | None) -> Rules:
    """Structured rules for a prompt. Pure: the same prompt always gives the same rules."""
    source = (prompt or "").strip()
    text = " " + re.sub(r"\s+", " ", source.lower().replace("’", "'")) + " "
    if not source:
        return Rules(notes=("no prompt: notifying on any person",))
    spans = _ignore_spans(text)
    classes: list[str] = []
    ignore: list[str] = []
    notes: list[str] = []
    understood = False
    for word, labels in VOCAB.items():
        plural = "(?:s|es)?" if not word.endswith(("s", "people", "men", "children")) else ""
        for m in re.finditer(rf"\b{re.escape(word)}{plural}\b", text):
            target = ignore if _inside(m.start(), spans) else classes
            target.extend(labels)
            understood = True
    for word in UNSUPPORTED:
        if re.search(rf"\b{word}s?\b", text):
            notes.append(f"'{word}' is not something the detector recognises")
    hours: list[HourRange] = []
    quiet: list[HourRange] = []
    taken: list[tuple[int, int]] = []
    for m in _RANGE.finditer(text):
        a, b = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
        sa, sb = _minutes(a), _minutes(b)
        if sa is None or sb is None or sa == sb:
            continue
        (quiet if _inside(m.start(), spans) else hours).append(HourRange(sa, sb))
        taken.append(m.span())
        understood = True
    for rx, make in ((_AFTER, lambda t: HourRange(t, NIGHT[1] if t >= 12 * 60 else 24 * 60)),
                     (_BEFORE, lambda t: HourRange(0, t))):
        for m in rx.finditer(text):
            t = _minutes(m.group(1))
            if t is None or _inside(m.start(), taken) or (t == 0 and rx is _BEFORE):
                continue
            (quiet if _inside(m.start(), spans) else hours).append(make(t))
            understood = True
    for name, (start, end) in PERIODS.items():
        for m in re.finditer(rf"\b(?:at|during|in|by|over|each|every)\s+(?:the\s+)?{name}\b|\b{name}\s*time\b",
                             text):
            hr = HourRange(start, end)
            target_hours = quiet if _inside(m.start(), spans) else hours
            if hr not in target_hours:
                target_hours.append(hr)
            understood = True
    days: list[int] = []
    if re.search(r"\bweekdays?\b|\bworkdays?\b", text):
        days += [0, 1, 2, 3, 4]
    if re.search(r"\bweekends?\b", text):
        days += [5, 6]
    for name, d in DAYS.items():
        if re.search(rf"\b{name}s?\b", text):
            days.append(d)
    understood = understood or bool(days)
    zones = []
    for m in _ZONE.finditer(text):
        zones.append((m.group(1) or m.group(2)).strip())
        understood = True
    min_count = 1
    for m in _COUNT.finditer(text):
        if m.group(1):
            n = m.group(1)
            min_count = max(min_count, int(n) if n.isdigit() else WORDS[n])
        elif m.group(2):
            n = m.group(2)
            min_count = max(min_count, (int(n) if n.isdigit() else WORDS[n]) + 1)
        else:
            min_count = max(min_count, 2)
        understood = True
    cls = tuple(dict.fromkeys(c for c in classes if c not in ignore))
    ign = tuple(dict.fromkeys(ignore))
    if not understood:
        return Rules(classes=("person",), fallback=True, prompt=source,
                     notes=(*notes, "prompt not understood: notifying on any person"))
    if not cls and not ign:
        cls = ("person",)
        notes.append("no object named: notifying on a person")
    return Rules(classes=cls, ignore=ign, hours=tuple(hours), quiet_hours=tuple(quiet),
                 days=tuple(sorted(set(days))), zones=tuple(dict.fromkeys(zones)), min_count=min_count,
                 notes=tuple(notes), prompt=source)


@dataclass(frozen=True)
class Found:
    """One recognised label: how many, how sure, and where (normalised foot points, bottom-centre of boxes)."""

    label: str
    count: int
    score: float
    points: tuple[tuple[float, float], ...] = ()


@dataclass(frozen=True)
class Decision:
    notify: bool
    reason: str
    matched: tuple[str, ...] = field(default_factory=tuple)


def point_in_polygon(x: float, y: float, poly: Sequence[Sequence[float]]) -> bool:
    """Even-odd rule, normalised coordinates."""
    inside = False
    n = len(poly)
    for i in range(n):
        x0, y0 = poly[i][0], poly[i][1]
        x1, y1 = poly[(i + 1) % n][0], poly[(i + 1) % n][1]
        if (y0 > y) != (y1 > y) and x < (x1 - x0) * (y - y0) / (y1 - y0) + x0:
            inside = not inside
    return inside


def _norm(name: str) -> str:
    return re.sub(r"[\s_-]+", " ", name.strip().lower())


def local_time(when: datetime, tz: str) -> datetime:
    aware = when if when.tzinfo else when.replace(tzinfo=UTC)
    return aware.astimezone(ZoneInfo(tz))


def decide(found: Sequence[Found], rules: Rules, when: datetime, tz: str = "UTC",
           zones: Mapping[str, Sequence[Sequence[float]]] | None = None) -> Decision:
    """Whether to alert, and why, from what the detector found. No external calls."""
    if not found:
        return Decision(False, "nothing was recognised in the clip")
    kept = [f for f in found if f.label not in rules.ignore]
    if not kept:
        return Decision(False, f"only ignored objects: {', '.join(sorted({f.label for f in found}))}")
    wanted = [f for f in kept if not rules.classes or f.label in rules.classes]
    if not wanted:
        return Decision(False, f"saw {', '.join(f.label for f in kept)}, but the rules ask for "
                               f"{', '.join(rules.classes)}")
    wanted = [f for f in wanted if f.count >= rules.min_count]
    if not wanted:
        return Decision(False, f"fewer than {rules.min_count} of {', '.join(rules.classes or ('anything',))}")
    local = local_time(when, tz)
    minute = local.hour * 60 + local.minute
    stamp = local.strftime("%H:%M")
    if rules.days and local.weekday() not in rules.days:
        return Decision(False, f"{local.strftime('%A')} is outside the days asked for")
    if rules.hours and not any(h.contains(minute) for h in rules.hours):
        return Decision(False, f"{stamp} is outside {', '.join(str(h) for h in rules.hours)}")
    for h in rules.quiet_hours:
        if h.contains(minute):
            return Decision(False, f"{stamp} is inside the quiet time {h}")
    what = ", ".join(f"{f.label} ({f.score:.2f})" for f in wanted)
    when_txt = f" at {stamp}" + (f", within {', '.join(str(h) for h in rules.hours)}" if rules.hours else "")
    if rules.zones:
        known = {_norm(k): v for k, v in (zones or {}).items()}
        defined = [z for z in rules.zones if _norm(z) in known]
        if not defined:
            return Decision(True, f"{what}{when_txt}; zone {', '.join(rules.zones)} is not defined for this camera, "
                                  "so it was not checked", tuple(f.label for f in wanted))
        inside = [f for f in wanted
                  if any(point_in_polygon(px, py, known[_norm(z)]) for z in defined for px, py in f.points)]
        if not inside:
            return Decision(False, f"{what} seen, but not in the {', '.join(defined)} zone")
        return Decision(True, f"{', '.join(f.label for f in inside)} in the {', '.join(defined)} zone{when_txt}",
                        tuple(f.label for f in inside))
    return Decision(True, f"{what}{when_txt}", tuple(f.label for f in wanted))
