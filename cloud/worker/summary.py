"""One sentence and a few tags made straight from the detections, honest about what the model knows.

Below the confidence threshold nothing is claimed: "No person was recognised", with the best guess named
as such. Movement words come from the main track's boxes: it grew (walked up to), shrank (walked away from),
moved across (crossed ... from left to right), or stayed (was at). "left after N s" only when the last sighting
is well before the clip's end; otherwise the object was still there when the clip ended.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

PLURALS = {"person": "people", "bus": "buses", "sheep": "sheep", "mouse": "mice", "knife": "knives"}
LEAVE_MARGIN_S = 1.0  # last seen this much before the clip ends counts as "left"
LINGER_S = 30.0


@dataclass(frozen=True)
class LabelSummary:
    label: str
    count: int
    score: float
    first_seen_s: float
    last_seen_s: float
    path: tuple[tuple[float, float, float, float], ...]  # the main track's normalised boxes, in time order


def plural(label: str, n: int) -> str:
    if n == 1:
        return label
    return PLURALS.get(label, label + ("es" if label.endswith(("s", "sh", "ch", "x")) else "s"))


def _article(label: str) -> str:
    return "An" if label[:1] in "aeiou" else "A"


def movement(path: Sequence[tuple[float, float, float, float]]) -> str:
    """'walked up to', 'walked away from', 'crossed ... from left to right' or 'was at'."""
    if len(path) < 2:
        return "was at"
    a, b = path[0], path[-1]
    ha, hb = a[3] - a[1], b[3] - b[1]
    dx = (b[0] + b[2]) / 2 - (a[0] + a[2]) / 2
    if abs(dx) >= 0.15:
        return "crossed {where} from " + ("left to right" if dx > 0 else "right to left")
    if ha > 0 and hb / ha >= 1.3:
        return "walked up to"
    if hb > 0 and ha / hb >= 1.3:
        return "walked away from"
    return "was at"


def sentence(found: Sequence[LabelSummary], camera: str, clip_s: float,
             best_guess: tuple[str, float] | None, threshold: float) -> str:
    where = camera or "the camera"
    if not found:
        guess = ""
        if best_guess is not None:
            guess = (f" (the model's best guess was {_article(best_guess[0]).lower()} {best_guess[0]} at "
                     f"{best_guess[1]:.2f}, below the {threshold:.2f} threshold)")
        return f"Nothing was recognised at {where}{guess}."
    main, others = found[0], found[1:]
    stay = max(0.0, main.last_seen_s - main.first_seen_s)
    span = f"{stay:.0f} s" if stay >= 1 else "a moment"
    if main.count == 1:
        subject = f"{_article(main.label)} {main.label}"
        verb = movement(main.path)
        action = verb.format(where=where) if "{where}" in verb else f"{verb} {where}"
    else:
        subject = f"{main.count} {plural(main.label, main.count)}"
        action = f"were at {where}"
    left = main.last_seen_s + LEAVE_MARGIN_S < clip_s
    if left:
        tail = f" and left after {span}" if stay >= 1 else " briefly"
    else:
        tail = f" and {'was' if main.count == 1 else 'were'} still there when the clip ended ({span})"
    also = ""
    if others:
        names = [f"{o.count} {plural(o.label, o.count)}" if o.count > 1 else f"{_article(o.label).lower()} {o.label}"
                 for o in others]
        also = "; also seen: " + ", ".join(names)
    return f"{subject} {action}{tail}{also}."


def tags(found: Sequence[LabelSummary], night: bool) -> list[str]:
    out = [f.label for f in found]
    if any(f.label == "person" and f.count >= 2 for f in found):
        out.append("group")
    if any(f.last_seen_s - f.first_seen_s >= LINGER_S for f in found):
        out.append("lingering")
    if not found:
        out.append("motion-only")
    out.append("night" if night else "day")
    return out
