"""Linking a chat, the webhook (secret, duplicate update ids) and the buttons that act on the hub: the real API
on both engines, the notifier in-process, the fake Bot API."""

from __future__ import annotations

import uuid

import httpx
import sqlalchemy as sa

from cloud.api.db.schema import hub_commands, telegram_updates
from tests.harness.telegram import SECRET_HEADER
from tests.notify.conftest import Rig, jpeg, new_chat, until

SECRET = "s3cret-for-the-webhook_0123456789"


async def _link_token(rig: Rig) -> dict:
    r = await rig.http.post("/api/v1/telegram/links", headers=rig.user.headers)
    assert r.status_code == 201, r.text
    return r.json()


async def _answer(rig: Rig, chat: int, text: str) -> str:
    before = len(rig.messages(chat))
    await rig.fake.push_message(chat, text)
    return (await rig.fake.wait_messages(chat, before + 1))[-1].text or ""


async def test_start_links_once_and_refuses_wrong_expired_and_reused_tokens(rig: Rig):
    link = await _link_token(rig)
    assert link["deep_link"] == f"https://t.me/{rig.fake.bot_username}?start={link['token']}"
    assert link["qr_svg"].lstrip().startswith("<?xml") and "<svg" in link["qr_svg"]
    assert (await _answer(rig, rig.chat, "/start not-a-real-token")).startswith("This link is not valid")
    assert (await _answer(rig, rig.chat, "/status")).startswith("This chat is not linked")
    assert (await _answer(rig, rig.chat, f"/start {link['token']}")).startswith("✅ Linked")
    assert (await _answer(rig, rig.chat, f"/start {link['token']}")).startswith("This chat is already linked")
    other = new_chat()
    assert (await _answer(rig, other, f"/start {link['token']}")).startswith("This link is not valid")
    expired = await _link_token(rig)
    rig.api.clock.advance(seconds=rig.api.config.telegram.link_ttl_s + 1)
    assert (await _answer(rig, other, f"/start {expired['token']}")).startswith("This link has expired")
    r = await rig.http.get("/api/v1/telegram/chats", headers=rig.user.headers)
    chats = r.json()["chats"]
    assert [c["chat_id"] for c in chats] == [rig.chat]
    assert chats[0]["all_cameras"] and [c["name"] for c in chats[0]["cameras"]] == ["Front"]
    # Another account cannot see or unlink it; the owner can, and the chat is then refused.
    stranger = await rig.api.account()
    r = await rig.http.delete(f"/api/v1/telegram/chats/{chats[0]['id']}", headers=stranger.headers)
    assert r.status_code == 404 and r.json()["reason"] == "not_found"
    r = await rig.http.delete(f"/api/v1/telegram/chats/{chats[0]['id']}", headers=rig.user.headers)
    assert r.status_code == 204
    assert (await _answer(rig, rig.chat, "/status")).startswith("This chat is not linked")


async def test_webhook_checks_the_secret_and_acts_once_per_update_id(rig_factory, mp4_clip):
    rig = await rig_factory(start=False, mode="webhook", webhook_secret=SECRET)
    rig.api.config.server.public_url = rig.api.base_url  # the fake delivers to 127.0.0.1 only
    await rig.notifier.start()
    assert rig.fake.webhook == {"url": f"{rig.api.base_url}/api/v1/telegram/webhook", "secret_token": SECRET}
    assert rig.fake.calls_of("deleteWebhook", status=None) == []
    link = await _link_token(rig)
    forged = {"update_id": 900001, "message": {"message_id": 1, "date": 0, "text": f"/start {link['token']}",
                                               "chat": {"id": rig.chat, "type": "private"},
                                               "entities": [{"type": "bot_command", "offset": 0, "length": 6}]}}
    async with httpx.AsyncClient(base_url=rig.api.base_url) as http:
        for headers in ({}, {SECRET_HEADER: "wrong-secret-wrong-secret"}):
            r = await http.post("/api/v1/telegram/webhook", json=forged, headers=headers)
            assert r.status_code == 401 and r.json()["reason"] == "bad_secret"
        # With the secret, a body that is not a Telegram update is a 400 (Telegram would retry a 500 for ever).
        good = {SECRET_HEADER: SECRET, "Content-Type": "application/json"}
        for body in (b'{"update_id": 900002, "x": NaN}', b"[" * 100000, b'{"update_id": "1"}', b"\xff\xfe"):
            r = await http.post("/api/v1/telegram/webhook", content=body, headers=good)
            assert r.status_code == 400, (body[:30], r.text)
    stored = await rig.api.services.ctx.db.read(lambda conn: conn.execute(
        sa.select(telegram_updates.c.update_id).where(telegram_updates.c.update_id == 900001)).all())
    assert stored == []  # refused before anything was kept
    # Through the fake's webhook (right secret): linked; the same update again changes nothing.
    uid = await rig.fake.push_message(rig.chat, f"/start {link['token']}")
    await rig.fake.wait_messages(rig.chat, 1)
    await rig.fake.push_message(rig.chat, f"/start {link['token']}", update_id=uid)
    await rig.fake.push_message(rig.chat, "/help")
    sent = await rig.fake.wait_messages(rig.chat, 2)
    assert sent[0].text.startswith("✅ Linked") and sent[1].text.startswith("ping-watch alerts")
    assert [s for _, s in rig.fake.webhook_deliveries] == [200, 200, 200]
    assert len(rig.messages()) == 2
    # Polling is refused while the webhook is set; the notifier never deletes it.
    assert rig.fake.calls_of("getUpdates", status=None) == []


async def test_disarm_button_creates_one_hub_command_and_reports_the_outcome(rig: Rig):
    await rig.link()
    hev = f"ev-{uuid.uuid4().hex[:10]}"
    await rig.start_event(hev, jpeg())
    _, photo = await rig.fake.wait_messages(rig.chat, 2)
    qid = await rig.fake.press(photo, button="Disarm")
    answer = await rig.fake.wait_answer(qid)
    assert answer["text"] == "Sent to the hub…"
    ctx = rig.api.services.ctx
    cmds = await ctx.db.read(lambda conn: conn.execute(
        sa.select(hub_commands).where(hub_commands.c.hub_id == rig.hub.hub_id)).all())
    assert [(c.kind, c.args) for c in cmds] == [("disarm", {"for_s": 3600})]
    # The same press delivered again (Telegram retried) acts once.
    await rig.fake.press(photo, button="Disarm", query_id="again", update_id=await _last_update(rig))
    await rig.link(rig.chat, expect="This chat is already linked")  # a round trip: the redelivery was handled
    assert len(await ctx.db.read(lambda conn: conn.execute(
        sa.select(hub_commands).where(hub_commands.c.hub_id == rig.hub.hub_id)).all())) == 1
    # The hub fetches it and reports: the chat is told, as a reply to the alert.
    r = await rig.http.get("/api/v1/hub/commands", params={"wait_s": 0}, headers=rig.hub.headers)
    (cmd,) = r.json()["commands"]
    r = await rig.http.post(f"/api/v1/hub/commands/{cmd['id']}/result", headers=rig.hub.headers,
                            json={"ok": True, "message": ""})
    assert r.status_code == 204, r.text
    outcome = (await rig.fake.wait_messages(rig.chat, 4))[-1]  # linked, photo, "already linked", outcome
    assert outcome.text.startswith("💤 Disarmed for 1 h") and outcome.reply_to == photo.message_id
    # A forged button naming another account's hub: answered, nothing created there.
    other = await rig.api.hub()
    qid = await rig.fake.press(photo, data=f"d:{other.hub_id}:3600")
    assert (await rig.fake.wait_answer(qid))["text"] == "no such hub"
    assert await ctx.db.read(lambda conn: conn.execute(
        sa.select(hub_commands).where(hub_commands.c.hub_id == other.hub_id)).all()) == []


async def _last_update(rig: Rig) -> int:
    return int(await rig.api.services.ctx.db.read(lambda conn: conn.execute(
        sa.select(sa.func.max(telegram_updates.c.update_id))).scalar()))


async def test_mute_button_skips_the_next_alert_in_that_chat_only(rig: Rig):
    await rig.link()
    second = new_chat()
    await rig.link(second)
    await rig.start_event(f"ev-{uuid.uuid4().hex[:10]}", jpeg())
    _, photo = await rig.fake.wait_messages(rig.chat, 2)
    await rig.fake.wait_messages(second, 2)
    qid = await rig.fake.press(photo, button="Mute")
    assert "muted in this chat" in (await rig.fake.wait_answer(qid))["text"]
    hev = f"ev-{uuid.uuid4().hex[:10]}"
    await rig.start_event(hev, jpeg(120))
    await rig.fake.wait_messages(second, 3)
    assert (await rig.settled(hev, "started")).state == "skipped"
    assert len(rig.messages()) == 2


async def test_a_chat_that_blocked_the_bot_is_unlinked(rig: Rig):
    await rig.link()
    rig.fake.fail("sendPhoto", 403, description="Forbidden: bot was blocked by the user")
    hev = f"ev-{uuid.uuid4().hex[:10]}"
    await rig.start_event(hev, jpeg())
    row = await rig.settled(hev, "started")
    assert row.state == "failed" and "blocked" in row.last_error

    async def unlinked() -> bool:
        r = await rig.http.get("/api/v1/telegram/chats", headers=rig.user.headers)
        return r.json()["chats"] == []

    await until(unlinked, what="chat unlinked")


async def test_a_command_that_waited_while_the_notifier_was_down_does_nothing(rig: Rig):
    await rig.link()
    rig.api.clock.advance(minutes=5)  # the command below was sent five minutes before the notifier reads it
    before = len(rig.fake.sent_to(rig.chat))
    await rig.fake.push_message(rig.chat, "/disarm 1h")
    reply = (await rig.fake.wait_messages(rig.chat, before + 1))[-1]
    assert reply.text is not None and "offline" in reply.text and "did nothing" in reply.text
    cmds = await rig.api.services.ctx.db.read(lambda conn: conn.execute(
        sa.select(hub_commands).where(hub_commands.c.hub_id == rig.hub.hub_id)).all())
    assert cmds == []
