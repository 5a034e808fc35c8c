"""Domain errors of the worker's analysis core.

Each carries a short machine ``reason`` (stored on the event when it fails) and a ``hint`` for the user. The
queue loop maps them to a final event state; nothing here knows about HTTP or the queue.
"""

from __future__ import annotations


class WorkerError(Exception):
    """Base of the analysis errors: ``reason`` is a stable code, ``hint`` what the user can do."""

    reason = "analysis_failed"

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def to_json(self) -> dict[str, str]:
        return {"error": self.message, "hint": self.hint, "reason": self.reason}


class ModelError(WorkerError):
    """The detector model is missing, does not load, or is not an Ultralytics-format YOLO detector."""

    reason = "model_unavailable"


class ClipError(WorkerError):
    """The clip cannot be analysed: empty, corrupt, truncated before any frame, or without a video stream."""

    reason = "clip_unreadable"


class NoVideoError(ClipError):
    reason = "clip_has_no_video"


class TruncatedClipError(ClipError):
    """The video ends well before the duration its container states (an incomplete upload or a cut file)."""

    reason = "clip_truncated"


class BoxesError(WorkerError):
    """The motion boxes sent with the event are malformed."""

    reason = "bad_motion_boxes"
