"""Zones and masks: parsing, validation, rasterisation."""

from __future__ import annotations

import numpy as np
import pytest

from hub.triggers.zones import ZoneError, active_area, format_polygon, parse_polygon, rasterize, validate_polygon


def test_parse_and_format_round_trip() -> None:
    poly = parse_polygon("0,0 0.5,0  0.5,0.5\n0,0.5")
    assert poly == ((0.0, 0.0), (0.5, 0.0), (0.5, 0.5), (0.0, 0.5))
    assert parse_polygon(format_polygon(poly)) == poly


@pytest.mark.parametrize("text, message", [
    ("0,0 1,1", "3 to"),
    ("0,0 1,0 x,1", "not a number"),
    ("0,0 1,0 1", "expected 'x,y'"),
    ("0,0 1.5,0 1,1", "between 0 and 1"),
    ("0,0 -0.1,0 1,1", "between 0 and 1"),
    ("0,0 0.5,0.5 1,1", "no area"),
    ("0,0 nan,0 1,1", "finite"),
])
def test_invalid_polygons(text: str, message: str) -> None:
    with pytest.raises(ZoneError, match=message):
        parse_polygon(text)


def test_validate_accepts_lists() -> None:
    assert validate_polygon([[0, 0], [1, 0], [1, 1]]) == ((0.0, 0.0), (1.0, 0.0), (1.0, 1.0))


def test_rasterize_left_half() -> None:
    m = rasterize(["0,0 0.5,0 0.5,1 0,1"], 320, 180)
    assert m.shape == (180, 320) and m.dtype == bool
    assert m[:, :160].all() and not m[:, 160:].any()


def test_full_frame_covers_every_pixel_at_any_size() -> None:
    for w, h in ((320, 180), (160, 90), (17, 11)):
        assert rasterize(["0,0 1,0 1,1 0,1"], w, h).all()


def test_triangle_area_is_about_half() -> None:
    m = rasterize([[(0, 0), (1, 0), (0, 1)]], 400, 400)
    assert abs(m.mean() - 0.5) < 0.01


def test_active_area_zones_minus_masks() -> None:
    assert active_area(32, 18) is None
    area = active_area(320, 180, zones=["0,0 0.5,0 0.5,1 0,1"], masks=["0,0 1,0 1,0.5 0,0.5"])
    assert area is not None
    assert area[120:, :150].all()
    assert not area[:80].any() and not area[:, 170:].any()
    only_mask = active_area(320, 180, masks=["0,0 1,0 1,0.5 0,0.5"])
    assert only_mask is not None and not only_mask[:80].any() and only_mask[100:].all()
    assert np.count_nonzero(active_area(320, 180, zones=["0,0 1,0 1,1 0,1", "0,0 0.2,0 0.2,0.2"])) == 320 * 180
