"""Every route of the API: thin handlers that turn validated models into service calls and service results into
response models. The ROUTES list is the registry the app and the OpenAPI document are built from."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from cloud import __version__
from cloud.api import models as m
from cloud.api.services.accounts import AccountView
from cloud.api.services.commands import CommandView, HubCommands
from cloud.api.services.credits import Balance
from cloud.api.services.events import InitiateRequest, UploadTicket
from cloud.api.services.hubs import POLL_INTERVAL_S, CameraView, HubView, PromptView
from cloud.api.services.starts import EventStarts, StartReport
from cloud.api.services.timeline import EventView, TimelineFilter
from cloud.api.web.registry import Call, Route
from cloud.config import CloudConfig

# -- conversions ---------------------------------------------------------------------------------------------


def _plan(config: CloudConfig, name: str) -> m.PlanLimits:
    effective = name if name in config.plans else config.default_plan
    p = config.plans[effective]
    return m.PlanLimits(name=effective, monthly_credits=p.monthly_credits,
                        max_uploads_per_hour=p.max_uploads_per_hour, max_clip_s=p.max_clip_s,
                        max_size_bytes=p.max_size_bytes, retention_days=p.retention_days)


def _credits(b: Balance) -> m.Credits:
    return m.Credits(period=b.period, granted=b.granted, used=b.used, left=b.left)


def _prompt(p: PromptView | None) -> m.Prompt | None:
    return None if p is None else m.Prompt(scope=p.scope, prompt=p.prompt, enabled=p.enabled,  # type: ignore[arg-type]
                                           updated_at=p.updated_at)


def _camera(c: CameraView) -> m.Camera:
    return m.Camera(id=c.id, hub_id=c.hub_id, hub_camera_id=c.hub_camera_id, name=c.name, removed=c.removed,
                    prompt=_prompt(c.prompt), online=c.online, online_at=c.online_at)


def _hub(h: HubView) -> m.Hub:
    return m.Hub(id=h.id, name=h.name, created_at=h.created_at, linked=h.linked, last_seen_at=h.last_seen_at,
                 prompt=_prompt(h.prompt), cameras=[_camera(c) for c in h.cameras], online=h.online, armed=h.armed,
                 disarmed_until=h.disarmed_until, state_at=h.state_at)


def _command_status(c: CommandView) -> m.CommandStatus:
    return m.CommandStatus(id=c.id, hub_id=c.hub_id, kind=c.kind, args=c.args, state=c.state,  # type: ignore[arg-type]
                           ok=c.ok, message=c.message, created_at=c.created_at, done_at=c.done_at)


def _upload(t: UploadTicket) -> m.EventUpload:
    return m.EventUpload(id=t.id, state=t.state, blob=t.blob, upload_url=t.upload_url,  # type: ignore[arg-type]
                         upload_url_expires_at=t.upload_url_expires_at, created=t.created)


def _hub_view(row: Any) -> m.EventHubView:
    return m.EventHubView(id=row.id, hub_event_id=row.hub_event_id, state=row.state, credits=row.credits,
                          duration_s=row.probed_duration_s, reason=row.reason)


def _event_fields(v: EventView) -> dict[str, Any]:
    r = v.row
    return {"id": r.id, "hub_id": r.hub_id, "camera_id": r.camera_id, "hub_event_id": r.hub_event_id,
            "state": r.state, "started_at": r.started_at, "ended_at": r.ended_at, "trigger": r.trigger,
            "mime": r.mime, "size_bytes": r.size_bytes, "duration_s": v.duration_s, "credits": r.credits,
            "labels": v.labels, "summary": r.summary, "reason": r.reason, "created_at": r.created_at}


# -- public --------------------------------------------------------------------------------------------------


async def health(call: Call) -> m.Health:
    ok = await call.services.ctx.db.ping()
    return m.Health(status="ok" if ok else "degraded", db="ok" if ok else "error", version=__version__)


async def openapi_document(call: Call) -> web.StreamResponse:
    return web.json_response(call.services.openapi)


# -- accounts ------------------------------------------------------------------------------------------------


async def login(call: Call) -> m.LoginResponse:
    body: m.LoginRequest = call.body
    r = await call.services.accounts.login(body.email, body.password, call.client_address())
    return m.LoginResponse(token=r.token, expires_at=r.expires_at, account_id=r.account_id)


async def logout(call: Call) -> None:
    await call.services.accounts.logout(call.user)


async def get_account(call: Call) -> m.Account:
    v: AccountView = await call.services.accounts.view(call.user)
    return m.Account(id=v.id, email=v.email, plan=_plan(call.services.ctx.config, v.plan), credits=_credits(v.balance))


# -- hubs ----------------------------------------------------------------------------------------------------


async def start_hub_link(call: Call) -> m.HubLinkCode:
    body: m.HubLinkStart = call.body
    code = await call.services.hubs.start_link(body.hub_name, call.client_address())
    return m.HubLinkCode(code=code.code, expires_at=code.expires_at, poll_token=code.poll_token,
                         poll_interval_s=POLL_INTERVAL_S)


async def poll_hub_link(call: Call) -> m.HubLinkStatus:
    body: m.HubLinkPoll = call.body
    s = await call.services.hubs.poll_link(body.poll_token)
    return m.HubLinkStatus(status="linked" if s.linked else "pending", hub_id=s.hub_id, hub_name=s.hub_name,
                           hub_token=s.hub_token)


async def link_hub(call: Call) -> m.Hub:
    body: m.LinkHub = call.body
    return _hub(await call.services.hubs.link(call.user, body.code, body.name))


async def list_hubs(call: Call) -> m.HubList:
    return m.HubList(hubs=[_hub(h) for h in await call.services.hubs.list_hubs(call.user)])


async def unlink_hub(call: Call) -> None:
    await call.services.hubs.unlink(call.user, call.params["hub_id"])


async def set_hub_prompt(call: Call) -> m.Prompt:
    body: m.PromptUpdate = call.body
    p = await call.services.hubs.set_hub_prompt(call.user, call.params["hub_id"], body.prompt, body.enabled)
    return _prompt(p)  # type: ignore[return-value]


async def list_cameras(call: Call) -> m.CameraList:
    q: m.CameraQuery = call.query
    return m.CameraList(cameras=[_camera(c) for c in await call.services.hubs.list_cameras(call.user, q.hub_id)])


async def set_camera_prompt(call: Call) -> m.Prompt:
    body: m.PromptUpdate = call.body
    p = await call.services.hubs.set_camera_prompt(call.user, call.params["camera_id"], body.prompt, body.enabled)
    return _prompt(p)  # type: ignore[return-value]


# -- the hub's own routes ------------------------------------------------------------------------------------


async def hub_self(call: Call) -> m.HubSelf:
    hub = call.hub
    balance = await call.services.hub_balance(hub)
    cams = await call.services.hubs.hub_cameras(hub)
    return m.HubSelf(hub_id=hub.hub_id, name=hub.name, plan=_plan(call.services.ctx.config, hub.plan),
                     credits=_credits(balance), cameras=[_camera(c) for c in cams])


async def put_hub_cameras(call: Call) -> m.CameraList:
    body: m.CamerasPut = call.body
    cams = await call.services.hubs.put_cameras(call.hub, [(c.id, c.name) for c in body.cameras])
    return m.CameraList(cameras=[_camera(c) for c in cams])


async def initiate_event(call: Call) -> m.EventUpload:
    b: m.EventInitiate = call.body
    req = InitiateRequest(hub_event_id=b.event_id, hub_camera_id=b.camera_id, started_at=b.started_at,
                          ended_at=b.ended_at, trigger=b.trigger, mime=b.mime, size=b.size, md5=b.md5,
                          duration_s=b.duration_s, motion=b.motion)
    return _upload(await call.services.events.initiate(call.hub_claim, req))


async def renew_upload_url(call: Call) -> m.EventUpload:
    return _upload(await call.services.events.upload_url(call.hub, call.params["event_id"]))


async def finalize_event(call: Call) -> m.EventHubView:
    return _hub_view(await call.services.events.finalize(call.hub_claim, call.params["event_id"]))


async def report_event_start(call: Call) -> m.EventStart:
    b: m.EventStartReport = call.body
    v = await EventStarts(call.services.ctx, snapshot_max_bytes=m.SNAPSHOT_MAX_BYTES).report(call.hub, StartReport(
        hub_event_id=b.event_id, hub_camera_id=b.camera_id, started_at=b.started_at, trigger=b.trigger,
        snapshot_b64=b.snapshot_jpeg))
    return m.EventStart(id=v.id, hub_event_id=v.hub_event_id, late=v.late, snapshot=v.snapshot)


async def put_hub_state(call: Call) -> None:
    b: m.HubStatePut = call.body
    await call.services.hubs.put_state(call.hub, b.armed, b.disarmed_until, [(c.id, c.online) for c in b.cameras])


async def take_hub_commands(call: Call) -> m.HubCommandList:
    q: m.CommandsQuery = call.query
    taken = await HubCommands(call.services.ctx).take(call.hub, q.wait_s)
    return m.HubCommandList(commands=[
        m.HubCommand(id=c.id, kind=c.kind, args=c.args, created_at=c.created_at,  # type: ignore[arg-type]
                     expires_at=c.expires_at) for c in taken])


async def hub_command_result(call: Call) -> None:
    b: m.CommandResultIn = call.body
    await HubCommands(call.services.ctx).result(call.hub, call.params["command_id"], b.ok, b.message,
                                                b.snapshot_jpeg, b.camera_id)


# -- the user's commands to a hub ----------------------------------------------------------------------------


async def create_hub_command(call: Call) -> m.CommandStatus:
    b: m.CommandCreate = call.body
    commands = HubCommands(call.services.ctx)
    args = b.args.model_dump(exclude_none=True)
    command_id = await commands.create(call.user.account_id, call.params["hub_id"], b.kind, args, origin="api")
    return _command_status(await commands.get(call.user.account_id, command_id))


async def get_hub_command(call: Call) -> m.CommandStatus:
    return _command_status(await HubCommands(call.services.ctx).get(
        call.user.account_id, call.params["command_id"], hub_id=call.params["hub_id"]))


# -- the user's timeline -------------------------------------------------------------------------------------


async def list_events(call: Call) -> m.EventPage:
    q: m.EventQuery = call.query
    f = TimelineFilter(hub_id=q.hub_id, camera_id=q.camera_id, label=q.label, state=q.state, since=q.since,
                       until=q.until, cursor=q.cursor, limit=q.limit)
    views, cursor = await call.services.timeline.page(call.user, f)
    return m.EventPage(events=[m.Event(**_event_fields(v)) for v in views], next_cursor=cursor)


async def get_event(call: Call) -> m.EventDetail:
    v = await call.services.timeline.detail(call.user, call.params["event_id"])
    return m.EventDetail(**_event_fields(v), clip_url=v.clip_url, snapshot_url=v.snapshot_url,
                         urls_expire_at=v.urls_expire_at, motion=v.row.motion)


V1 = "/api/v1"

ROUTES: list[Route] = [
    Route("GET", "/api/health", health, "Liveness and database check", "meta", response=m.Health),
    Route("GET", "/api/openapi.json", openapi_document, "This document", "meta"),
    # accounts
    Route("POST", f"{V1}/auth/login", login, "Log in; returns a bearer token", "accounts",
          body=m.LoginRequest, response=m.LoginResponse, errors=(401, 429)),
    Route("POST", f"{V1}/auth/logout", logout, "Revoke this token", "accounts", auth="user", status=204),
    Route("GET", f"{V1}/account", get_account, "The account: plan, credits used and left", "accounts",
          auth="user", response=m.Account),
    # linking
    Route("POST", f"{V1}/hub-links", start_hub_link, "A hub asks for a link code (no auth)", "hubs",
          body=m.HubLinkStart, response=m.HubLinkCode, status=201, errors=(429,)),
    Route("POST", f"{V1}/hub-links/claim", poll_hub_link, "The hub polls; gets its hub token once linked", "hubs",
          body=m.HubLinkPoll, response=m.HubLinkStatus, errors=(404, 410)),
    Route("POST", f"{V1}/hubs/link", link_hub, "Link a hub to this account with the code it shows", "hubs",
          auth="user", body=m.LinkHub, response=m.Hub, status=201, errors=(404,)),
    Route("GET", f"{V1}/hubs", list_hubs, "The account's hubs and their cameras", "hubs", auth="user",
          response=m.HubList),
    Route("DELETE", f"{V1}/hubs/{{hub_id}}", unlink_hub, "Unlink a hub (its token stops working)", "hubs",
          auth="user", status=204),
    Route("PUT", f"{V1}/hubs/{{hub_id}}/prompt", set_hub_prompt, "The analysis prompt for a whole hub", "hubs",
          auth="user", body=m.PromptUpdate, response=m.Prompt),
    Route("GET", f"{V1}/cameras", list_cameras, "The account's cameras", "hubs", auth="user",
          query=m.CameraQuery, response=m.CameraList),
    Route("PUT", f"{V1}/cameras/{{camera_id}}/prompt", set_camera_prompt, "The analysis prompt for a camera",
          "hubs", auth="user", body=m.PromptUpdate, response=m.Prompt),
    # the hub's own
    Route("GET", f"{V1}/hub", hub_self, "The calling hub: plan limits, credits, cameras", "hub", auth="hub",
          response=m.HubSelf),
    Route("PUT", f"{V1}/hub/cameras", put_hub_cameras, "Mirror the hub's cameras (all of them)", "hub",
          auth="hub", body=m.CamerasPut, response=m.CameraList),
    Route("POST", f"{V1}/events", initiate_event, "Start an event upload: returns a SAS for its clip", "hub",
          auth="hub_claim", body=m.EventInitiate, response=m.EventUpload, status=201,
          errors=(402, 404, 409, 429, 503)),
    Route("POST", f"{V1}/events/{{event_id}}/upload-url", renew_upload_url, "A fresh upload SAS", "hub",
          auth="hub", response=m.EventUpload, errors=(409, 503)),
    Route("POST", f"{V1}/events/{{event_id}}/finalize", finalize_event,
          "The clip is uploaded: verify, charge, enqueue", "hub", auth="hub_claim", response=m.EventHubView,
          errors=(402, 409, 422, 503)),
    Route("POST", f"{V1}/hub/event-starts", report_event_start,
          "An event just started: its snapshot, for the first alert (before the clip exists)", "hub", auth="hub",
          body=m.EventStartReport, response=m.EventStart, status=201, errors=(404, 413, 503),
          max_body_bytes=1536 * 1024),
    Route("PUT", f"{V1}/hub/state", put_hub_state, "The hub's state: armed, cameras online (also a heartbeat)",
          "hub", auth="hub", body=m.HubStatePut, status=204),
    Route("GET", f"{V1}/hub/commands", take_hub_commands, "Commands for this hub (long poll with wait_s)", "hub",
          auth="hub", query=m.CommandsQuery, response=m.HubCommandList),
    Route("POST", f"{V1}/hub/commands/{{command_id}}/result", hub_command_result,
          "The result of a command (the first one counts)", "hub", auth="hub", body=m.CommandResultIn, status=204,
          errors=(404, 413, 503), max_body_bytes=1536 * 1024),
    # commands from the user
    Route("POST", f"{V1}/hubs/{{hub_id}}/commands", create_hub_command,
          "Ask the hub to arm, disarm or take a snapshot", "hubs", auth="user", body=m.CommandCreate,
          response=m.CommandStatus, status=201, errors=(404, 409)),
    Route("GET", f"{V1}/hubs/{{hub_id}}/commands/{{command_id}}", get_hub_command, "A command's state", "hubs",
          auth="user", response=m.CommandStatus, errors=(404,)),
    # the user's timeline
    Route("GET", f"{V1}/events", list_events, "The timeline, newest first", "events", auth="user",
          query=m.EventQuery, response=m.EventPage),
    Route("GET", f"{V1}/events/{{event_id}}", get_event, "One event with short-lived read URLs", "events",
          auth="user", response=m.EventDetail, errors=(503,)),
]
