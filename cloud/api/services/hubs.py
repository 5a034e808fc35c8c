"""Hubs: linking with a one-time code, hub tokens, unlinking, the mirrored cameras and monitoring prompts.

Linking, as a person sees it: the hub shows a code; the user types it into their account; the hub, which has
been polling with a secret poll token, receives a hub token once. The code alone is useless to a bystander (it
needs a logged-in account to be entered) and the poll token alone links nothing (it needs the code entered).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cloud.api import changes, errors
from cloud.api.after_answer import FollowUps
from cloud.api.context import Context
from cloud.api.db.engine import DatabaseClosed
from cloud.api.db.schema import accounts, cameras, hub_link_codes, hubs, monitoring
from cloud.api.db.util import insert_ignore
from cloud.api.principals import HubCaller, HubClaim, User
from cloud.api.security import (
    HUB_TOKEN_PREFIX,
    POLL_TOKEN_PREFIX,
    format_link_code,
    new_id,
    new_link_code,
    new_token,
    normalise_link_code,
    token_hash,
)
from cloud.api.services import ratelimit

log = logging.getLogger(__name__)

POLL_INTERVAL_S = 3.0
_TOUCH_EVERY = timedelta(seconds=60)  # a hub's last_seen_at is written at most this often
# A hub is shown online when it called within this window (it reports its state every minute).
ONLINE_WINDOW = timedelta(seconds=150)
# Hub tokens this process has looked up, kept for claims (least recently used dropped first): ~300 bytes each.
KNOWN_TOKENS_MAX = 20_000


@dataclass(frozen=True)
class LinkCode:
    code: str
    expires_at: datetime
    poll_token: str


@dataclass(frozen=True)
class LinkStatus:
    linked: bool
    hub_id: str | None = None
    hub_name: str | None = None
    hub_token: str | None = None


@dataclass(frozen=True)
class PromptView:
    scope: str
    prompt: str
    enabled: bool
    updated_at: datetime


@dataclass(frozen=True)
class CameraView:
    id: str
    hub_id: str
    hub_camera_id: str
    name: str
    removed: bool
    prompt: PromptView | None
    online: bool | None = None
    online_at: datetime | None = None


@dataclass
class HubView:
    id: str
    name: str
    created_at: datetime
    linked: bool
    last_seen_at: datetime | None
    prompt: PromptView | None
    cameras: list[CameraView] = field(default_factory=list)
    online: bool = False
    armed: bool | None = None
    disarmed_until: datetime | None = None
    state_at: datetime | None = None


def live_camera_query(hub_id: Any, hub_camera_id: Any) -> sa.Select[Any]:
    """The cloud id of one of the hub's live cameras by the hub's own id (no row: never mirrored, or removed)."""
    return sa.select(cameras.c.id).where(cameras.c.hub_id == hub_id, cameras.c.hub_camera_id == hub_camera_id,
                                         cameras.c.removed_at.is_(None))


def unknown_camera(hub_camera_id: str) -> errors.NotFound:
    return errors.NotFound(f"unknown camera '{hub_camera_id}'",
                           "the hub mirrors its cameras first (PUT /api/v1/hub/cameras)", reason="camera_unknown")


def live_camera_id(conn: Connection, hub_id: str, hub_camera_id: str) -> str:
    """The cloud id of one of the hub's cameras by the hub's own id; NotFound when it was never mirrored or is
    removed (the hub's event routes all start here)."""
    camera_id = conn.execute(live_camera_query(hub_id, hub_camera_id)).scalar()
    if camera_id is None:
        raise unknown_camera(hub_camera_id)
    return str(camera_id)


def _same_time(a: datetime | None, b: datetime | None) -> bool:
    """Equal up to the storage's float rounding (epoch seconds in a double keep about a microsecond)."""
    if a is None or b is None:
        return a is b
    return abs((a - b).total_seconds()) < 0.001


def _prompt(row: Any) -> PromptView | None:
    if row is None:
        return None
    return PromptView(scope=row.scope.split(":", 1)[0], prompt=row.prompt, enabled=row.enabled,
                      updated_at=row.updated_at)


def hub_token_refused() -> errors.Unauthenticated:
    return errors.Unauthenticated("unknown or revoked hub token", "link the hub again: pingwatch cloud link",
                                  reason="hub_unlinked")


def claim_holds(hub_id: Any, token_hash: Any, plan: Any) -> Any:
    """True (as a SQL expression) while a claim's token (``HubClaim.token_hash``) still names its hub, linked, in
    an enabled account on the same plan: what ``Hubs.authenticate``'s lookup checks, evaluated inside the caller's
    own statement. The arguments are values or bind parameters (for a statement built once)."""
    return sa.exists().where(hubs.c.id == hub_id, hubs.c.token_hash == token_hash,
                             hubs.c.unlinked_at.is_(None), accounts.c.id == hubs.c.account_id,
                             accounts.c.disabled_at.is_(None), accounts.c.plan == plan)


def claim_params(claim: HubClaim) -> dict[str, Any]:
    """The bind parameters of ``claim_holds(bindparam("hub_id"), bindparam("token_hash"), bindparam("plan"))``."""
    return {"hub_id": claim.caller.hub_id, "token_hash": claim.token_hash, "plan": claim.caller.plan}


@dataclass
class _KnownToken:
    caller: HubCaller
    seen_at: datetime | None  # the hub's last_seen_at as this process last read or wrote it


class Hubs:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._touches = FollowUps()
        self._known: OrderedDict[str, _KnownToken] = OrderedDict()

    # -- linking -----------------------------------------------------------------------------------------------

    async def start_link(self, hub_name: str | None, source: str) -> LinkCode:
        auth = self.ctx.config.auth
        now = self.ctx.clock()
        expires = now + timedelta(seconds=auth.link_code_ttl_s)
        poll = new_token(POLL_TOKEN_PREFIX)
        key = f"link:{source}"

        def work(conn: Connection) -> str:
            # Anyone may ask for a code (the hub has no credential yet), so requests are limited per address.
            wait = ratelimit.retry_after(conn, key, auth.link_requests_per_source, auth.login_window_s, now)
            if wait is not None:
                raise errors.RateLimited("too many link codes requested", "wait and try again",
                                         reason="link_rate_limited", retry_after_s=wait)
            ratelimit.record_failure(conn, [key], now)
            for _ in range(8):  # a collision with a live code is rare (31^8 codes); try another
                code = new_link_code()
                if insert_ignore(conn, hub_link_codes, {
                    "id": new_id(), "code_hash": token_hash(code), "poll_token_hash": token_hash(poll),
                    "hub_name": hub_name, "created_at": now, "expires_at": expires, "hub_id": None,
                    "claimed_at": None,
                }):
                    return code
            raise errors.Unavailable("could not allocate a link code", "try again")

        code = await self.ctx.db.tx(work)
        return LinkCode(code=format_link_code(code), expires_at=expires, poll_token=poll)

    async def link(self, user: User, code: str, name: str) -> HubView:
        """The user entered the hub's code: make the hub (in this account) and wait for the hub to claim it."""
        now = self.ctx.clock()
        hub_id = new_id()

        # The hub row must exist before the code row points at it (foreign key): insert it, then take the code
        # with a conditional update, so of two users racing for one code exactly one gets it.
        def work(conn: Connection) -> None:
            conn.execute(sa.insert(hubs).values(
                id=hub_id, account_id=user.account_id, name=name, token_hash=None, created_at=now,
                claimed_at=None, unlinked_at=None, last_seen_at=None,
            ))
            res = conn.execute(
                sa.update(hub_link_codes)
                .where(hub_link_codes.c.code_hash == token_hash(normalise_link_code(code)),
                       hub_link_codes.c.expires_at > now, hub_link_codes.c.hub_id.is_(None))
                .values(hub_id=hub_id)
            )
            if res.rowcount != 1:  # raising rolls the hub row back: nothing written
                raise errors.NotFound("unknown or expired link code",
                                      "show a new code on the hub: pingwatch cloud link", reason="link_code_invalid")

        await self.ctx.db.tx(work)
        log.info("hub linked", extra={"hub_id": hub_id, "account_id": user.account_id})
        return HubView(id=hub_id, name=name, created_at=now, linked=False, last_seen_at=None, prompt=None)

    async def poll_link(self, poll_token: str) -> LinkStatus:
        """The hub's poll: pending until a user entered the code, then the hub token, exactly once."""
        now = self.ctx.clock()
        hub_token = new_token(HUB_TOKEN_PREFIX)

        def work(conn: Connection) -> LinkStatus:
            row = conn.execute(
                sa.select(hub_link_codes).where(hub_link_codes.c.poll_token_hash == token_hash(poll_token))
            ).first()
            if row is None:
                raise errors.NotFound("unknown link request", "start linking again: pingwatch cloud link",
                                      reason="link_unknown")
            if row.claimed_at is not None:
                raise errors.Gone("this link was completed already", "unlink and link the hub again if it lost "
                                  "its token", reason="link_claimed")
            if row.hub_id is None:
                if row.expires_at <= now:
                    raise errors.Gone("the link code expired before it was entered",
                                      "start linking again: pingwatch cloud link", reason="link_expired")
                return LinkStatus(linked=False)
            claimed = conn.execute(
                sa.update(hub_link_codes)
                .where(hub_link_codes.c.id == row.id, hub_link_codes.c.claimed_at.is_(None))
                .values(claimed_at=now)
            ).rowcount
            hub = conn.execute(
                sa.update(hubs)
                .where(hubs.c.id == row.hub_id, hubs.c.unlinked_at.is_(None), hubs.c.token_hash.is_(None))
                .values(token_hash=token_hash(hub_token), claimed_at=now, last_seen_at=now)
                .returning(hubs.c.name)
            ).first()
            if claimed != 1 or hub is None:
                raise errors.Gone("this link was completed or cancelled", "start linking again: pingwatch cloud link",
                                  reason="link_claimed")
            return LinkStatus(linked=True, hub_id=row.hub_id, hub_name=hub.name, hub_token=hub_token)

        return await self.ctx.db.tx(work)

    async def unlink(self, user: User, hub_id: str) -> None:
        now = self.ctx.clock()

        def work(conn: Connection) -> None:
            owned = conn.execute(
                sa.select(hubs.c.id).where(hubs.c.id == hub_id, hubs.c.account_id == user.account_id)
            ).first()
            if owned is None:
                raise errors.NotFound("no such hub", reason="hub_not_found")
            # Idempotent: unlinking an unlinked hub changes nothing. Its token stops working at once.
            conn.execute(sa.update(hubs).where(hubs.c.id == hub_id, hubs.c.unlinked_at.is_(None))
                         .values(unlinked_at=now, token_hash=None))

        await self.ctx.db.tx(work)
        log.info("hub unlinked", extra={"hub_id": hub_id, "account_id": user.account_id})

    async def authenticate(self, token: str) -> HubCaller:
        now = self.ctx.clock()
        hashed = token_hash(token)

        def work(conn: Connection) -> Any:
            return conn.execute(
                sa.select(hubs.c.id, hubs.c.account_id, hubs.c.name, hubs.c.last_seen_at, accounts.c.plan)
                .join(accounts, accounts.c.id == hubs.c.account_id)
                .where(hubs.c.token_hash == hashed, hubs.c.unlinked_at.is_(None),
                       accounts.c.disabled_at.is_(None))
            ).first()

        # Every hub request starts here: one lookup in autocommit (no BEGIN/COMMIT round trips).
        row = await self.ctx.db.read(work) if token.startswith(HUB_TOKEN_PREFIX) else None
        if row is None:
            self._known.pop(hashed, None)
            raise hub_token_refused()
        caller = HubCaller(hub_id=row.id, account_id=row.account_id, name=row.name, plan=row.plan)
        known = _KnownToken(caller, row.last_seen_at)
        self._remember(hashed, known)
        self._mark_seen(known, now)
        return caller

    async def claim(self, token: str, *, fresh: bool = False) -> HubClaim:
        """The hub a token names, for a call that checks it again in its own first statement (``claim_holds``):
        from what this process knows without a database round trip, else (or with ``fresh``) looked up as
        ``authenticate`` does (Unauthenticated when it is unknown or revoked). A claim that no longer holds
        raises StaleHubClaim in that statement, and the call is run again with a fresh claim."""
        hashed = token_hash(token)
        known = None if fresh else self._known.get(hashed)
        if known is None:
            return HubClaim(hashed, await self.authenticate(token), fresh=True)
        self._known.move_to_end(hashed)
        self._mark_seen(known, self.ctx.clock())
        return HubClaim(hashed, known.caller, fresh=False)

    def _remember(self, hashed: str, known: _KnownToken) -> None:
        self._known[hashed] = known
        self._known.move_to_end(hashed)
        while len(self._known) > KNOWN_TOKENS_MAX:
            self._known.popitem(last=False)

    def _mark_seen(self, known: _KnownToken, now: datetime) -> None:
        if known.seen_at is not None and now - known.seen_at <= _TOUCH_EVERY:
            return
        # Written after the answer: bookkeeping the hub need not wait for (it was an UPDATE round trip on the
        # request path of about one call in two at an event a minute). Lost only if the process dies first;
        # the hub's next call writes it.
        known.seen_at = now
        hub_id = known.caller.hub_id
        self._touches.start_after_answer(lambda: self._touch(hub_id, now), name=f"touch-{hub_id}")

    async def _touch(self, hub_id: str, now: datetime) -> None:
        try:
            # Never backwards: a slower touch of an earlier request must not undo a later one. Never an unlinked
            # hub: a claim (``claim``) starts its touch before its statement finds the token revoked.
            await self.ctx.db.read(lambda conn: conn.execute(
                sa.update(hubs).where(hubs.c.id == hub_id, hubs.c.unlinked_at.is_(None),
                                      sa.or_(hubs.c.last_seen_at.is_(None), hubs.c.last_seen_at < now))
                .values(last_seen_at=now)))
        except DatabaseClosed:
            pass  # stopping: the hub's next call (to whichever process) writes it
        except sa.exc.SQLAlchemyError:
            log.warning("could not record that the hub was seen", exc_info=True, extra={"hub_id": hub_id})

    async def settle(self, timeout_s: float = 10.0) -> None:
        """Wait for the last-seen writes started after answers (at shutdown; tests that read them)."""
        await self._touches.settle(timeout_s)

    # -- cameras -----------------------------------------------------------------------------------------------

    async def put_cameras(self, hub: HubCaller, items: list[tuple[str, str]]) -> list[CameraView]:
        """Mirror the hub's cameras: (hub camera id, name) for every camera it has now. Cameras it no longer
        lists are marked removed (their events stay); a camera that comes back is restored."""
        now = self.ctx.clock()

        def work(conn: Connection) -> None:
            existing = {r.hub_camera_id: r for r in conn.execute(
                sa.select(cameras.c.id, cameras.c.hub_camera_id, cameras.c.name, cameras.c.removed_at)
                .where(cameras.c.hub_id == hub.hub_id)
            )}
            wanted = dict(items)
            for cam_id, name in wanted.items():
                row = existing.get(cam_id)
                if row is None:
                    insert_ignore(conn, cameras, {
                        "id": new_id(), "account_id": hub.account_id, "hub_id": hub.hub_id, "hub_camera_id": cam_id,
                        "name": name, "created_at": now, "updated_at": now, "removed_at": None,
                    })
                elif row.name != name or row.removed_at is not None:
                    conn.execute(sa.update(cameras).where(cameras.c.id == row.id)
                                 .values(name=name, removed_at=None, updated_at=now))
            gone = [r.id for cid, r in existing.items() if cid not in wanted and r.removed_at is None]
            if gone:
                conn.execute(sa.update(cameras).where(cameras.c.id.in_(gone)).values(removed_at=now, updated_at=now))

        await self.ctx.db.tx(work)
        return await self.ctx.db.tx(lambda conn: self._cameras(conn, hub.account_id, hub.hub_id))

    def _cameras(self, conn: Connection, account_id: str, hub_id: str | None) -> list[CameraView]:
        q = (
            sa.select(cameras, monitoring.c.scope, monitoring.c.prompt, monitoring.c.enabled,
                      monitoring.c.updated_at.label("prompt_updated_at"))
            .outerjoin(monitoring, monitoring.c.camera_id == cameras.c.id)
            .where(cameras.c.account_id == account_id)
            .order_by(cameras.c.hub_id, cameras.c.hub_camera_id)
        )
        if hub_id is not None:
            q = q.where(cameras.c.hub_id == hub_id)
        out = []
        for r in conn.execute(q):
            prompt = None
            if r.scope is not None:
                prompt = PromptView("camera", r.prompt, r.enabled, r.prompt_updated_at)
            out.append(CameraView(id=r.id, hub_id=r.hub_id, hub_camera_id=r.hub_camera_id, name=r.name,
                                  removed=r.removed_at is not None, prompt=prompt, online=r.online,
                                  online_at=r.online_at))
        return out

    async def list_cameras(self, user: User, hub_id: str | None) -> list[CameraView]:
        return await self.ctx.db.tx(lambda conn: self._cameras(conn, user.account_id, hub_id))

    async def list_hubs(self, user: User) -> list[HubView]:
        now = self.ctx.clock()

        def work(conn: Connection) -> list[HubView]:
            rows = conn.execute(
                sa.select(hubs, monitoring.c.scope, monitoring.c.prompt, monitoring.c.enabled,
                          monitoring.c.updated_at.label("prompt_updated_at"))
                .outerjoin(monitoring, monitoring.c.scope == sa.literal("hub:") + hubs.c.id)
                .where(hubs.c.account_id == user.account_id)
                .order_by(hubs.c.created_at, hubs.c.id)
            ).all()
            cams = self._cameras(conn, user.account_id, None)
            views = []
            for r in rows:
                prompt = PromptView("hub", r.prompt, r.enabled, r.prompt_updated_at) if r.scope else None
                views.append(HubView(
                    id=r.id, name=r.name, created_at=r.created_at,
                    linked=r.token_hash is not None and r.unlinked_at is None, last_seen_at=r.last_seen_at,
                    prompt=prompt, cameras=[c for c in cams if c.hub_id == r.id],
                    online=r.last_seen_at is not None and now - r.last_seen_at <= ONLINE_WINDOW,
                    armed=r.armed, disarmed_until=r.disarmed_until, state_at=r.state_at,
                ))
            return views

        return await self.ctx.db.tx(work)

    async def put_state(self, hub: HubCaller, armed: bool, disarmed_until: datetime | None,
                        camera_states: list[tuple[str, bool]]) -> None:
        """What the hub reports of itself: armed or not, and which cameras are connected. Also its heartbeat
        (last_seen_at). A change that differs from the last report is recorded for the live page."""
        now = self.ctx.clock()

        def work(conn: Connection) -> None:
            before = conn.execute(sa.select(hubs.c.armed, hubs.c.disarmed_until)
                                  .where(hubs.c.id == hub.hub_id)).one()
            conn.execute(sa.update(hubs).where(hubs.c.id == hub.hub_id)
                         .values(armed=armed, disarmed_until=disarmed_until, state_at=now, last_seen_at=now))
            changed = before.armed != armed or not _same_time(before.disarmed_until, disarmed_until)
            known = {r.hub_camera_id: r for r in conn.execute(
                sa.select(cameras.c.id, cameras.c.hub_camera_id, cameras.c.online)
                .where(cameras.c.hub_id == hub.hub_id))}
            online: dict[str, bool] = {}
            for cam_id, is_online in camera_states:
                row = known.get(cam_id)
                if row is None:
                    continue  # not mirrored yet (PUT /hub/cameras comes first); the next report has it
                online[cam_id] = is_online
                if row.online != is_online:
                    changed = True
                    conn.execute(sa.update(cameras).where(cameras.c.id == row.id)
                                 .values(online=is_online, online_at=now))
            if changed:
                changes.record(conn, account_id=hub.account_id, kind=changes.HUB_STATE, at=now, subject_id=hub.hub_id,
                               data={"armed": armed,
                                     "disarmed_until": disarmed_until.isoformat() if disarmed_until else None,
                                     "cameras": online})

        await self.ctx.db.tx(work)

    async def hub_cameras(self, hub: HubCaller) -> list[CameraView]:
        return await self.ctx.db.tx(lambda conn: self._cameras(conn, hub.account_id, hub.hub_id))

    # -- monitoring prompts ------------------------------------------------------------------------------------

    async def set_camera_prompt(self, user: User, camera_id: str, prompt: str, enabled: bool) -> PromptView:
        def work(conn: Connection) -> tuple[str, str | None]:
            row = conn.execute(
                sa.select(cameras.c.hub_id).where(cameras.c.id == camera_id, cameras.c.account_id == user.account_id)
            ).first()
            if row is None:
                raise errors.NotFound("no such camera", reason="camera_not_found")
            return row.hub_id, camera_id

        hub_id, cam = await self.ctx.db.tx(work)
        return await self._set_prompt(user, hub_id, cam, prompt, enabled)

    async def set_hub_prompt(self, user: User, hub_id: str, prompt: str, enabled: bool) -> PromptView:
        def work(conn: Connection) -> None:
            row = conn.execute(
                sa.select(hubs.c.id).where(hubs.c.id == hub_id, hubs.c.account_id == user.account_id)
            ).first()
            if row is None:
                raise errors.NotFound("no such hub", reason="hub_not_found")

        await self.ctx.db.tx(work)
        return await self._set_prompt(user, hub_id, None, prompt, enabled)

    async def _set_prompt(self, user: User, hub_id: str, camera_id: str | None, prompt: str,
                          enabled: bool) -> PromptView:
        now = self.ctx.clock()
        scope = f"camera:{camera_id}" if camera_id else f"hub:{hub_id}"

        def work(conn: Connection) -> None:
            values = {"prompt": prompt, "enabled": enabled, "updated_at": now}
            if not insert_ignore(conn, monitoring, {"id": new_id(), "account_id": user.account_id, "hub_id": hub_id,
                                                    "camera_id": camera_id, "scope": scope, **values}):
                conn.execute(sa.update(monitoring).where(monitoring.c.scope == scope,
                                                         monitoring.c.account_id == user.account_id).values(**values))

        await self.ctx.db.tx(work)
        return PromptView(scope.split(":", 1)[0], prompt, enabled, now)
