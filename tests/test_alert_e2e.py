"""The alert end to end, the way a family uses it: a real hub (Store, ArmState, CameraManager, Controller, a camera
pipeline fed real H.264) with its cloud channel and uploader, the real cloud API (SQLite and PostgreSQL, real
Azurite), the cloud's Telegram notifier in-process, and the fake Telegram Bot API with a linked chat.

1. Motion on the hub → the photo (the hub's own snapshot, "analysing…") → the clip uploaded by the hub → the video
   as a reply to the photo → the worker's result → the caption edited with the summary; nothing twice.
2. "Disarm 1 h" pressed on the photo → the real hub is disarmed for an hour → the chat is told → the cloud shows
   the hub disarmed.
3. The hub is offline when an event starts → nothing in Telegram → back online → the photo, marked late, once.
4. A button pressed while the hub is offline → the command expires → "The hub is offline; nothing changed" → the
   hub, back online, never acts on it.

"Offline" is the unpluggable relay of tests/cloud/test_hub_alerts.py between the hub and the API (the API and the
notifier keep running). Every wait is on a condition under a deadline (the fake Bot API's wait_for, or a poll of the
hub or the database); nothing sleeps for synchronisation, nothing is timed.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest_asyncio
import sqlalchemy as sa

from cloud.api.db.schema import event_starts, events, hub_commands, telegram_deliveries
from cloud.api.services.commands import HubCommands
from cloud.notify import Notifier
from cloud.notify import texts as tg_texts
from hub.arming import ArmState
from hub.bus import Bus
from hub.cameras import CameraManager
from hub.config import CloudConfig as HubCloudConfig
from hub.config import HubConfig
from hub.control import Controller
from hub.pipeline import CameraPipeline, PipelineContext
from hub.store import Store
from hub.upload.channel import CloudChannel
from hub.upload.commands import CommandRunner
from hub.upload.hub_state import StateReporter
from hub.upload.link import CloudLink
from hub.upload.starts import StartReporter
from hub.upload.uploader import Uploader
from tests.cloud.conftest import (  # noqa: F401  (fixtures used by these tests)
    ApiFactory,
    CloudApi,
    HubSession,
    api_factory,
    cloud_db_url,
)
from tests.cloud.test_hub_alerts import Relay, until
from tests.harness.telegram import FakeTelegram, SentMessage
from tests.notify.conftest import isolate, new_chat, telegram_config
from tests.test_mqtt import encoded_gop

WAIT_S = 30.0  # a bound on each awaited condition, not a timing assertion
CAMERA = "Front door"  # the hub's camera name, mirrored to the cloud by the hub itself
SUMMARY = "A person walked up to the front door."
FPS = 15


class Camera:
    """A phone streaming the record track into the pipeline: one closed GOP of five frames (libx264, baseline), looped
    with continuing timestamps, so the recorder writes a valid clip of whatever was fed."""

    def __init__(self, pipe: CameraPipeline) -> None:
        self.pipe = pipe
        self.gop = [f for f in encoded_gop() if f.kind == "video"]
        assert self.gop[0].keyframe and not any(f.keyframe for f in self.gop[1:])
        self.n = 0
        self.t0 = time.time()

    def feed(self, seconds: float) -> None:
        for _ in range(max(1, round(seconds * FPS / len(self.gop)))):
            for f in self.gop:
                self.pipe.on_frame(dataclasses.replace(f, pts=self.n * (90_000 // FPS), t=self.t0 + self.n / FPS))
                self.n += 1


@dataclasses.dataclass
class Family:
    """Everything a family's alert goes through, and what a test looks at."""

    api: CloudApi
    fake: FakeTelegram
    notifier: Notifier
    chat: int
    cloud_hub: HubSession
    store: Store
    bus: Bus
    arming: ArmState
    control: Controller
    pipe: CameraPipeline
    camera: Camera
    relay: Relay
    channel: CloudChannel
    uploader: Uploader

    @property
    def starts(self) -> StartReporter:
        assert isinstance(self.channel.starts, StartReporter)
        return self.channel.starts

    @property
    def commands(self) -> CommandRunner:
        assert isinstance(self.channel.commands, CommandRunner)
        return self.channel.commands

    # -- the hub --------------------------------------------------------------------------------------------

    def trigger(self) -> str:
        """Motion: the recorder starts an event and publishes ``event.started``, as in production."""
        newest = self.pipe.buffer.newest_t
        assert newest is not None
        return self.pipe.recorder.start(newest, newest, "motion")

    async def end(self, event_id: str) -> dict[str, Any]:
        """The event goes quiet: the recorder finishes the clip and publishes ``event.ended`` (the uploader's cue)."""
        task = self.pipe.recorder.end((self.pipe.buffer.newest_t or 0) + 0.1, "quiet")
        assert task is not None, f"{event_id} was not recording"
        event = await task
        assert event["id"] == event_id and event["clip_path"], event
        return event

    async def start_sent(self, event_id: str) -> Any:
        """The hub's outbox row once the cloud took the start with its snapshot."""
        return await until(lambda: (r := self.starts.outbox.get(event_id)) and r.state == "sent"
                           and r.sent_with_snapshot and r, f"the start of {event_id} reported with its snapshot")

    # -- the cloud ------------------------------------------------------------------------------------------

    async def cloud_starts(self, event_id: str) -> list[Any]:
        return await self.api.services.ctx.db.read(lambda conn: list(conn.execute(
            sa.select(event_starts).where(event_starts.c.hub_id == self.cloud_hub.hub_id,
                                          event_starts.c.hub_event_id == event_id)).all()))

    async def deliveries(self, event_key: str) -> list[Any]:
        d = telegram_deliveries
        return await self.api.services.ctx.db.read(lambda conn: list(conn.execute(
            sa.select(d).where(d.c.chat_id == self.chat, d.c.event_key == event_key).order_by(d.c.id)).all()))

    async def cloud_event_id(self, event_id: str) -> str:
        async def queued() -> str | None:
            row = await self.api.services.ctx.db.read(lambda conn: conn.execute(
                sa.select(events.c.id, events.c.state).where(events.c.hub_id == self.cloud_hub.hub_id,
                                                             events.c.hub_event_id == event_id)).first())
            return str(row.id) if row is not None and row.state == "queued" else None

        return await until(queued, f"the cloud's event for {event_id} queued")

    async def hub_view(self) -> dict[str, Any]:
        r = await self.api.http.get("/api/v1/hubs", headers=self.cloud_hub.user.headers)
        assert r.status_code == 200, r.text
        return next(h for h in r.json()["hubs"] if h["id"] == self.cloud_hub.hub_id)

    async def commands_of_hub(self) -> list[Any]:
        return await self.api.services.ctx.db.read(lambda conn: list(conn.execute(
            sa.select(hub_commands).where(hub_commands.c.hub_id == self.cloud_hub.hub_id)
            .order_by(hub_commands.c.created_at)).all()))

    # -- the chat -------------------------------------------------------------------------------------------

    def messages(self) -> list[SentMessage]:
        return self.fake.sent_to(self.chat)

    def calls(self) -> list[tuple[str, int]]:
        """(method, status) of every call the bot made about this chat, in order."""
        return [(c.method, c.status) for c in self.fake.calls if c.params.get("chat_id") == self.chat]

    async def message(self, n: int) -> SentMessage:
        """The chat's n-th message (1-based, the "Linked" answer is the first), once it is there."""
        return (await self.fake.wait_messages(self.chat, n, WAIT_S))[n - 1]

    async def round_trip(self) -> None:
        """/help and its answer: everything the notifier had to do before it has been done by then."""
        before = len(self.messages())
        await self.fake.push_message(self.chat, "/help")
        assert (await self.message(before + 1)).text == tg_texts.HELP


@pytest_asyncio.fixture
async def family(api_factory: ApiFactory, telegram: FakeTelegram, tmp_path: Path) -> AsyncIterator[Family]:  # noqa: F811
    api = await api_factory(telegram=telegram_config(telegram), server={"public_url": "http://127.0.0.1:9"})
    await isolate(api)  # the database is shared by the session: start after what earlier tests left
    cloud_hub = await api.hub(cameras=())  # the hub mirrors its cameras itself
    notifier = Notifier(api.services.ctx, retry_base_s=0.05, retry_max_s=0.2, poll_timeout_s=1,
                        conflict_wait_s=0.2, housekeeping_s=0.2)
    await notifier.start()
    chat = new_chat()

    relay = Relay(int(api.base_url.rsplit(":", 1)[1]))
    await relay.plug()
    store = Store(tmp_path / "hub.db")
    bus = Bus()
    arming = ArmState(store, bus)
    cameras = CameraManager(PipelineContext(
        config=HubConfig.model_validate({"storage": {"data_dir": str(tmp_path)}}), store=store, bus=bus,
        clips_dir=tmp_path / "clips", scratch_dir=tmp_path, is_armed=arming.is_armed, on_disk_full=lambda: None))
    arming.add_listener(cameras.apply_armed)
    control = Controller(arming, cameras)
    store.ensure_static_camera("front", CAMERA, "file")
    pipe = cameras.pipeline("front")
    # Everything the hub says to the cloud goes through the relay (the clip itself goes straight to blob storage).
    link = CloudLink(api_url=relay.url, hub_id=cloud_hub.hub_id, hub_token=cloud_hub.token)
    cfg = HubCloudConfig(retry_max_s=0.5, commands_wait_s=1)  # short backoffs and long polls, for the test's pace
    starts = StartReporter(cfg, store, bus, control, lambda: link, retry_base_s=0.05)
    channel = CloudChannel(
        starts,
        StateReporter(cfg, store, bus, control, control.rearms_at, lambda: link, retry_base_s=0.05,
                      on_reached=starts.cloud_is_back),
        CommandRunner(cfg, store, control, lambda: link, retry_base_s=0.05, on_reached=starts.cloud_is_back))
    uploader = Uploader(cfg, store, bus, tmp_path / "clips", tmp_path / "uploads", lambda: link, retry_base_s=0.05)
    fam = Family(api, telegram, notifier, chat, cloud_hub, store, bus, arming, control, pipe, Camera(pipe), relay,
                 channel, uploader)
    await uploader.start()
    await channel.start()
    try:
        # The chat links as a person does: a token from the account, "/start <token>" to the bot.
        r = await api.http.post("/api/v1/telegram/links", headers=cloud_hub.user.headers)
        assert r.status_code == 201, r.text
        await telegram.push_message(chat, f"/start {r.json()['token']}")
        assert ((await fam.message(1)).text or "").startswith("✅ Linked")
        fam.camera.feed(2)  # the phone streams: two seconds in the ring buffer before anything happens
        yield fam
    finally:
        await channel.stop()
        await uploader.stop()
        await notifier.stop()
        await relay.close()
        await pipe.close()
        arming.close()
        store.close()


def _jpeg_shape(data: bytes | None) -> tuple[int, ...]:
    assert data is not None and data[:3] == b"\xff\xd8\xff", (data or b"")[:8]
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None
    return tuple(img.shape[:2])


# -- 1. the staged alert --------------------------------------------------------------------------------------


async def test_motion_on_the_hub_gives_photo_then_video_reply_then_the_summary_once(family: Family) -> None:
    event_id = family.trigger()
    family.bus.publish("event.started", event_id=event_id, camera_id="front", start=time.time(),
                       triggers=["motion"])  # the bus delivers at least once: a second copy must change nothing
    snapshot = await family.control.snapshot("front")  # what the hub's camera shows now (nothing fed since)
    assert snapshot is not None and _jpeg_shape(snapshot) == (180, 320)

    photo = await family.message(2)
    assert photo.method == "sendPhoto" and photo.file == snapshot  # the hub's own picture, byte for byte
    first_caption = family.fake.calls_of("sendPhoto")[0].params["caption"]
    assert CAMERA in first_caption and "analysing" in first_caption and "late" not in first_caption
    assert any("Disarm" in t for t, _ in photo.buttons())
    await family.start_sent(event_id)  # the snapshot went with the start: the camera may move on

    family.camera.feed(2)  # the event records two more seconds, then goes quiet
    hub_event = await family.end(event_id)
    clip = Path(hub_event["clip_path"]).read_bytes()
    video = await family.message(3)
    assert video.method == "sendVideo" and video.reply_to == photo.message_id
    assert video.file == clip  # the hub's clip, as uploaded by its uploader
    assert CAMERA in (video.text or "")

    # The worker (its hooks around the analysis): processing, then done with the summary.
    cloud_id = await family.cloud_event_id(event_id)
    worker = family.api.services.worker
    assert await worker.start(cloud_id) is not None
    assert await worker.complete(cloud_id, {"person": 0.91}, {
        "text": SUMMARY, "notify": True, "reason": "person (0.91)", "labels": [{"label": "person", "count": 1}]})
    await family.fake.wait_for(lambda: photo.edits, WAIT_S, "the photo's caption edited")
    assert [e["method"] for e in photo.edits] == ["editMessageCaption"]
    assert SUMMARY in (photo.text or "") and "person" in (photo.text or "") and CAMERA in (photo.text or "")
    assert "analysing" not in (photo.text or "")

    await family.round_trip()
    assert family.calls() == [("sendMessage", 200), ("sendPhoto", 200), ("sendVideo", 200),
                              ("editMessageCaption", 200), ("sendMessage", 200)]  # in order, each once
    assert [m.method for m in family.messages()] == ["sendMessage", "sendPhoto", "sendVideo", "sendMessage"]
    rows = await family.deliveries(event_id)
    assert sorted((r.stage, r.state) for r in rows) == [("clip", "sent"), ("started", "sent"), ("summary", "sent")]
    assert len(await family.cloud_starts(event_id)) == 1
    assert family.uploader.enqueue_finished(hub_event) is False  # and the clip is never queued again


# -- 2. a button that acts on the hub ----------------------------------------------------------------------------


async def test_disarm_1h_on_the_photo_disarms_the_real_hub_and_the_chat_and_cloud_see_it(family: Family) -> None:
    await until(lambda: family.channel.state.status()["reported_at"], "the hub's first state report")
    assert (await family.hub_view())["armed"] is True and family.control.is_armed() is True
    event_id = family.trigger()
    photo = await family.message(2)
    assert photo.method == "sendPhoto"

    pressed_at = time.time()
    qid = await family.fake.press(photo, button="Disarm 1 h")
    assert (await family.fake.wait_answer(qid, WAIT_S))["text"] == tg_texts.SENT_TO_HUB
    outcome = await family.message(3)
    told_at = time.time()
    assert outcome.method == "sendMessage" and outcome.reply_to == photo.message_id
    assert (outcome.text or "").startswith("💤 Disarmed for 1 h"), outcome.text

    assert family.control.is_armed() is False  # the real hub's arm state
    rearms_at = family.control.rearms_at()
    assert rearms_at is not None and pressed_at + 3600 <= rearms_at <= told_at + 3600
    (cmd,) = await family.commands_of_hub()
    assert (cmd.kind, cmd.args, cmd.ok) == ("disarm", {"for_s": 3600}, True)
    assert cmd.origin == f"telegram:{family.chat}:{photo.message_id}"
    assert family.commands.acted == 1

    async def disarmed_in_the_cloud() -> dict[str, Any] | None:
        view = await family.hub_view()
        return view if view["armed"] is False else None

    view = await until(disarmed_in_the_cloud, "the cloud showing the hub disarmed")
    assert view["disarmed_until"] is not None
    await family.end(event_id)


# -- 3. the hub offline when the event starts --------------------------------------------------------------------


async def test_a_start_while_the_hub_is_offline_arrives_once_marked_late_when_it_is_back(family: Family) -> None:
    await until(lambda: family.channel.state.status()["reported_at"], "the hub's first state report")
    await family.relay.unplug()
    event_id = family.trigger()
    row = await until(lambda: (r := family.starts.outbox.get(event_id)) and r.attempts >= 2 and r.snapshot and r,
                      "two failed tries of the start, its snapshot kept on the hub")
    assert row.state == "pending" and _jpeg_shape(row.snapshot) == (180, 320)
    assert await family.cloud_starts(event_id) == []
    assert family.fake.calls_of("sendPhoto", status=None) == []  # nothing reached Telegram

    family.api.clock.advance(minutes=5)  # the hub stays offline for five minutes (by the cloud's clock)
    lost = family.relay.add_rule("POST /api/v1/hub/event-starts", "lose_answer", times=1)  # and a flaky return
    await family.relay.plug()
    photo = await family.message(2)
    assert photo.method == "sendPhoto" and photo.file == row.snapshot  # the picture taken at the trigger
    assert CAMERA in (photo.text or "") and "late" in (photo.text or ""), photo.text
    assert "5 min after it happened" in (photo.text or "")

    await family.start_sent(event_id)
    assert lost.hits == 1  # the cloud took the first report, the hub never heard, and sent it again
    (start,) = await family.cloud_starts(event_id)
    assert start.late is True
    await family.round_trip()
    assert [m.method for m in family.messages()] == ["sendMessage", "sendPhoto", "sendMessage"]
    assert len(family.fake.calls_of("sendPhoto", status=None)) == 1
    assert [(r.stage, r.state) for r in await family.deliveries(event_id)] == [("started", "sent")]


# -- 4. a button pressed while the hub is offline ----------------------------------------------------------------


async def test_a_button_pressed_while_the_hub_is_offline_expires_and_the_hub_never_acts_on_it(family: Family) -> None:
    family.trigger()
    photo = await family.message(2)
    # The hub goes offline. First its next request for commands is cut before the API sees it: then no long poll
    # of the hub is still open at the API (one would take the command onto a connection nobody reads).
    refused = family.relay.add_rule("GET /api/v1/hub/commands", "refuse", times=10**6)
    await until(lambda: refused.hits >= 1, "the hub's next request for commands")
    await family.relay.unplug()

    qid = await family.fake.press(photo, button="Disarm 1 h")
    assert (await family.fake.wait_answer(qid, WAIT_S))["text"] == tg_texts.SENT_TO_HUB
    (cmd,) = await family.commands_of_hub()
    assert cmd.kind == "disarm" and cmd.delivered_at is None and cmd.done_at is None

    family.api.clock.advance(seconds=family.api.config.telegram.command_timeout_s + 1)
    await HubCommands(family.api.services.ctx).expire_due()  # the notifier's housekeeping may get there first
    outcome = await family.message(3)
    assert outcome.text == tg_texts.HUB_OFFLINE and outcome.reply_to == photo.message_id
    view = await HubCommands(family.api.services.ctx).get(family.cloud_hub.user.account_id, cmd.id)
    assert view.state == "expired" and view.ok is False

    # Back online: the hub's next poll must not bring the expired disarm. A command sent now is a round trip
    # through that poll (commands are taken oldest first).
    refused.times = refused.hits
    await family.relay.plug()
    r = await family.api.http.post(f"/api/v1/hubs/{family.cloud_hub.hub_id}/commands",
                                   json={"kind": "snapshot", "args": {"camera_id": "front"}},
                                   headers=family.cloud_hub.user.headers)
    assert r.status_code == 201, r.text
    later = r.json()["id"]
    await until(lambda: (family.commands.log.get(later) or {}).get("state") == "posted",
                "the later command acted on and answered")
    assert family.commands.log.get(cmd.id) is None  # never acted on
    assert family.commands.acted == 1
    assert family.control.is_armed() is True and family.control.rearms_at() is None
    await family.round_trip()
    assert [m.text for m in family.messages()].count(tg_texts.HUB_OFFLINE) == 1
