"""Domain errors raised by the services. They say what went wrong in the domain's words; only the web edge
(cloud/api/web/middleware.py) turns them into HTTP status codes.

Each carries a message (``error``), an optional ``hint`` (what to do about it), a stable machine-readable
``reason`` the hub shows and acts on, and for limits ``retry_after_s``.
"""

from __future__ import annotations


class DomainError(Exception):
    reason: str = "error"

    def __init__(self, error: str, hint: str | None = None, reason: str | None = None,
                 retry_after_s: float | None = None) -> None:
        super().__init__(error)
        self.error = error
        self.hint = hint
        if reason is not None:
            self.reason = reason
        self.retry_after_s = retry_after_s


class InvalidInput(DomainError):
    """The request's content is wrong (malformed, out of range, unsupported)."""

    reason = "invalid_input"


class Unauthenticated(DomainError):
    """No credential, or an unknown, expired or revoked one."""

    reason = "unauthenticated"


class NotFound(DomainError):
    """No such thing for this caller. Another tenant's ids land here too: existence is never revealed."""

    reason = "not_found"


class Conflict(DomainError):
    """The thing is not in a state that allows this (a used link code, an event past uploading)."""

    reason = "conflict"


class Gone(DomainError):
    """It existed but no longer can be used (an expired link code)."""

    reason = "gone"


class TooLarge(DomainError):
    """Over the plan's clip size or length."""

    reason = "too_large"


class RateLimited(DomainError):
    """Too many of something per unit of time: log-ins, uploads per hour. Carries retry_after_s."""

    reason = "rate_limited"


class OutOfCredits(DomainError):
    """The account's balance cannot cover this event. Carries retry_after_s (the next monthly grant)."""

    reason = "no_credits"


class UploadNotReady(DomainError):
    """finalize before the clip's blob is complete: upload (again) and retry."""

    reason = "blob_missing"


class UploadCorrupt(DomainError):
    """The stored bytes are not what the hub declared (size or MD5): the blob was deleted, upload again."""

    reason = "corrupt"


class EventRejected(DomainError):
    """The clip can never be accepted (not a video, its real length over the plan or far from the declared)."""

    reason = "rejected"


class Unavailable(DomainError):
    """A service this call needs (storage) is down; nothing was changed, retry later."""

    reason = "unavailable"
