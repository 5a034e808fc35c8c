"""Events from hubs: initiate (a SAS for one blob) → the hub uploads → finalize (verify, charge, enqueue).

State machine (the `state` column): uploading → queued → processing → done | failed, and uploading → rejected
when the clip can never be accepted. Every step is idempotent:
- initiate is keyed by (hub, hub's event id): a retry returns the same event;
- finalize verifies the committed blob without downloading it (size and Content-MD5 from its properties, the
  duration read from the container with a few range reads), then in one transaction charges credits (ledger
  key ``charge:<event>``), moves the event to `queued` and claims its queue message; a retry after that
  returns the same state and charges nothing;
- the queue message is sent by cloud.api.services.enqueue (send, mark) right after finalize has answered, so
  the hub never waits for the queue; the reconciler re-sends any `queued` event whose message never went out.
Nothing the hub declares is trusted for what it costs: size and duration are re-derived from the blob. The MD5
is checked in two places: each block's by the storage service on upload (transactional MD5), and the whole
clip's by the worker, which downloads every clip anyway and fails (refunding the charge) one whose bytes do not
hash to the declared MD5. Finalize compares the Content-MD5 committed with the blob to the declared one, which
catches an honest hub's wrong file at once; it cannot catch a hub that lies about it, and need not: a lie only
costs that hub its analysis.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cloud.api import changes, errors
from cloud.api.context import Context
from cloud.api.db.schema import accounts, events
from cloud.api.db.util import insert_ignore_statement, row_params
from cloud.api.principals import HubCaller, HubClaim, StaleHubClaim
from cloud.api.security import new_id
from cloud.api.services import credits
from cloud.api.services.enqueue import Enqueuer
from cloud.api.services.hubs import claim_holds, claim_params, live_camera_query, unknown_camera
from cloud.storage.blob import BlobInfo, BlobNotFound, BlobStore, StorageError
from cloud.storage.probe import PROBE_HEAD_BYTES, MediaError, probe_blob

log = logging.getLogger(__name__)

# mime → blob name extension, which is also the container kind cloud.storage.probe reports for it
EXTENSIONS = {"video/mp4": "mp4", "video/webm": "webm"}
HOUR = timedelta(hours=1)


def duration_tolerance(declared_s: float) -> float:
    """How much longer than declared a clip may really be (container rounding, a last frame's duration).
    Shorter is always fine: credits are charged for the real length."""
    return max(1.0, 0.05 * declared_s)


@dataclass(frozen=True)
class InitiateRequest:
    hub_event_id: str
    hub_camera_id: str
    started_at: datetime
    ended_at: datetime
    trigger: str
    mime: str
    size: int
    md5: str
    duration_s: float
    motion: dict[str, Any] | None


@dataclass(frozen=True)
class UploadTicket:
    id: str
    state: str
    blob: str
    upload_url: str | None
    upload_url_expires_at: datetime | None
    created: bool


def blob_name(hub: HubCaller, event_id: str, mime: str) -> str:
    return f"{hub.account_id}/{hub.hub_id}/{event_id}.{EXTENSIONS[mime]}"


class _EarlyHead:
    """The clip's head, read from storage while finalize reads the event's row: the blob's name follows from the
    event id, and the hub's clips are MP4, so the usual finalize waits for one of the two reads, not both (each is
    a few milliseconds on the hub's request path). A guess that misses (a WebM clip, an unknown event) is dropped
    unread, and the real name is read after the row, as without it."""

    def __init__(self, blobs: BlobStore, name: str) -> None:
        self.name = name
        self._task = asyncio.create_task(blobs.head(name, PROBE_HEAD_BYTES))

    @classmethod
    def start(cls, blobs: BlobStore, hub: HubCaller, event_id: str) -> _EarlyHead | None:
        try:
            canonical = str(uuid.UUID(event_id)) == event_id  # ids are new_id()'s: anything else has no row
        except ValueError:
            return None
        return cls(blobs, blob_name(hub, event_id, "video/mp4")) if canonical else None

    async def result(self) -> tuple[BlobInfo, bytes] | None:
        return await self._task

    async def drop(self) -> None:
        self._task.cancel()
        # Awaited so that its outcome (an error, or the cancellation) is retrieved, never logged as lost.
        await asyncio.gather(self._task, return_exceptions=True)


def _storage_down(exc: StorageError) -> errors.Unavailable:
    log.warning("storage call failed", extra={"error": str(exc)})
    return errors.Unavailable("storage is unavailable", "nothing was changed; retry in a minute",
                              reason="storage_unavailable", retry_after_s=30)


# The upload calls' statements, built once with bind parameters: building one per call cost SQLAlchemy more than
# running it (measured on the request path: a statement of this size is ~1 ms of Python to construct and key).
@functools.cache
def _initiate_facts_statement() -> Any:
    """Every check of an initiate in one statement (the hub's token, a retry's row, the camera, the hour's
    uploads, the month's credits): each round trip is one to two milliseconds on the hub's request path."""
    p = sa.bindparam
    window = (sa.select(events.c.created_at).where(events.c.account_id == p("account_id"),
                                                   events.c.created_at > p("since"))
              .order_by(events.c.created_at).limit(p("max_uploads", type_=sa.Integer)).subquery())
    return sa.select(
        claim_holds(p("hub_id"), p("token_hash"), p("plan")).label("claim_holds"),
        sa.select(events.c.id).where(events.c.hub_id == p("hub_id"), events.c.hub_event_id == p("hub_event_id"))
        .scalar_subquery().label("existing"),
        live_camera_query(p("hub_id"), p("hub_camera_id")).scalar_subquery().label("camera_id"),
        # Counted in the database (no rows shipped), at most up to the limit.
        sa.select(sa.func.count()).select_from(window).scalar_subquery().label("recent"),
        sa.select(sa.func.min(window.c.created_at)).scalar_subquery().label("oldest"),
        *credits.balance_columns(p("account_id"), p("period")),
    )


@functools.cache
def _event_insert_statement(dialect: str, columns: tuple[str, ...]) -> Any:
    return insert_ignore_statement(dialect, events, columns)


@functools.cache
def _claimed_event_statement() -> Any:
    p = sa.bindparam
    return (sa.select(events, claim_holds(p("hub_id"), p("token_hash"), p("plan")).label("claim_holds"))
            .where(events.c.id == p("event_id"), events.c.hub_id == p("hub_id")))


@functools.cache
def _queue_statement() -> Any:
    # Bind names differ from the columns' (SQLAlchemy keeps those for the SET clause).
    p = sa.bindparam
    account_locked = sa.exists(sa.select(accounts.c.id).where(accounts.c.id == p("b_account_id")).with_for_update())
    now = p("b_now", type_=events.c.finalized_at.type)
    return (sa.update(events)
            .where(events.c.id == p("b_event_id"), events.c.hub_id == p("b_hub_id"), events.c.state == "uploading",
                   account_locked)
            .values(state="queued", probed_duration_s=p("b_duration", type_=events.c.probed_duration_s.type),
                    credits=p("b_credits", type_=events.c.credits.type), finalized_at=now, enqueue_claimed_at=now)
            .returning(*events.c))


class Events:
    def __init__(self, ctx: Context, enqueuer: Enqueuer) -> None:
        self.ctx = ctx
        self.enqueuer = enqueuer

    # -- initiate ----------------------------------------------------------------------------------------------

    async def initiate(self, claim: HubClaim, req: InitiateRequest) -> UploadTicket:
        hub = claim.caller
        now = self.ctx.clock()
        plan = self.ctx.config.plan(hub.plan)
        event_id = new_id()

        def work(conn: Connection) -> tuple[Any, bool]:
            facts = conn.execute(_initiate_facts_statement(), claim_params(claim) | {
                "account_id": hub.account_id, "since": now - HOUR, "max_uploads": plan.max_uploads_per_hour,
                "hub_event_id": req.hub_event_id, "hub_camera_id": req.hub_camera_id,
                "period": credits.period_of(now)}).one()
            if not facts.claim_holds:
                raise StaleHubClaim
            if facts.existing is not None:
                return self._same_or_conflict(self._by_hub_event(conn, hub.hub_id, req.hub_event_id), req), False
            if facts.camera_id is None:
                raise unknown_camera(req.hub_camera_id)
            camera_id = str(facts.camera_id)
            if req.size > plan.max_size_bytes:
                raise errors.TooLarge(f"clip is {req.size} bytes; the plan allows {plan.max_size_bytes}",
                                      "keep the clip local or shorten events", reason="size_over_plan")
            if req.duration_s > plan.max_clip_s:
                raise errors.TooLarge(f"clip is {req.duration_s:.1f} s; the plan allows {plan.max_clip_s:g} s",
                                      "shorten events (events.max_length_s on the hub)", reason="duration_over_plan")
            recent, oldest = facts.recent, facts.oldest
            if recent >= plan.max_uploads_per_hour:
                wait = max(1.0, (oldest + HOUR - now).total_seconds())
                raise errors.RateLimited(f"the plan allows {plan.max_uploads_per_hour} uploads per hour",
                                         "the clip stays on the hub; it is uploaded when the hour allows",
                                         reason="uploads_per_hour", retry_after_s=wait)
            # The month's first upload grants its allowance first.
            bal = (credits.balance_from(now, facts.granted, facts.spent)
                   or credits.granted_balance(conn, hub.account_id, plan, now))
            need = credits.credits_for(req.duration_s)
            if bal.left < need:
                raise errors.OutOfCredits(f"{need} credits needed, {bal.left} left this month",
                                          "upgrade the plan or wait for next month's credits", reason="no_credits",
                                          retry_after_s=(credits.next_period_start(now) - now).total_seconds())
            blob = blob_name(hub, event_id, req.mime)
            values = {
                "id": event_id, "account_id": hub.account_id, "hub_id": hub.hub_id, "camera_id": camera_id,
                "hub_event_id": req.hub_event_id, "state": "uploading", "mime": req.mime, "size_bytes": req.size,
                "md5": req.md5, "declared_duration_s": req.duration_s, "started_at": req.started_at,
                "ended_at": req.ended_at, "trigger": req.trigger, "motion": req.motion, "blob_name": blob,
                "created_at": now, "attempts": 0,
            }
            inserted = changes.execute_recorded(
                conn, _event_insert_statement(conn.dialect.name, tuple(values)), row_params(values),
                account_id=hub.account_id, kind=changes.EVENT_STATE, at=now, subject_id=event_id,
                data=changes.event_state_data(values))
            if inserted is not None:
                return inserted, True
            row = self._by_hub_event(conn, hub.hub_id, req.hub_event_id)  # a concurrent retry's
            return self._same_or_conflict(row, req), False

        # Each statement commits alone on PostgreSQL (the row and its change are one statement): a transaction
        # would add BEGIN and COMMIT round trips and no protection, as the checks take no locks. SQLite: one.
        row, created = await self.ctx.db.statements(work)
        url, expires = await self._upload_url(row)
        if created:
            log.info("event initiated", extra={"event_id": row.id, "hub_id": hub.hub_id})
        return UploadTicket(id=row.id, state=row.state, blob=row.blob_name, upload_url=url,
                            upload_url_expires_at=expires, created=created)

    @staticmethod
    def _by_hub_event(conn: Connection, hub_id: str, hub_event_id: str) -> Any:
        return conn.execute(
            sa.select(events).where(events.c.hub_id == hub_id, events.c.hub_event_id == hub_event_id)
        ).first()

    @staticmethod
    def _same_or_conflict(row: Any, req: InitiateRequest) -> Any:
        if (row.size_bytes, row.md5, row.mime) != (req.size, req.md5, req.mime):
            raise errors.Conflict(f"event '{req.hub_event_id}' was started with a different clip",
                                  "a hub event id names one clip; use a new id for a new clip",
                                  reason="event_id_reused")
        return row

    async def _upload_url(self, row: Any) -> tuple[str | None, datetime | None]:
        if row.state != "uploading":
            return None, None
        ttl = self.ctx.config.storage.upload_url_ttl_s
        expires = self.ctx.clock() + timedelta(seconds=ttl)
        try:
            return await self.ctx.blobs.upload_url(row.blob_name, ttl), expires
        except StorageError as exc:
            raise _storage_down(exc) from None

    async def upload_url(self, hub: HubCaller, event_id: str) -> UploadTicket:
        """A fresh SAS for the same blob (the old one expired mid-upload; staged blocks stay usable)."""
        row = await self.ctx.db.tx(lambda conn: self._hub_event(conn, hub, event_id))
        if row.state != "uploading":
            raise errors.Conflict(f"the event is {row.state}; its clip can no longer be uploaded",
                                  reason="not_uploading")
        url, expires = await self._upload_url(row)
        return UploadTicket(id=row.id, state=row.state, blob=row.blob_name, upload_url=url,
                            upload_url_expires_at=expires, created=False)

    @staticmethod
    def _hub_event(conn: Connection, hub: HubCaller, event_id: str) -> Any:
        row = conn.execute(
            sa.select(events).where(events.c.id == event_id, events.c.hub_id == hub.hub_id)
        ).first()
        if row is None:
            raise errors.NotFound("no such event", reason="event_not_found")
        return row

    # -- finalize ----------------------------------------------------------------------------------------------

    @staticmethod
    def _claimed_event(conn: Connection, claim: HubClaim, event_id: str) -> Any:
        """The hub's event, in the statement that also checks the hub's token (``claim_holds``)."""
        row = conn.execute(_claimed_event_statement(), claim_params(claim) | {"event_id": event_id}).first()
        if row is None and not claim.fresh:
            raise StaleHubClaim  # the token first: a revoked hub hears 401 for any event id, as with a lookup
        if row is None:
            raise errors.NotFound("no such event", reason="event_not_found")
        if not row.claim_holds:
            raise StaleHubClaim
        return row

    async def finalize(self, claim: HubClaim, event_id: str) -> Any:
        hub = claim.caller
        early = _EarlyHead.start(self.ctx.blobs, hub, event_id)
        try:
            row = await self.ctx.db.read(lambda conn: self._claimed_event(conn, claim, event_id))
            if row.state == "rejected":
                raise errors.EventRejected(f"the clip was rejected: {row.reason}", "it stays on the hub",
                                           reason=(row.reason or "rejected").split(":", 1)[0])
            if early is not None and (row.state != "uploading" or early.name != row.blob_name):
                await early.drop()
                early = None
        except BaseException:
            if early is not None:
                await early.drop()
            raise
        if row.state != "uploading":
            await self.enqueuer.ensure_sent(row.id)  # a retry after an enqueue failure sends now
            return await self.ctx.db.tx(lambda conn: self._hub_event(conn, hub, event_id))
        plan = self.ctx.config.plan(hub.plan)
        duration = await self._verify(row, plan.max_clip_s, early)
        need = credits.credits_for(duration)
        now = self.ctx.clock()

        def commit(conn: Connection) -> tuple[Any, bool]:
            # Serialise charges per account (PostgreSQL row lock; SQLite has one writer anyway), so two events
            # finalizing at once cannot both spend the last credits: the lock is taken inside the UPDATE (one round
            # trip less than a SELECT ... FOR UPDATE of its own) and held to the commit, so the balance read by
            # the charge below, a later statement, sees every charge committed before it. The same statement
            # moves the event to queued and claims its queue message for this caller (the enqueuer's claim); an
            # error below (no credits) rolls it back.
            moved = conn.execute(_queue_statement(), {
                "b_event_id": event_id, "b_hub_id": hub.hub_id, "b_account_id": hub.account_id,
                "b_duration": duration, "b_credits": need, "b_now": now}).first()
            if moved is None:
                return self._hub_event(conn, hub, event_id), False  # a concurrent finalize won; same answer
            # The charge and the event's change in one statement on PostgreSQL (``changes.execute_recorded``).
            charge, params = credits.charge_if_covered(conn.dialect.name, hub.account_id, event_id, need, now)
            if changes.execute_recorded(conn, charge, params, account_id=hub.account_id, kind=changes.EVENT_STATE,
                                        at=now, subject_id=event_id,
                                        data=changes.event_state_data(moved._mapping)) is not None:
                return moved, True
            # Not covered, or the month's grant is not there yet (its first upload finalized after midnight on the
            # 1st), or charged already: grant, look again, say why.
            bal = credits.granted_balance(conn, hub.account_id, plan, now)
            if bal.left < need:
                raise errors.OutOfCredits(f"{need} credits needed, {bal.left} left this month",
                                          "the clip stays on the hub; finalize again once credits are available",
                                          reason="no_credits",
                                          retry_after_s=(credits.next_period_start(now) - now).total_seconds())
            credits.charge(conn, hub.account_id, event_id, need, now)
            changes.record_event_state(conn, event_id, now, row=moved)
            return moved, True

        done, claimed = await self.ctx.db.tx(commit)
        if claimed:
            log.info("event finalized", extra={"event_id": event_id, "credits": need, "duration_s": duration})
            self.enqueuer.send_claimed_soon(event_id)
        return done

    async def _verify(self, row: Any, max_clip_s: float, early: _EarlyHead | None) -> float:
        """The blob's real duration, after checking it is the clip the hub declared. Raises the domain errors.
        ``early``: the head of this very blob, already being read."""
        blobs = self.ctx.blobs
        # The properties and the clip's head (what the probe reads first) in one storage request.
        try:
            found = await (early.result() if early is not None else blobs.head(row.blob_name, PROBE_HEAD_BYTES))
        except StorageError as exc:
            raise _storage_down(exc) from None
        if found is None:
            raise errors.UploadNotReady("the clip has not been uploaded (no committed blob)",
                                        "upload it to the upload URL, then finalize", reason="blob_missing")
        info, head = found
        if info.size != row.size_bytes:
            await self._discard(row.blob_name)
            raise errors.UploadCorrupt(f"the uploaded clip is {info.size} bytes, {row.size_bytes} were declared",
                                       "upload it again (the bad copy was deleted)", reason="size_mismatch")
        # Each block's MD5 was checked by the service as it arrived; the Content-MD5 committed with the block list
        # is the hub's word for the whole clip. It must be the declared one (an honest hub's wrong or changed
        # file stops here); the worker hashes the bytes it downloads and fails a clip that is not what this
        # Content-MD5 claims, so no read of the whole clip is needed here.
        if info.content_md5 is None or base64.b64encode(info.content_md5).decode() != row.md5:
            await self._discard(row.blob_name)
            raise errors.UploadCorrupt("the uploaded clip's Content-MD5 is missing or differs from the declared MD5",
                                       "upload it again (the bad copy was deleted)", reason="md5_mismatch")
        try:
            media = await probe_blob(blobs, row.blob_name, size=info.size, head=head)  # header + last GOP
        except BlobNotFound:
            raise errors.UploadNotReady("the clip disappeared during finalize", "upload it again",
                                        reason="blob_missing") from None
        except MediaError as exc:
            await self._reject(row, f"not_media: {exc}")
            raise errors.EventRejected(f"the clip is not a playable video: {exc}", reason="not_media") from None
        except StorageError as exc:  # unavailable, or refused: either way nothing changed, retry
            raise _storage_down(exc) from None
        if media.container != EXTENSIONS.get(row.mime):
            await self._reject(row, f"mime_mismatch: declared {row.mime}, the file is {media.container}")
            raise errors.EventRejected(f"declared {row.mime} but the file is {media.container}",
                                       reason="mime_mismatch")
        duration = media.duration_s
        if duration > max_clip_s + 0.5:
            await self._reject(row, f"duration_over_plan: {duration:.1f} s")
            raise errors.EventRejected(f"the clip is {duration:.1f} s; the plan allows {max_clip_s:g} s",
                                       reason="duration_over_plan")
        if duration > row.declared_duration_s + duration_tolerance(row.declared_duration_s):
            await self._reject(row, f"duration_mismatch: declared {row.declared_duration_s:.1f} s, "
                                    f"the clip is {duration:.1f} s")
            raise errors.EventRejected(f"the clip is {duration:.1f} s, {row.declared_duration_s:.1f} s were declared",
                                       reason="duration_mismatch")
        return duration

    async def _discard(self, blob_name: str) -> None:
        """Delete a bad upload so the hub can upload again with a create-only SAS."""
        try:
            await self.ctx.blobs.delete(blob_name)
        except StorageError as exc:
            raise _storage_down(exc) from None

    async def _reject(self, row: Any, reason: str) -> None:
        now = self.ctx.clock()

        def work(conn: Connection) -> None:
            if conn.execute(sa.update(events).where(events.c.id == row.id, events.c.state == "uploading")
                            .values(state="rejected", reason=reason[:300], finalized_at=now)).rowcount == 1:
                changes.record_event_state(conn, row.id, now)

        await self.ctx.db.tx(work)
        try:
            await self.ctx.blobs.delete(row.blob_name)
        except StorageError:
            log.warning("could not delete a rejected clip; retention will", extra={"event_id": row.id})
        log.info("event rejected", extra={"event_id": row.id, "reason": reason})
