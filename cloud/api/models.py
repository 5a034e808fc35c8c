"""The API's request and response bodies (pydantic v2). They validate every request, serialise every answer
and are the only source of the OpenAPI document (cloud/api/web/openapi.py), so the two cannot drift.

Every free-text field is `Text`: no NUL and no control characters (PostgreSQL refuses NUL in text, and a
control character in a name is never intended). Invalid UTF-8 and lone surrogates never get this far: pydantic's
JSON parser refuses them, as it refuses nesting deeper than its recursion limit.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, model_validator

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\ud800-\udfff]")


def _clean(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters, NUL or lone surrogates")
    return value


def _one_line(value: str) -> str:
    _clean(value)
    if "\n" in value or "\t" in value:
        raise ValueError("must be a single line")
    return value.strip()


Text = Annotated[str, AfterValidator(_clean)]
Line = Annotated[str, AfterValidator(_one_line)]
Name = Annotated[Line, Field(min_length=1, max_length=100)]
_EMAIL_PART = r"[^@\s\x00-\x1f\x7f]+"
Email = Annotated[
    str, Field(min_length=3, max_length=254, pattern=rf"^{_EMAIL_PART}@{_EMAIL_PART}\.{_EMAIL_PART}$"),
    AfterValidator(lambda v: _clean(v).lower()),
]
Password = Annotated[Text, Field(min_length=1, max_length=1024)]
HubCameraId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$", description="The hub's camera id.")]
HubEventId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$", description="The hub's event id.")]
Uuid = Annotated[str, Field(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")]
Md5B64 = Annotated[str, Field(pattern=r"^[A-Za-z0-9+/]{22}==$", description="Base64 of the file's 16-byte MD5.")]
_EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
_LATEST = datetime(2100, 1, 1, tzinfo=UTC)


def _plausible(value: datetime) -> datetime:
    # Stored as epoch seconds and read back as UTC datetimes: year 1 at +14:00 would be stored and then break
    # every read of its row. Nothing a hub or a person sends is before 2000 or after 2100.
    if not _EARLIEST <= value <= _LATEST:
        raise ValueError("a time between 2000 and 2100 (UTC)")
    return value


Moment = Annotated[AwareDatetime, AfterValidator(_plausible)]
Mime = Literal["video/mp4", "video/webm"]
EventState = Literal["uploading", "queued", "processing", "done", "failed", "rejected"]


class _In(BaseModel):
    # A misspelt field must not be silently ignored (the client believes it set something).
    model_config = ConfigDict(extra="forbid")


class _Out(BaseModel):
    pass


# -- errors and health ---------------------------------------------------------------------------------------


class ErrorBody(_Out):
    error: str = Field(..., description="What went wrong.")
    hint: str | None = Field(default=None, description="What to do about it.")
    reason: str = Field(..., description="Stable machine-readable reason (the hub acts on it).")
    retry_after_s: int | None = Field(default=None, description="Also in the Retry-After header when present.")


class Health(_Out):
    status: Literal["ok", "degraded"]
    db: Literal["ok", "error"]
    version: str


# -- accounts ------------------------------------------------------------------------------------------------


class LoginRequest(_In):
    email: Email
    password: Password


class LoginResponse(_Out):
    token: str = Field(..., description="Bearer token for the Authorization header.")
    expires_at: datetime
    account_id: str


class PlanLimits(_Out):
    name: str
    monthly_credits: int
    max_uploads_per_hour: int
    max_clip_s: float
    max_size_bytes: int
    retention_days: float


class Credits(_Out):
    period: str = Field(..., description="The month (UTC, YYYY-MM) the numbers are for.")
    granted: int
    used: int = Field(..., description="Charged minus refunded this month.")
    left: int
    seconds_per_credit: int = 10


class Account(_Out):
    id: str
    email: str
    plan: PlanLimits
    credits: Credits


# -- hubs, cameras, prompts ----------------------------------------------------------------------------------


class HubLinkStart(_In):
    hub_name: Name | None = Field(default=None, description="A name the hub suggests (its host name).")


class HubLinkCode(_Out):
    code: str = Field(..., description="Show this to the user, who enters it in the account.")
    expires_at: datetime
    poll_token: str = Field(..., description="Secret for polling; never shown to the user.")
    poll_interval_s: float


class HubLinkPoll(_In):
    poll_token: Annotated[Line, Field(min_length=1, max_length=200)]


class HubLinkStatus(_Out):
    status: Literal["pending", "linked"]
    hub_id: str | None = None
    hub_name: str | None = None
    hub_token: str | None = Field(default=None, description="Given exactly once, with status 'linked'.")


class LinkHub(_In):
    code: Annotated[Line, Field(min_length=1, max_length=32)]
    name: Name


class Prompt(_Out):
    scope: Literal["hub", "camera"]
    prompt: str
    enabled: bool
    updated_at: datetime


class PromptUpdate(_In):
    prompt: Annotated[Text, Field(min_length=1, max_length=2000)] = Field(
       default= ..., description='What to watch for, e.g. "alert me if a person comes to the door at night".'
    )
    enabled: bool = True


class Camera(_Out):
    id: str
    hub_id: str
    hub_camera_id: str
    name: str
    removed: bool
    prompt: Prompt | None = None
    online: bool | None = Field(default=None, description="As the hub last reported it; null: never reported.")
    online_at: datetime | None = None


class Hub(_Out):
    id: str
    name: str
    created_at: datetime
    linked: bool = Field(..., description="The hub has claimed its token and has not been unlinked.")
    last_seen_at: datetime | None
    prompt: Prompt | None = None
    cameras: list[Camera]
    online: bool = Field(default=False, description="The hub called the API in the last few minutes.")
    armed: bool | None = Field(default=None, description="As the hub last reported it; null: never reported.")
    disarmed_until: datetime | None = Field(default=None, description="When a timed disarm ends.")
    state_at: datetime | None = Field(default=None, description="When the hub last reported its state.")


class HubList(_Out):
    hubs: list[Hub]


class CameraList(_Out):
    cameras: list[Camera]


class CameraIn(_In):
    id: HubCameraId
    name: Name


class CamerasPut(_In):
    cameras: list[CameraIn] = Field(..., max_length=64, description="Every camera the hub has now.")

    @model_validator(mode="after")
    def _unique(self) -> CamerasPut:
        ids = [c.id for c in self.cameras]
        if len(ids) != len(set(ids)):
            raise ValueError("camera ids must be unique")
        return self


class HubSelf(_Out):
    hub_id: str
    name: str
    plan: PlanLimits
    credits: Credits
    cameras: list[Camera]


# -- events --------------------------------------------------------------------------------------------------


class EventInitiate(_In):
    event_id: HubEventId
    camera_id: HubCameraId
    started_at: Moment
    ended_at: Moment
    trigger: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")] = Field(..., description="motion, sound, ...")
    mime: Mime
    size: int = Field(..., ge=1, le=2**40)
    md5: Md5B64
    duration_s: float = Field(..., gt=0, le=86400)
    motion: dict[str, Any] | None = Field(
        default=None, description="The hub's boxes/motion summary (kept for the worker)."
    )

    @model_validator(mode="after")
    def _times(self) -> EventInitiate:
        if self.ended_at < self.started_at:
            raise ValueError("ended_at is before started_at")
        return self


class EventUpload(_Out):
    id: str
    state: EventState
    blob: str
    upload_url: str | None = Field(default=None, description="SAS for this one blob (create+write), while uploading.")
    upload_url_expires_at: datetime | None = None
    created: bool = Field(..., description="False when this answers a retry for an event that already existed.")


class EventHubView(_Out):
    id: str
    hub_event_id: str
    state: EventState
    credits: int | None
    duration_s: float | None = Field(default=None, description="As read from the clip's container.")
    reason: str | None


class Event(_Out):
    id: str
    hub_id: str
    camera_id: str
    hub_event_id: str
    state: EventState
    started_at: datetime
    ended_at: datetime
    trigger: str
    mime: str
    size_bytes: int
    duration_s: float = Field(..., description="Read from the container once finalized; declared before.")
    credits: int | None
    labels: list[str]
    summary: dict[str, Any] | None
    reason: str | None
    created_at: datetime


class EventDetail(Event):
    clip_url: str | None = Field(default=None, description="Read-only SAS for playback (short-lived).")
    snapshot_url: str | None = None
    urls_expire_at: datetime | None = None
    motion: dict[str, Any] | None = None


class EventPage(_Out):
    events: list[Event]
    next_cursor: str | None = Field(default=None, description="Pass as ?cursor= for the next (older) page.")


class EventQuery(_In):
    hub_id: Uuid | None = None
    camera_id: Uuid | None = None
    label: Annotated[str, Field(pattern=r"^[A-Za-z0-9 _-]{1,64}$")] | None = None
    state: EventState | None = None
    since: Moment | None = Field(default=None, description="Events that started at or after this time.")
    until: Moment | None = Field(default=None, description="Events that started before this time.")
    cursor: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,200}$")] | None = None
    limit: int = Field(default=50, ge=1, le=200)


class CameraQuery(_In):
    hub_id: Uuid | None = None


# -- the hub channel: event starts, state, commands ----------------------------------------------------------

SNAPSHOT_MAX_BYTES = 1024 * 1024
_B64_SNAPSHOT_MAX = (SNAPSHOT_MAX_BYTES + 2) // 3 * 4
SnapshotB64 = Annotated[str, Field(max_length=_B64_SNAPSHOT_MAX, pattern=r"^[A-Za-z0-9+/]*={0,2}$",
                                   description="Base64 of a JPEG (1 MB at most).")]
CommandKind = Literal["arm", "disarm", "snapshot"]
CommandState = Literal["pending", "delivered", "done", "expired"]


class EventStartReport(_In):
    event_id: HubEventId
    camera_id: HubCameraId
    started_at: Moment
    trigger: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")] = Field(..., description="motion, sound, ...")
    snapshot_jpeg: SnapshotB64 | None = Field(default=None, description="The camera's frame at the trigger.")


class EventStart(_Out):
    id: str
    hub_event_id: str
    late: bool = Field(..., description="Reported long after it started (the hub was offline).")
    snapshot: bool = Field(..., description="A snapshot is stored for it.")


class CameraStateIn(_In):
    id: HubCameraId
    online: bool


class HubStatePut(_In):
    armed: bool
    disarmed_until: Moment | None = None
    cameras: list[CameraStateIn] = Field(default_factory=list, max_length=64)


class CommandsQuery(_In):
    wait_s: float = Field(default=0, ge=0, le=25, description="Wait this long for a command when none is pending.")


class CommandArgs(_In):
    for_s: int | None = Field(default=None, ge=60, le=7 * 86400, description="disarm: how long (null: until armed).")
    camera_id: HubCameraId | None = Field(default=None, description="snapshot: the hub's camera id (null: all).")


class HubCommand(_Out):
    id: str
    kind: CommandKind
    args: dict[str, Any]
    created_at: datetime
    expires_at: datetime


class HubCommandList(_Out):
    commands: list[HubCommand]


class CommandResultIn(_In):
    ok: bool
    message: Annotated[str, Field(max_length=300)] = ""
    snapshot_jpeg: SnapshotB64 | None = None
    camera_id: HubCameraId | None = None


class CommandCreate(_In):
    kind: CommandKind
    args: CommandArgs = Field(default_factory=CommandArgs)


class CommandStatus(_Out):
    id: str
    hub_id: str
    kind: CommandKind
    args: dict[str, Any]
    state: CommandState
    ok: bool | None
    message: str | None
    created_at: datetime
    done_at: datetime | None
