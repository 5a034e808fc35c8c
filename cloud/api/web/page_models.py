"""Bodies of the cloud page's own routes (routes_page.py) and of the live channel's messages (live.py): one model
per card, so the timeline route and the WebSocket push the same shape and the OpenAPI document lists it."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from cloud.api.models import EventQuery, EventState
from cloud.api.services import page


class PageEventQuery(EventQuery):
    """The same filters and cursor as GET /api/v1/events."""


class UsageQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    days: int = Field(default=30, ge=1, le=page.MAX_USAGE_DAYS, description="Days back, today included (UTC).")


class PageEvent(BaseModel):
    id: str
    hub_id: str
    camera_id: str
    camera_name: str
    hub_event_id: str
    state: EventState
    started_at: datetime
    duration_s: float
    trigger: str
    labels: list[str]
    summary: str | None = Field(default=None, description="The worker's one-sentence summary, once done.")
    reason: str | None = None
    thumbnail_url: str | None = Field(
        default=None, description="Short read SAS: the worker's snapshot when done, else the hub's start snapshot.")

    @classmethod
    def of(cls, c: page.EventCard) -> PageEvent:
        return cls(id=c.id, hub_id=c.hub_id, camera_id=c.camera_id, camera_name=c.camera_name,
                   hub_event_id=c.hub_event_id, state=c.state, started_at=c.started_at,  # type: ignore[arg-type]
                   duration_s=c.duration_s, trigger=c.trigger, labels=c.labels, summary=c.summary, reason=c.reason,
                   thumbnail_url=c.thumbnail_url)


class PageEventList(BaseModel):
    events: list[PageEvent]
    next_cursor: str | None = None


class UsageDay(BaseModel):
    day: str = Field(..., description="YYYY-MM-DD (UTC).")
    used: int = Field(..., description="Charged minus refunded that day.")
    charged: int
    refunded: int


class Usage(BaseModel):
    plan: str
    monthly_credits: int
    period: str = Field(..., description="This month (UTC, YYYY-MM): granted, used and left are for it.")
    granted: int
    used: int
    left: int
    days: list[UsageDay] = Field(..., description="Oldest first, one per day, days without use included.")

    @classmethod
    def of(cls, u: page.Usage) -> Usage:
        return cls(plan=u.plan, monthly_credits=u.monthly_credits, period=u.period, granted=u.granted, used=u.used,
                   left=u.left, days=[UsageDay(day=d.day, used=d.used, charged=d.charged, refunded=d.refunded)
                                      for d in u.days])


# -- the live channel's messages (server → page) ---------------------------------------------------------------


class EventStarted(BaseModel):
    id: str = Field(..., description="The event start's id (not the event's: its clip may not exist yet).")
    hub_id: str
    camera_id: str
    camera_name: str
    hub_event_id: str
    started_at: datetime
    trigger: str
    late: bool
    thumbnail_url: str | None = None

    @classmethod
    def of(cls, c: page.StartCard) -> EventStarted:
        return cls(id=c.id, hub_id=c.hub_id, camera_id=c.camera_id, camera_name=c.camera_name,
                   hub_event_id=c.hub_event_id, started_at=c.started_at, trigger=c.trigger, late=c.late,
                   thumbnail_url=c.thumbnail_url)


class LiveCamera(BaseModel):
    id: str
    name: str
    online: bool | None


class LiveHub(BaseModel):
    id: str
    name: str
    armed: bool | None
    disarmed_until: datetime | None
    state_at: datetime | None
    cameras: list[LiveCamera]

    @classmethod
    def of(cls, h: page.HubState) -> LiveHub:
        return cls(id=h.id, name=h.name, armed=h.armed, disarmed_until=h.disarmed_until, state_at=h.state_at,
                   cameras=[LiveCamera(id=c.id, name=c.name, online=c.online) for c in h.cameras])


class LiveCommand(BaseModel):
    id: str
    hub_id: str
    kind: str
    ok: bool | None
    message: str | None
    origin: str | None
    snapshot_url: str | None = None

    @classmethod
    def of(cls, c: page.CommandCard) -> LiveCommand:
        return cls(id=c.id, hub_id=c.hub_id, kind=c.kind, ok=c.ok, message=c.message, origin=c.origin,
                   snapshot_url=c.snapshot_url)


class LiveHello(BaseModel):
    type: Literal["hello"] = "hello"
    account_id: str
    cursor: int = Field(..., description="Changes up to here are in what the page reads now; send it back as "
                                         "'after' when reconnecting.")


class LiveEventMsg(BaseModel):
    type: Literal["event"] = "event"
    cursor: int
    event: PageEvent


class LiveStartedMsg(BaseModel):
    type: Literal["event_started"] = "event_started"
    cursor: int
    event_start: EventStarted


class LiveHubMsg(BaseModel):
    type: Literal["hub"] = "hub"
    cursor: int
    hub: LiveHub


class LiveCommandMsg(BaseModel):
    type: Literal["command"] = "command"
    cursor: int
    command: LiveCommand
