"""Routes the cloud page needs beyond the core API: timeline cards with thumbnails, and credits used per day."""

from __future__ import annotations

from cloud.api.services.page import PageQueries
from cloud.api.services.timeline import TimelineFilter
from cloud.api.web import page_models as pm
from cloud.api.web.registry import Call, Route


def queries(call: Call) -> PageQueries:
    # Stateless over the shared context: made per call rather than added to the composition root's Services.
    return PageQueries(call.services.ctx, call.services.timeline)


async def page_events(call: Call) -> pm.PageEventList:
    q: pm.PageEventQuery = call.query
    f = TimelineFilter(hub_id=q.hub_id, camera_id=q.camera_id, label=q.label, state=q.state, since=q.since,
                       until=q.until, cursor=q.cursor, limit=q.limit)
    cards, cursor = await queries(call).timeline(call.user, f)
    return pm.PageEventList(events=[pm.PageEvent.of(c) for c in cards], next_cursor=cursor)


async def account_usage(call: Call) -> pm.Usage:
    q: pm.UsageQuery = call.query
    return pm.Usage.of(await queries(call).usage(call.user, q.days))


V1 = "/api/v1"

ROUTES: list[Route] = [
    Route("GET", f"{V1}/page/events", page_events, "The timeline as the page shows it: cards with thumbnails",
          "page", auth="user", query=pm.PageEventQuery, response=pm.PageEventList),
    Route("GET", f"{V1}/account/usage", account_usage, "Credits used per day (UTC) and this month's balance",
          "page", auth="user", query=pm.UsageQuery, response=pm.Usage),
]
