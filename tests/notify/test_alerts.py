"""The cloud's Telegram alert in stages, delivered once: the photo at the start, the clip as its reply, the
caption edited with the analysis; failures (429, 413, 5xx) handled; nothing sent twice on redelivery or
restart; mode "matches". Real API, database (both engines), Azurite; the fake Bot API."""

from __future__ import annotations

import uuid

import sqlalchemy as sa

from cloud.api.changes import latest_id, read_after
from cloud.api.db.schema import telegram_cursor
from cloud.notify import planner, store
from tests.cloud.conftest import Clip
from tests.notify.conftest import Rig, jpeg, until


def _hev() -> str:
    return f"ev-{uuid.uuid4().hex[:10]}"


async def _staged(rig: Rig, clip: Clip, snapshot: bytes) -> tuple[str, str]:
    hev = _hev()
    await rig.start_event(hev, snapshot)
    photo = (await rig.fake.wait_messages(rig.chat, 2))[1]  # [0] is the "Linked" answer
    assert photo.kind == "photo" and photo.file == snapshot
    event_id = await rig.queued(hev, clip)
    await rig.fake.wait_messages(rig.chat, 3)
    await rig.done(event_id)
    await rig.settled(hev, "summary")
    return hev, event_id


async def test_staged_alert_photo_then_clip_then_summary_edit(rig: Rig, mp4_clip: Clip):
    await rig.link()
    snapshot = jpeg()
    hev, event_id = await _staged(rig, mp4_clip, snapshot)
    _, photo, video = rig.messages()
    assert photo.method == "sendPhoto" and video.method == "sendVideo"
    assert video.reply_to == photo.message_id and video.file == mp4_clip.data
    # The first caption said "analysing…"; the edit says what the worker found.
    assert photo.edits and "analysing" not in (photo.text or "")
    assert "Front" in (photo.text or "") and "person" in (photo.text or "")
    assert "A person walked up to Front." in (photo.text or "")
    texts = [b[0] for b in photo.buttons()]
    assert any("Disarm" in t for t in texts) and any("Mute" in t for t in texts)
    url_buttons = [b for row in photo.reply_markup["inline_keyboard"] for b in row if b.get("url")]
    assert url_buttons and url_buttons[0]["url"].endswith(f"#event={event_id}")
    first = rig.fake.calls_of("sendPhoto")[0].params["caption"]
    assert "analysing" in first
    states = {(r.stage, r.state) for r in await rig.rows(hev)}
    assert states == {("started", "sent"), ("clip", "sent"), ("summary", "sent")}


async def test_redelivered_changes_and_a_restart_send_nothing_twice(rig: Rig, mp4_clip: Clip):
    await rig.link()
    hev, _ = await _staged(rig, mp4_clip, jpeg())
    sent_before = len(rig.messages())
    calls_before = len(rig.fake.calls)
    ctx = rig.api.services.ctx
    # The same changes planned again (as a second delivery would): no row is added.
    changes = await ctx.db.read(lambda conn: [c for c in read_after(conn, 0, account_id=rig.user.account_id)])
    assert any(c.kind == "event.started" for c in changes)
    now = ctx.clock()
    added = await ctx.db.tx(lambda conn: sum(planner.plan(conn, c, now) for c in changes))
    assert added == 0
    # And a restarted notifier whose cursor went back to the start reads every change again: nothing is sent.
    await rig.notifier.stop()
    await ctx.db.tx(lambda conn: conn.execute(sa.update(telegram_cursor).values(change_id=0)))
    again = rig.new_notifier()
    await again.start()
    await until(lambda: _cursor_at_least(rig, changes[-1].id), what="cursor past the replayed changes")
    # A round trip through the restarted notifier: it is running, and has read the replayed changes.
    await rig.link(rig.chat, expect="This chat is already linked")
    assert len(rig.messages()) == sent_before + 1  # the answer to /start only
    sends = [c for c in rig.fake.calls[calls_before:] if c.method in ("sendPhoto", "sendVideo",
                                                                        "editMessageCaption")]
    assert sends == []
    assert len([r for r in await rig.rows(hev)]) == 3


async def _cursor_at_least(rig: Rig, change_id: int) -> bool:
    value = await rig.api.services.ctx.db.read(
        lambda conn: conn.execute(sa.select(telegram_cursor.c.change_id)).scalar())
    return value is not None and value >= change_id


async def test_429_is_honoured_and_the_clip_waits_for_the_photo(rig: Rig, mp4_clip: Clip):
    await rig.link()
    rig.fake.fail("sendPhoto", 429, retry_after=1)
    hev = _hev()
    await rig.start_event(hev, jpeg())
    await rig.fake.wait_calls("sendPhoto", 1, status=429)
    event_id = await rig.queued(hev, mp4_clip)  # the clip is there before the photo went out
    _, photo, video = await rig.fake.wait_messages(rig.chat, 3)
    assert (photo.kind, video.kind) == ("photo", "video")
    assert video.reply_to == photo.message_id
    assert rig.notifier.stats.retry_after_s == [1.0]
    assert [c.status for c in rig.fake.calls if c.method == "sendPhoto"] == [429, 200]
    await rig.done(event_id)
    assert (await rig.settled(hev, "summary")).state == "sent"


async def test_413_clip_falls_back_to_a_text_with_the_link(rig: Rig, mp4_clip: Clip):
    await rig.link()
    rig.fake.fail("sendVideo", 413)
    hev = _hev()
    await rig.start_event(hev, jpeg())
    event_id = await rig.queued(hev, mp4_clip)
    _, photo, text = await rig.fake.wait_messages(rig.chat, 3)
    assert text.kind == "text" and text.reply_to == photo.message_id
    assert "too large" in (text.text or "") and f"#event={event_id}" in (text.text or "")
    assert rig.notifier.stats.fallbacks == 1
    assert (await rig.settled(hev, "clip")).state == "sent"


async def test_5xx_is_retried_until_it_goes_through(rig: Rig):
    await rig.link()
    rig.fake.fail("sendPhoto", 500, times=2)
    hev = _hev()
    await rig.start_event(hev, jpeg())
    _, photo = await rig.fake.wait_messages(rig.chat, 2)
    assert photo.kind == "photo"
    assert [c.status for c in rig.fake.calls if c.method == "sendPhoto"] == [500, 500, 200]
    row = await rig.settled(hev, "started")
    assert row.state == "sent" and row.tries == 3


async def test_an_old_hub_without_a_start_report_gets_one_message(rig: Rig, mp4_clip: Clip):
    await rig.link()
    hev = _hev()
    event_id = await rig.queued(hev, mp4_clip)
    _, video = await rig.fake.wait_messages(rig.chat, 2)
    assert video.kind == "video" and video.reply_to is None
    assert "Front" in (video.text or "") and any("Disarm" in t for t, _ in video.buttons())
    await rig.done(event_id)
    await rig.settled(hev, "summary")
    assert "A person walked up to Front." in (video.text or "")
    assert len(rig.messages()) == 2


async def test_matches_mode_sends_one_message_only_for_a_match(rig: Rig, mp4_clip: Clip):
    await rig.link()
    r = await rig.http.put("/api/v1/telegram/settings", json={"mode": "matches"}, headers=rig.user.headers)
    assert r.status_code == 200 and r.json() == {"mode": "matches"}
    no, yes = _hev(), _hev()
    await rig.start_event(no, jpeg())
    await rig.done(await rig.queued(no, mp4_clip), notify=False, text="A cat was at Front.")
    await rig.start_event(yes, jpeg())
    await rig.done(await rig.queued(yes, mp4_clip), notify=True)
    _, msg = await rig.fake.wait_messages(rig.chat, 2)
    assert "Why: person (0.91) at 10:00" in (msg.text or "") and "A person walked up" in (msg.text or "")
    await rig.settled(yes, "match")
    # A later round trip: by now anything for the non-match would have gone out.
    await rig.link(rig.chat, expect="This chat is already linked")
    assert [m.text for m in rig.messages() if "cat" in (m.text or "").lower()] == []
    assert await rig.rows(no) == []
    assert [r.stage for r in await rig.rows(yes)] == ["match"]


async def test_a_chat_unlinked_mid_event_gets_nothing_more(rig: Rig, mp4_clip: Clip):
    await rig.link()
    hev = _hev()
    await rig.start_event(hev, jpeg())
    await rig.settled(hev, "started")
    chats = (await rig.http.get("/api/v1/telegram/chats", headers=rig.user.headers)).json()["chats"]
    r = await rig.http.delete(f"/api/v1/telegram/chats/{chats[0]['id']}", headers=rig.user.headers)
    assert r.status_code == 204, r.text
    event_id = await rig.queued(hev, mp4_clip)
    await rig.done(event_id)
    ctx = rig.api.services.ctx
    newest = await ctx.db.read(latest_id)

    async def planned() -> bool | None:
        cursor = await ctx.db.read(store.load_cursor)
        return (cursor or 0) >= newest or None

    await until(planned, what="the notifier planned the event's last change")
    assert [m.method for m in rig.messages()] == ["sendMessage", "sendPhoto"]  # "Linked", then the photo only
    assert {(r.stage, r.state) for r in await rig.rows(hev)} == {("started", "sent")}
