"""Domain errors: what went wrong, in the hub's own words, with a hint for the user.

Modules below the web edge raise these (or subclasses named for their domain: ``CameraError``, ``PairingError``,
``SignalingError``, ``LiveError``); only ``hub.web.errors`` turns an ``ErrorKind`` into an HTTP status, so the
ingest, camera and live-view code never speaks HTTP.
"""

from __future__ import annotations

from enum import Enum


class ErrorKind(Enum):
    INVALID = "invalid"  # the request itself is malformed or inconsistent
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"  # valid, but not in the current state (no video yet, already accepted)
    TOO_LARGE = "too_large"
    UNSUPPORTED = "unsupported"  # e.g. a codec the other side cannot receive
    UNAVAILABLE = "unavailable"  # shutting down, or at a capacity limit
    REFUSED = "refused"  # a credential (pairing code, token) that is wrong or expired


class HubError(Exception):
    """Base of every domain error; ``kind`` says what sort of failure it is, ``hint`` what the user can do."""

    def __init__(self, kind: ErrorKind, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.hint = hint

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.kind.name}, {self.message!r})"


class CameraError(HubError):
    """A camera operation that cannot be done (unknown camera, revoked, bad settings)."""


class PairingError(HubError):
    """A pairing code that is wrong, used or expired."""
