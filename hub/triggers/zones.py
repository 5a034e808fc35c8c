"""Zones and masks: polygons in normalised coordinates, rasterised to the detector's frame size.

Polygons are stored normalised (x, y in [0, 1], origin top-left) so they survive a change of the detect
resolution or of the phone's orientation-independent aspect. A *zone* is an area where motion counts; a *mask*
is an area that is ignored (a TV, a tree, the street). With no zones the whole frame counts.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

Point = tuple[float, float]
Polygon = tuple[Point, ...]
PolygonLike = str | Sequence[Sequence[float]]

MAX_POINTS = 64


class ZoneError(ValueError):
    """A polygon that cannot be used, phrased for the user."""


def parse_polygon(text: str) -> Polygon:
    """Parse ``"x,y x,y x,y ..."`` (whitespace between points, comma inside a point)."""
    points: list[tuple[float, float]] = []
    for i, token in enumerate(text.split(), start=1):
        parts = token.split(",")
        if len(parts) != 2:
            raise ZoneError(f"point {i} {token!r}: expected 'x,y'")
        try:
            points.append((float(parts[0]), float(parts[1])))
        except ValueError:
            raise ZoneError(f"point {i} {token!r}: not a number") from None
    return validate_polygon(points)


def validate_polygon(points: Sequence[Sequence[float]]) -> Polygon:
    """Check a polygon and return it as a tuple of (x, y) floats."""
    if not 3 <= len(points) <= MAX_POINTS:
        raise ZoneError(f"a polygon needs 3 to {MAX_POINTS} points, got {len(points)}")
    out: list[Point] = []
    for i, p in enumerate(points, start=1):
        if len(p) != 2:
            raise ZoneError(f"point {i}: expected two coordinates")
        x, y = float(p[0]), float(p[1])
        if not (math.isfinite(x) and math.isfinite(y)):
            raise ZoneError(f"point {i}: coordinates must be finite")
        if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
            raise ZoneError(f"point {i} ({x:g}, {y:g}): coordinates are normalised, between 0 and 1")
        out.append((x, y))
    if abs(_area(out)) < 1e-6:
        # Collinear or repeated points would rasterise to nothing and silently disable a zone.
        raise ZoneError("the polygon has no area (points are collinear or repeated)")
    return tuple(out)


def format_polygon(poly: Sequence[Point]) -> str:
    return " ".join(f"{x:.4g},{y:.4g}" for x, y in poly)


def to_polygon(value: PolygonLike) -> Polygon:
    return parse_polygon(value) if isinstance(value, str) else validate_polygon(value)


def rasterize(polygons: Iterable[PolygonLike], width: int, height: int) -> np.ndarray:
    """Union of the polygons as a boolean (height, width) array.

    A pixel belongs to a polygon when its centre does (even-odd rule, half-open edges), so normalised 0..1
    spans every pixel at any resolution and polygons sharing an edge tile without gaps or overlaps. OpenCV's
    fillPoly also paints pixels its outline merely touches, which shifts small zones by a pixel at 160x90.
    """
    if width <= 0 or height <= 0:
        raise ValueError("width and height must be positive")
    out = np.zeros((height, width), bool)
    yc = (np.arange(height) + 0.5) / height
    xc = (np.arange(width) + 0.5) / width
    for poly in polygons:
        p = np.asarray(to_polygon(poly), np.float64)
        x0, y0 = p[:, 0], p[:, 1]
        x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
        inside = np.zeros((height, width), bool)
        for ax, ay, bx, by in zip(x0, y0, x1, y1, strict=True):
            if ay == by:
                continue  # horizontal edges never cross a row centre under the half-open rule
            lo, hi = min(ay, by), max(ay, by)
            rows = np.nonzero((yc >= lo) & (yc < hi))[0]
            if rows.size == 0:
                continue
            xs = ax + (yc[rows] - ay) * (bx - ax) / (by - ay)
            # Each crossing flips every pixel centre to its right: the even-odd rule, one edge at a time.
            inside[rows] ^= xc[None, :] >= xs[:, None]
        out |= inside
    return out


def active_area(width: int, height: int, zones: Iterable[PolygonLike] = (),
                masks: Iterable[PolygonLike] = ()) -> np.ndarray | None:
    """Where motion counts: the zones (or the whole frame without any) minus the masks.

    Returns None when there is nothing to restrict, so the detector can skip masking altogether.
    """
    zones = list(zones)
    masks = list(masks)
    if not zones and not masks:
        return None
    area = rasterize(zones, width, height) if zones else np.ones((height, width), bool)
    if masks:
        area &= ~rasterize(masks, width, height)
    return area


def _area(points: Sequence[Point]) -> float:
    s = 0.0
    pts = list(points)
    for (x0, y0), (x1, y1) in zip(pts, pts[1:] + pts[:1], strict=True):
        s += x0 * y1 - x1 * y0
    return s / 2.0
