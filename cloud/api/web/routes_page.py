"""Routes the cloud page needs beyond the core API."""

from __future__ import annotations

from cloud.api.web.registry import Route

ROUTES: list[Route] = []
