"""Telegram alerts straight from the hub (hub/notify/): a real camera pipeline (ring buffer, recorder, clip,
snapshot), the real arm state and controller, python-telegram-bot talking HTTP to the fake Bot API server
(tests/harness/telegram.py). Every wait is on the fake server's condition; nothing sleeps."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import cv2
import numpy as np
import pytest
import pytest_asyncio
from pydantic import ValidationError

from hub.arming import ArmState
from hub.bus import Bus, Subscription
from hub.cameras import CameraManager
from hub.config import HubConfig
from hub.control import Controller
from hub.notify import messages as m
from hub.notify.chats import LINK_TTL_S, TOKENS, ChatBook, LinkOutcome
from hub.notify.config import TelegramConfig
from hub.notify.telegram import ChatPacer, Notifier
from hub.pipeline import CameraPipeline, PipelineContext
from hub.store import Store
from tests.harness.ports import HOST
from tests.harness.telegram import SECRET_HEADER, FakeTelegram, SentMessage
from tests.test_mqtt import encoded_gop

CHAT = 1001
OTHER = 2002


def _tg_config(fake: FakeTelegram, **over: object) -> TelegramConfig:
    # Short waits so retries happen within the test; min_interval 0: pacing has its own test.
    values: dict[str, object] = {"enabled": True, "bot_token": fake.token, "api_url": fake.url, "min_interval_s": 0,
                                 "poll_timeout_s": 1, "retry_base_s": 0.05, "retry_max_s": 0.3}
    values.update(over)
    return TelegramConfig.model_validate(values)


@dataclass
class Rig:
    tmp: Path
    store: Store
    bus: Bus
    arming: ArmState
    control: Controller
    pipe: CameraPipeline
    fake: FakeTelegram
    notifier: Notifier
    outcomes: Subscription  # telegram.alert: each outbox row's outcome, as the notifier announces it
    seen: list[dict]

    async def settled(self, event_id: str, stage: str, chat_id: int = CHAT) -> dict:
        """Wait until the notifier announced the outcome of one outbox row (sent, skipped or failed)."""
        def match() -> dict | None:
            return next((d for d in self.seen if (d["event_id"], d["stage"], d["chat_id"]) == (event_id, stage,
                                                                                               chat_id)), None)

        while (found := match()) is None:
            self.seen.append((await asyncio.wait_for(self.outcomes.get(), 10)).data)
        return found

    def new_notifier(self, **over: object) -> Notifier:
        return Notifier(_tg_config(self.fake, **over), self.store, self.bus, self.control, self.tmp / "clips",
                        self.tmp / "telegram", hub_url=lambda: "https://hub.local:8443/")

    async def link(self, chat_id: int) -> None:
        token = self.notifier.chats.new_link_token().token
        await self.fake.push_message(chat_id, f"/start {token}")
        msgs = await self.fake.wait_messages(chat_id, 1)
        assert msgs[0].text == m.LINKED

    async def event(self, end: bool = True) -> str:
        gop = encoded_gop()
        for frame in gop:
            self.pipe.buffer.push(frame)
        event_id = self.pipe.recorder.start(gop[0].t, gop[1].t, "motion")
        if end:
            task = self.pipe.recorder.end(gop[-1].t + 0.1, "quiet")
            assert task is not None
            await task
        return event_id

    async def end(self) -> dict:
        task = self.pipe.recorder.end(self.pipe.buffer.newest_t + 0.1, "quiet")
        assert task is not None
        return await task


@pytest_asyncio.fixture(loop_scope="session")
async def rig(tmp_path: Path, telegram: FakeTelegram) -> AsyncIterator[Rig]:
    store = Store(tmp_path / "hub.db")
    bus = Bus()
    arming = ArmState(store, bus)
    cameras = CameraManager(PipelineContext(
        config=HubConfig(storage={"data_dir": str(tmp_path)}), store=store, bus=bus, clips_dir=tmp_path / "clips",
        scratch_dir=tmp_path, is_armed=arming.is_armed, on_disk_full=lambda: None))
    arming.add_listener(cameras.apply_armed)
    control = Controller(arming, cameras)
    store.ensure_static_camera("front", "Front door", "file")
    pipe = cameras.pipeline("front")
    r = Rig(tmp_path, store, bus, arming, control, pipe, telegram, None,  # type: ignore[arg-type]
            bus.subscribe("telegram.alert"), [])
    r.notifier = r.new_notifier()
    await r.notifier.start()
    try:
        yield r
    finally:
        await r.notifier.stop()
        await pipe.close()
        arming.close()
        store.close()


def _is_jpeg(data: bytes | None) -> bool:
    return data is not None and cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) is not None


def _alerts(fake: FakeTelegram, chat_id: int) -> list[SentMessage]:
    return [msg for msg in fake.sent_to(chat_id) if msg.kind != "text" or "Front door" in (msg.text or "")]


# -- linking -----------------------------------------------------------------------------------------------

async def test_a_chat_links_with_a_one_time_token_and_others_are_refused(rig: Rig) -> None:
    fake = rig.fake
    token = rig.notifier.chats.new_link_token().token
    stored = rig.store.db.execute(f"SELECT token_hash FROM {TOKENS}").fetchall()
    assert stored and all(token not in row[0] for row in stored)  # hashed at rest

    await fake.push_message(OTHER, "/status")
    await fake.push_message(CHAT, f"/start {token}")
    await fake.push_message(OTHER, f"/start {token}")  # the same token again, from another chat
    refused, replayed = await fake.wait_messages(OTHER, 2)
    assert refused.text == m.NOT_LINKED
    assert replayed.text == m.LINK_INVALID
    assert (await fake.wait_messages(CHAT, 1))[0].text == m.LINKED
    assert rig.notifier.chats.linked() == [CHAT]

    await rig.settled(await rig.event(), "caption")  # only the linked chat is alerted
    assert len(fake.sent_to(OTHER)) == 2
    assert fake.commands and {c["command"] for c in fake.commands} >= {"status", "disarm", "snapshot", "mute"}
    assert not fake.calls_of("deleteWebhook", None) and not fake.calls_of("setWebhook", None)


def test_link_tokens_expire_after_ten_minutes_and_work_once(tmp_path: Path) -> None:
    store = Store(tmp_path / "hub.db")
    try:
        book = ChatBook(store)
        old = book.new_link_token(now=1000.0)
        assert old.expires_at == 1000.0 + LINK_TTL_S
        assert book.redeem(old.token, CHAT, "Ada", sent_at=1000.0 + LINK_TTL_S + 1) is LinkOutcome.INVALID
        fresh = book.new_link_token(now=5000.0)
        # sent while fresh, handled late (the hub was offline): still honoured
        assert book.redeem(fresh.token, CHAT, "Ada", sent_at=5100.0, now=5900.0) is LinkOutcome.LINKED
        assert book.redeem(fresh.token, OTHER, "Eve", sent_at=5101.0, now=5901.0) is LinkOutcome.INVALID
        assert book.token_used(fresh.token) == CHAT
        assert book.redeem("not-a-token", OTHER, "Eve", sent_at=5100.0) is LinkOutcome.INVALID
        assert book.linked() == [CHAT]
    finally:
        store.close()


# -- the staged alert ------------------------------------------------------------------------------------

async def test_the_alert_arrives_in_stages_photo_then_clip_then_caption(rig: Rig) -> None:
    fake = rig.fake
    await rig.link(CHAT)
    event_id = await rig.event(end=False)
    photo = (await fake.wait_messages(CHAT, 2))[1]
    assert photo.kind == "photo" and _is_jpeg(photo.file)  # the camera's live snapshot
    assert "Front door" in photo.text and "motion" in photo.text and "recording…" in photo.text
    assert [d for _, d in photo.buttons()] == [m.disarm_data(), m.mute_data("front")]
    assert [t for t, _ in photo.buttons()] == ["Disarm 1 h", "Mute Front door 1 h"]
    assert not fake.calls_of("sendVideo", None)  # nothing else yet: the event is still recording

    ended = await rig.end()
    await rig.settled(event_id, "caption")
    video = fake.sent_to(CHAT)[2]
    assert video.kind == "video" and video.reply_to == photo.message_id
    assert video.file == Path(ended["clip_path"]).read_bytes()  # the clip itself, byte for byte
    assert [c.method for c in fake.calls if c.method.startswith(("send", "edit"))] == [
        "sendMessage", "sendPhoto", "sendVideo", "editMessageCaption"]
    assert len(photo.edits) == 1 and "clip is below" in photo.text and "recording…" not in photo.text
    assert photo.buttons()  # the buttons stay after the edit
    rows = rig.notifier.outbox.rows(event_id)
    assert [(r.stage, r.state, r.late) for r in rows] == [("started", "sent", False), ("clip", "sent", False),
                                                          ("caption", "sent", False)]


async def test_redelivered_bus_messages_and_a_restart_send_nothing_twice(rig: Rig) -> None:
    fake = rig.fake
    await rig.link(CHAT)
    await rig.settled(await rig.event(), "caption")
    first = rig.store.list_events(limit=1)[0]
    sent = len(fake.sent_to(CHAT))

    # The bus hands the same messages over again, then the hub restarts and they come once more.
    rig.bus.publish("event.started", event_id=first["id"], camera_id="front", start=first["start"],
                    detected_at=first["start"], triggers=["motion"])
    rig.bus.publish("event.ended", event=first, camera_id="front", event_id=first["id"], reason="quiet")
    await rig.notifier.stop()
    rig.notifier = rig.new_notifier()
    await rig.notifier.start()
    rig.bus.publish("event.started", event_id=first["id"], camera_id="front", start=first["start"],
                    detected_at=first["start"], triggers=["motion"])
    rig.bus.publish("event.ended", event=first, camera_id="front", event_id=first["id"], reason="quiet")

    second = await rig.event()  # a new event goes through after the replays: they were handled by then
    await rig.settled(second, "caption")
    assert len(fake.sent_to(CHAT)) == sent + 2  # the second event's photo and clip, nothing of the first again
    assert len(fake.calls_of("sendPhoto")) == 2 and len(fake.calls_of("sendVideo")) == 2
    assert [(r.stage, r.state) for r in rig.notifier.outbox.rows(first["id"])] == [
        ("started", "sent"), ("clip", "sent"), ("caption", "sent")]
    assert {(r.chat_id, r.state) for r in rig.notifier.outbox.rows(second)} == {(CHAT, "sent")}


async def test_a_restart_sends_what_was_queued_before_it_once(rig: Rig) -> None:
    fake = rig.fake
    await rig.link(CHAT)
    await fake.go_offline()
    event_id = await rig.event()
    await fake.wait_for(lambda: "sendPhoto" in fake.dropped, what="a try while offline")
    await rig.notifier.stop()  # the hub stops with the alert still queued
    await fake.go_online()
    rig.notifier = rig.new_notifier()
    await rig.notifier.start()
    assert (await rig.settled(event_id, "caption"))["state"] == "skipped"  # the photo said it all: sent late
    assert len(fake.calls_of("sendPhoto")) == 1 and len(fake.calls_of("sendVideo")) == 1
    assert [r.state for r in rig.notifier.outbox.rows(event_id)] == ["sent", "sent", "skipped"]
    assert not (rig.tmp / "telegram" / f"{event_id}.jpg").exists()  # the kept snapshot is gone once sent


# -- buttons and commands --------------------------------------------------------------------------------

async def test_the_disarm_button_disarms_the_hub_and_is_answered_once(rig: Rig) -> None:
    fake = rig.fake
    await rig.link(CHAT)
    armed = rig.bus.subscribe("armed")
    await rig.event(end=False)
    photo = (await fake.wait_messages(CHAT, 2))[1]
    assert rig.control.is_armed()

    qid = await fake.press(photo, button="Disarm")
    answer = await fake.wait_answer(qid)
    assert answer["text"].startswith("💤 Disarmed until")
    assert not rig.control.is_armed()
    rearm = rig.store.db.execute("SELECT value FROM meta WHERE key = 'rearm:*'").fetchone()
    assert rearm is not None and json.loads(rearm[0])["armed"] is True  # back on by itself in an hour
    msg = await asyncio.wait_for(armed.get(), 5)
    assert msg.data["armed"] is False and msg.data["until"] is not None

    # Telegram hands the same press over again (its update id): nothing acts twice, nothing is answered twice.
    update_id = rig.notifier.chats.last_update_id()  # the press's
    await fake.press(photo, button="Disarm", query_id=qid, update_id=update_id)
    await fake.push_message(CHAT, "/help")  # a later update: once answered, the replay was handled before it
    await fake.wait_for(lambda: any(msg.text == m.HELP for msg in fake.sent_to(CHAT)), what="/help answered")
    assert len(fake.calls_of("answerCallbackQuery", None)) == 1
    assert armed.queue.empty()
    assert rig.notifier.stats.duplicate_updates == 1
    await rig.end()


async def test_the_mute_button_mutes_one_camera_in_one_chat(rig: Rig) -> None:
    fake = rig.fake
    await rig.link(CHAT)
    await rig.link(OTHER)
    first = await rig.event()
    await rig.settled(first, "caption", CHAT)
    await rig.settled(first, "caption", OTHER)
    photo = next(msg for msg in fake.sent_to(CHAT) if msg.kind == "photo")
    qid = await fake.press(photo, button="Mute")
    assert "Front door: no alerts in this chat until" in (await fake.wait_answer(qid))["text"]
    assert rig.control.is_armed()  # muting is not disarming

    second = await rig.event()
    await rig.settled(second, "caption", OTHER)
    assert {r.chat_id for r in rig.notifier.outbox.rows(second)} == {OTHER}
    assert len(_alerts(fake, CHAT)) == 2 and len(_alerts(fake, OTHER)) == 4


async def test_commands_are_answered_by_the_hub(rig: Rig) -> None:
    fake = rig.fake
    await rig.link(CHAT)
    await rig.settled(await rig.event(), "caption")
    gop = encoded_gop()
    for frame in gop:  # something fresh to take a snapshot of
        rig.pipe.buffer.push(frame)
    rig.pipe.online = True

    async def ask(text: str) -> SentMessage:
        before = len(fake.sent_to(CHAT))
        await fake.push_message(CHAT, text)
        return (await fake.wait_messages(CHAT, before + 1))[before]

    status = await ask("/status")
    assert status.text.startswith("🛡 Armed") and "Front door: online" in status.text
    assert "until" in (await ask("/disarm 30m")).text and not rig.control.is_armed()
    assert (await ask("/arm")).text == "🛡 Armed: the hub." and rig.control.is_armed()
    assert "Front door" in (await ask("/disarm front")).text and not rig.control.is_armed("front")
    assert rig.control.is_armed()  # the hub itself stays armed
    snap = await ask("/snapshot front")
    assert snap.kind == "photo" and _is_jpeg(snap.file) and "Front door" in snap.text
    events = await ask("/events@pingwatch_test_bot")
    assert events.text.startswith("Latest events:") and "Front door · motion" in events.text
    assert "no alerts in this chat" in (await ask("/mute front 2h")).text
    assert rig.notifier.chats.muted_until(CHAT, "front") is not None
    assert "muted here" in (await ask("/status")).text
    assert "alerts again" in (await ask("/unmute front")).text
    assert (await ask("/disarm soon")).text.startswith("Use /disarm")
    assert (await ask("/frobnicate")).text.startswith("I do not know /frobnicate")
    assert all(msg.reply_to is not None for msg in fake.sent_to(CHAT)[-3:])  # answers quote the command


# -- delivery failures -----------------------------------------------------------------------------------

@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")  # raised inside the library
async def test_retry_after_is_honoured(rig: Rig) -> None:
    fake = rig.fake
    await rig.link(CHAT)
    fake.fail("sendPhoto", 429, retry_after=1)
    event_id = await rig.event(end=False)
    assert (await rig.settled(event_id, "started"))["state"] == "sent"
    assert [c.status for c in fake.calls_of("sendPhoto", None)] == [429, 200]
    assert rig.notifier.stats.retry_after_s == [1.0]
    assert rig.notifier.stats.network_retries == 0
    row = rig.notifier.outbox.get(event_id, CHAT, "started")
    assert row is not None and row.state == "sent" and not row.late  # a pause Telegram asked for is not late
    assert row.next_at - row.created_at >= 1.0  # it was rescheduled by what Telegram said, not by a backoff
    await rig.end()


async def test_a_clip_telegram_refuses_becomes_text_saying_where_it_is(rig: Rig) -> None:
    fake = rig.fake
    await rig.link(CHAT)
    fake.fail("sendVideo", 413)
    event_id = await rig.event()
    await rig.settled(event_id, "caption")
    photo, fallback = fake.sent_to(CHAT)[1:3]
    assert [c.status for c in fake.calls_of("sendVideo", None)] == [413]  # not retried: it would fail again
    assert fallback.kind == "text" and fallback.reply_to == photo.message_id
    assert "too large for Telegram" in fallback.text and "https://hub.local:8443/#/events" in fallback.text
    assert event_id in fallback.text
    assert rig.notifier.stats.fallbacks == 1

    rig.notifier.config.max_video_mb = 0.000001  # a clip over the limit is not even tried
    await rig.settled(await rig.event(), "caption")
    assert len(fake.calls_of("sendVideo", None)) == 1
    assert "MB) is too large for Telegram" in fake.sent_to(CHAT)[-1].text


async def test_server_errors_are_retried_and_the_alert_says_it_is_late(rig: Rig) -> None:
    fake = rig.fake
    await rig.link(CHAT)
    fake.fail("sendPhoto", 502, times=2)
    await rig.event(end=False)
    await fake.wait_calls("sendPhoto", status=200)
    assert [c.status for c in fake.calls_of("sendPhoto", None)] == [502, 502, 200]
    assert rig.notifier.stats.network_retries == 2
    assert fake.sent_to(CHAT)[1].text.startswith("⏰ Late")
    await rig.end()


async def test_an_alert_made_offline_is_sent_when_back_online_marked_late(rig: Rig) -> None:
    fake = rig.fake
    await rig.link(CHAT)
    await fake.go_offline()
    event_id = await rig.event()
    await fake.wait_for(lambda: "sendPhoto" in fake.dropped and "getUpdates" in fake.dropped,
                        what="tries while offline")
    assert len(fake.sent_to(CHAT)) == 1 and rig.notifier.outbox.counts()["pending"] == 3  # kept, not lost
    await fake.go_online()
    await rig.settled(event_id, "caption")
    photo, video = fake.sent_to(CHAT)[1:3]
    assert photo.kind == "photo" and _is_jpeg(photo.file) and video.kind == "video"
    assert photo.text.startswith("⏰ Late") and "clip is below" in photo.text
    assert photo.edits == []  # it ended while offline: the photo went out with the final caption at once
    rows = rig.notifier.outbox.rows(event_id)
    assert [(r.stage, r.state) for r in rows] == [("started", "sent"), ("clip", "sent"), ("caption", "skipped")]
    assert rows[0].late and rig.notifier.stats.late >= 1


async def test_a_webhook_set_elsewhere_is_never_deleted_and_alerts_still_go(rig: Rig) -> None:
    fake = rig.fake
    await rig.link(CHAT)
    got: list[tuple[str | None, dict]] = []

    async def hook(request: aiohttp.web.Request) -> aiohttp.web.Response:
        got.append((request.headers.get(SECRET_HEADER), await request.json()))
        return aiohttp.web.Response()

    app = aiohttp.web.Application()
    app.router.add_post("/hook", hook)
    runner = aiohttp.web.AppRunner(app)
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, HOST, 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        hook_url = {"url": f"http://{HOST}:{port}/hook", "secret_token": "s3cret"}
        async with aiohttp.ClientSession() as http, http.post(  # the cloud (or a person) sets a webhook
                f"{fake.base_url}{fake.token}/setWebhook", json=hook_url) as r:
            assert (await r.json())["ok"]
        await fake.wait_calls("getUpdates", status=409)
        event_id = await rig.event()
        assert (await rig.settled(event_id, "clip"))["state"] == "sent"  # alerts still go out
        await fake.push_message(CHAT, "/status")  # goes to the webhook, with its secret header
        assert got and got[-1][0] == "s3cret" and got[-1][1]["message"]["text"] == "/status"
        assert fake.webhook is not None and not fake.calls_of("deleteWebhook", None)
        assert rig.notifier.stats.conflicts >= 1
    finally:
        await runner.cleanup()


# -- small parts -----------------------------------------------------------------------------------------

def test_the_pacer_keeps_one_message_a_second_per_chat() -> None:
    now = [100.0]
    pacer = ChatPacer(1.0, clock=lambda: now[0])
    assert pacer.reserve(CHAT) == 0
    assert pacer.reserve(CHAT) == 1.0  # the second message waits for the next slot
    assert pacer.reserve(OTHER) == 0  # other chats are not held up
    now[0] = 105.0
    assert pacer.reserve(CHAT) == 0


def test_wording_and_parsing() -> None:
    assert m.parse_duration("1h") == 3600 and m.parse_duration("30m") == 1800 and m.parse_duration("45") == 2700
    assert m.parse_duration("soon") is None and m.parse_duration("30d") is None  # over a week
    assert m.parse_button(m.disarm_data()) == ("disarm", None, 3600)
    assert m.parse_button(m.mute_data("porch")) == ("mute", "porch", 3600)
    assert m.parse_button("d:-5") is None and m.parse_button("x:1") is None and m.parse_button(None) is None
    assert len(m.mute_data("a" * 40).encode()) <= 64  # Telegram's limit on callback data
    assert len(m.started_caption("x" * 2000, 0, ["motion"])) <= m.MAX_CAPTION


def test_the_config_section_refuses_plain_http_off_this_machine() -> None:
    assert TelegramConfig(api_url="http://127.0.0.1:9/").base_url == "http://127.0.0.1:9/bot"
    with pytest.raises(ValidationError, match="https"):
        TelegramConfig(api_url="http://api.telegram.org.example")
    with pytest.raises(ValidationError, match="https"):
        TelegramConfig(api_url="http://127.0.0.1.evil.example")
    with pytest.raises(ValidationError, match="BotFather"):
        TelegramConfig(bot_token="not-a-token")
    assert not TelegramConfig(enabled=True).active  # no token, no bot


# -- the CLI ---------------------------------------------------------------------------------------------

async def test_pingwatch_telegram_link_shows_a_deep_link_that_links_the_chat(rig: Rig) -> None:
    import typer
    from typer.testing import CliRunner

    from hub.cli.telegram import telegram_app

    cli = typer.Typer()
    cli.add_typer(telegram_app, name="telegram")
    cfg = rig.tmp / "hub.yaml"
    cfg.write_text(json.dumps({"storage": {"data_dir": str(rig.tmp)}, "telegram": {
        "enabled": True, "bot_token": rig.fake.token, "api_url": rig.fake.url}}))  # JSON is YAML

    def run(*args: str) -> dict:
        result = CliRunner().invoke(cli, ["telegram", *args, "--json", "-c", str(cfg)])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout.strip().splitlines()[-1])

    shown = await asyncio.to_thread(run, "link", "--no-wait")  # its own event loop: asks getMe for the @name
    prefix = "https://t.me/pingwatch_test_bot?start="
    assert shown["status"] == "pending" and shown["link"].startswith(prefix)
    await rig.fake.push_message(CHAT, f"/start {shown['link'][len(prefix):]}")
    assert (await rig.fake.wait_messages(CHAT, 1))[0].text == m.LINKED
    status = await asyncio.to_thread(run, "status")
    assert [c["chat_id"] for c in status["chats"]] == [CHAT]
    assert (await asyncio.to_thread(run, "unlink", str(CHAT)))["unlinked"] is True
    assert rig.notifier.chats.linked() == []
