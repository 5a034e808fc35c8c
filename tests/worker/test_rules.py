"""The prompt grammar (a table of prompts and the rules they must give) and the local decision."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from cloud.worker.rules import Found, HourRange, Rules, decide, parse_prompt

H = HourRange
NIGHT = H(20 * 60, 6 * 60)

TABLE = [
    # prompt, classes, ignore, hours, quiet, days, zones, min_count, fallback
    ("alert me if a person comes to the door at night", ("person",), (), (NIGHT,), (), (), (), 1, False),
    ("ignore cats", (), ("cat",), (), (), (), (), 1, False),
    ("only between 22:00 and 06:00", ("person",), (), (H(1320, 360),), (), (), (), 1, False),
    ("someone in the driveway zone", ("person",), (), (), (), (), ("driveway",), 1, False),
    ("notify me about cars and dogs but not cats", ("car", "dog"), ("cat",), (), (), (), (), 1, False),
    ("don't alert me between 8am and 6pm", ("person",), (), (), (H(480, 1080),), (), (), 1, False),
    ("two or more people after 10pm on weekdays", ("person",), (), (H(1320, 360),), (), (0, 1, 2, 3, 4), (), 2,
     False),
    ("alert on anything except birds", (), ("bird",), (), (), (), (), 1, False),
    ("from 9:30 pm to 5 am, intruders only", ("person",), (), (H(1290, 300),), (), (), (), 1, False),
    ("a group of people on weekends", ("person",), (), (), (), (5, 6), (), 2, False),
    ("Any vehicle in zone gate, ignore people", ("car", "truck", "bus", "motorcycle"), ("person",), (), (), (),
     ("gate",), 1, False),
    ("what a lovely day", ("person",), (), (), (), (), (), 1, True),
    ("", ("person",), (), (), (), (), (), 1, False),
]


@pytest.mark.parametrize(("prompt", "classes", "ignore", "hours", "quiet", "days", "zones", "count", "fallback"),
                         TABLE, ids=[row[0] or "empty" for row in TABLE])
def test_prompt_table(prompt: str, classes: tuple[str, ...], ignore: tuple[str, ...], hours: tuple[HourRange, ...],
                      quiet: tuple[HourRange, ...], days: tuple[int, ...], zones: tuple[str, ...], count: int,
                      fallback: bool) -> None:
    r = parse_prompt(prompt)
    assert (r.classes, r.ignore, r.hours, r.quiet_hours, r.days, r.zones, r.min_count, r.fallback) == (
        classes, ignore, hours, quiet, days, zones, count, fallback)


def test_fallback_says_so_and_rules_are_cacheable_json() -> None:
    r = parse_prompt("what a lovely day")
    assert any("not understood" in n for n in r.notes)
    assert parse_prompt("what a lovely day") is r  # cached: a pure function of the prompt
    assert any("package" in n for n in parse_prompt("tell me when a package is left").notes)
    for prompt, *_ in TABLE:
        rules = parse_prompt(prompt)
        assert Rules.from_json(json.loads(json.dumps(rules.to_json()))) == rules


def test_hour_range_wraps_midnight() -> None:
    assert NIGHT.contains(23 * 60) and NIGHT.contains(0) and NIGHT.contains(5 * 60 + 59)
    assert not NIGHT.contains(6 * 60) and not NIGHT.contains(12 * 60)
    assert H(480, 1080).contains(480) and not H(480, 1080).contains(1080)


PERSON = Found("person", 1, 0.82, ((0.3, 0.9),))
CAT = Found("cat", 1, 0.7, ((0.8, 0.9),))
AT_23 = datetime(2026, 3, 2, 23, 10, tzinfo=UTC)  # a Monday
AT_14 = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)
DRIVEWAY = {"Driveway": [(0.0, 0.5), (0.5, 0.5), (0.5, 1.0), (0.0, 1.0)]}


@pytest.mark.parametrize(("prompt", "found", "when", "zones", "notify", "reason_has"), [
    ("alert me if a person comes to the door at night", [PERSON], AT_23, None, True, "person (0.82) at 23:10"),
    ("alert me if a person comes to the door at night", [PERSON], AT_14, None, False, "outside 20:00–06:00"),
    ("alert me if a person comes at night", [], AT_23, None, False, "nothing was recognised"),
    ("ignore cats", [CAT], AT_14, None, False, "only ignored objects: cat"),
    ("ignore cats", [CAT, PERSON], AT_14, None, True, "person"),
    ("dogs only", [PERSON], AT_14, None, False, "the rules ask for dog"),
    ("person in the driveway zone", [PERSON], AT_14, DRIVEWAY, True, "in the driveway zone"),
    ("person in the driveway zone", [Found("person", 1, 0.8, ((0.9, 0.9),))], AT_14, DRIVEWAY, False,
     "not in the driveway zone"),
    ("person in the driveway zone", [PERSON], AT_14, None, True, "not defined for this camera"),
    ("two or more people", [PERSON], AT_14, None, False, "fewer than 2"),
    ("don't alert me between 8am and 6pm", [PERSON], AT_14, None, False, "quiet time"),
    ("people on weekends", [PERSON], AT_14, None, False, "Monday"),
    ("gibberish words", [PERSON], AT_14, None, True, "person"),
])
def test_local_decision(prompt: str, found: list[Found], when: datetime, zones: dict[str, list[tuple[float, float]]]
                        | None, notify: bool, reason_has: str) -> None:
    d = decide(found, parse_prompt(prompt), when, "UTC", zones)
    assert d.notify is notify
    assert reason_has in d.reason


def test_hours_are_the_users_local_time() -> None:
    rules = parse_prompt("people at night")
    # 14:00 UTC is 23:00 in Tokyo: night there
    assert decide([PERSON], rules, AT_14, "Asia/Tokyo").notify is True
    assert decide([PERSON], rules, AT_14, "Europe/London").notify is False
    naive = datetime(2026, 3, 2, 23, 0)  # naive times are UTC
    assert decide([PERSON], rules, naive, "UTC").notify is True
