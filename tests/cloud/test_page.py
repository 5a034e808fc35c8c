"""The cloud page in real headless Chromium against the real API (SQLite only: the page does not care which
database is behind the API, and the live channel's PostgreSQL fan-out is tested in test_live.py), real Azurite
(thumbnails and the clip load from its read SAS URLs under the page's CSP).

Log in, see the hub and its state, watch a live event's badge move uploading → queued → processing → done as the
test drives the states through the API and the worker's hooks, play the clip, and log out. Telegram settings: a
chat linked while the QR is shown appears by itself, its cameras and the alert mode are saved, unlink removes it.
A #event=<id> address (Telegram's "Open in timeline") opens that event's player after log-in. Arm/disarm buttons
show "Sent…" and then the hub's answer, or "hub offline" when the command expires. Screenshots go to
artifacts/screenshots/cloud-*.png.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cloud.api.db.schema import telegram_chats, telegram_mutes
from cloud.api.security import new_id
from cloud.api.services.commands import HubCommands
from cloud.api.services.telegram import LinkOutcome, redeem
from tests.cloud.conftest import PASSWORD, ApiFactory, Clip, CloudApi, UserSession
from tests.cloud.test_live import jpeg_b64

SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--no-first-run", "--disable-quic", "--autoplay-policy=no-user-gesture-required", "--disable-dev-shm-usage"]

# The page's CSP forbids eval, which wait_for_function's polling needs: wait on the element's own events.
LOADED_JS = """(sel) => new Promise((resolve, reject) => {
  const v = document.querySelector(sel);
  if (!v) { reject(new Error('no video')); return; }
  const check = () => {
    if (v.error) reject(new Error(`video error ${v.error.code}`));
    else if (v.readyState >= 2) resolve({readyState: v.readyState, width: v.videoWidth, src: v.currentSrc});
  };
  for (const e of ['loadeddata', 'canplay', 'error']) v.addEventListener(e, check);
  check();
})"""

TELEGRAM = {"enabled": True, "bot_token": "123456:page-test-token", "bot_username": "pingwatch_page_bot"}

IMAGE_JS = """(sel) => new Promise((resolve) => {
  const img = document.querySelector(sel);
  if (!img) { resolve(0); return; }
  if (img.complete) { resolve(img.naturalWidth); return; }
  img.addEventListener('load', () => resolve(img.naturalWidth));
  img.addEventListener('error', () => resolve(-1));
})"""


@pytest.mark.browser
@pytest.mark.parametrize("cloud_db_url", ["sqlite"], indirect=True)
async def test_page_login_hub_live_event_playback(api_factory: ApiFactory, mp4_clip: Clip) -> None:
    from playwright.async_api import async_playwright

    # Telegram enabled with a fixed bot name: creating a link needs no call to Telegram (the notifier, which
    # talks to it, is another process and not started here).
    api = await api_factory(telegram={"enabled": True, "bot_token": "123456:page-test-token",
                                      "bot_username": "pingwatch_page_bot"})
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    hub = await api.hub(cameras=("front", "yard"))
    r = await api.http.put("/api/v1/hub/state", headers=hub.headers, json={
        "armed": True, "cameras": [{"id": "front", "online": True}, {"id": "yard", "online": False}]})
    assert r.status_code == 204, r.text
    r = await api.http.put(f"/api/v1/cameras/{hub.cameras['front']}/prompt", headers=hub.user.headers,
                           json={"prompt": "Tell me when a person comes to the door at night", "enabled": True})
    assert r.status_code == 200, r.text
    # An older event, done, so the timeline is not empty when the page opens.
    old = await api.uploaded_event(hub, mp4_clip, camera_id="yard")
    assert (await api.finalize(hub, old["id"])).status_code == 200
    assert await api.services.worker.start(old["id"]) is not None
    assert await api.services.worker.complete(old["id"], {"cat": 0.7}, {"text": "A cat crosses the yard."})

    problems: list[str] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=shutil.which("chromium"), headless=True, args=ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("console", lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None)

            await page.goto(api.base_url + "/")
            await page.fill("#email", hub.user.email)
            await page.fill("#password", "wrong password")
            await page.click("button[type=submit]")
            await page.wait_for_selector("text=Wrong email or password.")
            await page.fill("#password", PASSWORD)
            await page.click("button[type=submit]")
            await page.wait_for_selector(".conn[data-state=open]")
            hub_card = page.locator(f"article.hub[data-hub-id='{hub.hub_id}']")
            await hub_card.wait_for()
            assert await hub_card.locator(".armed-state").inner_text() == "Armed"
            assert "Front" in await hub_card.inner_text() and "Yard" in await hub_card.inner_text()
            await page.wait_for_selector(f"li[data-event-id='{old['id']}'] .badge[data-state=done]")
            await page.wait_for_selector("#credits-used")
            assert await page.locator("#credits .chart .day").count() == 30

            # The hub reports an event start with its snapshot: a card appears at once.
            r = await api.http.post("/api/v1/hub/event-starts", headers=hub.headers, json={
                "event_id": "ev-live", "camera_id": "front", "started_at": datetime.now(UTC).isoformat(),
                "trigger": "motion", "snapshot_jpeg": jpeg_b64()})
            assert r.status_code == 201, r.text
            await page.wait_for_selector("li.starting[data-hub-event-id='ev-live']")

            # ... then its clip, moved through every state; the badge follows each step.
            ev = await api.uploaded_event(hub, mp4_clip, event_id="ev-live", camera_id="front")
            card = f"li[data-event-id='{ev['id']}']"
            await page.wait_for_selector(f"{card} .badge[data-state=uploading]")
            assert await page.locator("li.starting").count() == 0  # the start card became the event's
            assert await page.evaluate(IMAGE_JS, f"{card} .thumb img") > 0  # the start's snapshot, via SAS
            assert (await api.finalize(hub, ev["id"])).status_code == 200
            await page.wait_for_selector(f"{card} .badge[data-state=queued]")
            assert await api.services.worker.start(ev["id"]) is not None
            await page.wait_for_selector(f"{card} .badge[data-state=processing]")
            await page.screenshot(path=str(SCREENSHOTS / "cloud-processing.png"))
            assert await api.services.worker.complete(ev["id"], {"person": 0.93},
                                                      {"text": "A person walks up to the front door."})
            await page.wait_for_selector(f"{card} .badge[data-state=done]")
            assert "A person walks up to the front door." in await page.locator(card).inner_text()
            assert "person" in await page.locator(f"{card} .chips").inner_text()

            # The hub disarms itself: the page shows it live.
            r = await api.http.put("/api/v1/hub/state", headers=hub.headers, json={
                "armed": False, "cameras": [{"id": "front", "online": True}, {"id": "yard", "online": True}]})
            assert r.status_code == 204, r.text
            await page.wait_for_selector(f"article.hub[data-hub-id='{hub.hub_id}'] .armed-state:text('Disarmed')")
            await page.screenshot(path=str(SCREENSHOTS / "cloud-timeline.png"))

            # Filters: by state, then back.
            await page.select_option("select[name=state]", "done")
            await page.wait_for_selector(f"{card} .badge[data-state=done]")
            await page.select_option("select[name=camera_id]", hub.cameras["yard"])
            await page.wait_for_selector(f"{card}", state="detached")
            await page.click("text=Clear")
            await page.wait_for_selector(card)

            # Playback through the short read SAS (a 3 s clip).
            await page.click(f"{card} .ev-main")
            await page.wait_for_selector("dialog#player video")
            played: dict[str, Any] = await asyncio.wait_for(page.evaluate(LOADED_JS, "#clip"), 20)
            assert played["readyState"] >= 2 and played["width"] == 64
            await page.screenshot(path=str(SCREENSHOTS / "cloud-player.png"))
            await page.click("dialog#player >> text=Close")

            # Telegram: the link's QR (server SVG shown as an image, never as markup) and its deep link.
            await page.click("#tg-link")
            await page.wait_for_selector("#telegram img.qr")
            assert await page.evaluate(IMAGE_JS, "#telegram img.qr") > 0
            href = await page.get_attribute("#tg-deep", "href")
            assert href and href.startswith("https://t.me/pingwatch_page_bot?start=")

            await page.set_viewport_size({"width": 390, "height": 844})
            await page.evaluate("() => window.scrollTo(0, 0)")
            await page.screenshot(path=str(SCREENSHOTS / "cloud-phone.png"), full_page=True)

            await page.click("#logout")
            await page.wait_for_selector("text=Logged out.")
            assert await page.evaluate("() => sessionStorage.length") == 0
            assert not problems, problems
        finally:
            await browser.close()


# -- helpers for the tests below -------------------------------------------------------------------------------


@asynccontextmanager
async def browser_page(width: int = 1280, height: int = 900) -> AsyncIterator[tuple[Any, list[str]]]:
    """A headless Chromium page; the list collects page errors and CSP violations (each test asserts it empty)."""
    from playwright.async_api import async_playwright

    problems: list[str] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=shutil.which("chromium"), headless=True, args=ARGS)
        try:
            page = await browser.new_page(viewport={"width": width, "height": height})
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("console", lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None)
            yield page, problems
        finally:
            await browser.close()


async def log_in(page: Any, user: UserSession) -> None:
    await page.wait_for_selector("#email")
    await page.fill("#email", user.email)
    await page.fill("#password", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_selector(".conn[data-state=open]")


async def done_event(api: CloudApi, hub: Any, clip: Clip, camera: str = "front",
                     text: str = "A person walks up to the front door.") -> str:
    ev = await api.uploaded_event(hub, clip, camera_id=camera)
    assert (await api.finalize(hub, ev["id"])).status_code == 200
    assert await api.services.worker.start(ev["id"]) is not None
    assert await api.services.worker.complete(ev["id"], {"person": 0.9}, {"text": text})
    return str(ev["id"])


# -- Telegram settings -----------------------------------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.parametrize("cloud_db_url", ["sqlite"], indirect=True)
async def test_page_telegram_chats_subscriptions_mode_unlink(api_factory: ApiFactory) -> None:
    api = await api_factory(telegram=TELEGRAM)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    hub = await api.hub(cameras=("front", "yard"))
    user = hub.user
    front, yard = hub.cameras["front"], hub.cameras["yard"]

    async with browser_page() as (page, problems):
        await page.goto(api.base_url + "/")
        await log_in(page, user)
        await page.wait_for_selector("#tg-no-chats")
        assert await page.is_checked("#tg-mode-all")  # the default

        # Link a chat: the QR's deep link carries the one-time token; "pressing Start" is the bot's redeem of it
        # (the notifier's own code path), with a mute the chat set, in one transaction.
        await page.click("#tg-link")
        await page.wait_for_selector("#telegram img.qr")
        await page.wait_for_selector("#tg-waiting")
        href = await page.get_attribute("#tg-deep", "href")
        assert href is not None
        token = parse_qs(urlsplit(href).query)["start"][0]
        muted_until = api.clock() + timedelta(hours=1)

        def press_start(conn: Connection) -> LinkOutcome:
            outcome = redeem(conn, token, 424242, "Family group", api.clock())
            row_id = conn.execute(sa.select(telegram_chats.c.id).where(telegram_chats.c.chat_id == 424242)).scalar()
            conn.execute(sa.insert(telegram_mutes).values(id=new_id(), chat_row_id=row_id, camera_id=yard,
                                                          until=muted_until))
            return outcome

        assert await api.services.ctx.db.tx(press_start) is LinkOutcome.LINKED
        # No live message says a chat was linked: the page finds it by re-reading the list while the QR is up.
        await page.wait_for_selector("#tg-linked:has-text('Family group')")
        chat = page.locator("article.tg-chat").filter(has_text="Family group")
        await chat.wait_for()
        chat_id = await chat.get_attribute("data-chat-id")
        assert chat_id
        assert await chat.locator("input[name=all]").is_checked()
        assert await chat.locator(f"li[data-camera-id='{yard}'] .tg-muted").count() == 1
        assert await chat.locator(f"li[data-camera-id='{front}'] .tg-muted").count() == 0
        await page.locator("#telegram").screenshot(path=str(SCREENSHOTS / "cloud-telegram.png"))

        # Per-camera subscriptions: not all cameras, then not Front either.
        def put_cameras(r: Any) -> bool:
            return r.request.method == "PUT" and r.url.endswith(f"/telegram/chats/{chat_id}/cameras")

        async with page.expect_response(put_cameras) as first:
            await chat.locator("input[name=all]").uncheck()
        assert (await first.value).status == 200
        async with page.expect_response(put_cameras) as second:
            await page.locator(f"article.tg-chat[data-chat-id='{chat_id}'] input[value='{front}']").uncheck()
        assert (await second.value).status == 200
        r = await api.http.get("/api/v1/telegram/chats", headers=user.headers)
        got = r.json()["chats"][0]
        assert got["all_cameras"] is False
        assert {c["id"]: c["subscribed"] for c in got["cameras"]} == {front: False, yard: True}

        # The alert mode: "matches" is saved and still chosen after a reload.
        async with page.expect_response(lambda r: r.request.method == "PUT"
                                        and r.url.endswith("/telegram/settings")) as saved:
            await page.click("label:has(#tg-mode-matches)")
        assert (await saved.value).status == 200
        await page.wait_for_selector("#tg-mode .tg-mode-state:text('Saved.')")
        r = await api.http.get("/api/v1/telegram/settings", headers=user.headers)
        assert r.json() == {"mode": "matches"}
        await page.reload()
        await page.wait_for_selector(f"article.tg-chat[data-chat-id='{chat_id}']")
        assert await page.is_checked("#tg-mode-matches") and not await page.is_checked("#tg-mode-all")
        chat = page.locator(f"article.tg-chat[data-chat-id='{chat_id}']")
        assert not await chat.locator(f"input[value='{front}']").is_checked()
        assert await chat.locator(f"input[value='{yard}']").is_checked()
        await page.locator("#telegram").screenshot(path=str(SCREENSHOTS / "cloud-telegram-saved.png"))

        await page.set_viewport_size({"width": 390, "height": 844})
        await page.locator("#telegram").scroll_into_view_if_needed()
        await page.screenshot(path=str(SCREENSHOTS / "cloud-telegram-phone.png"))
        await page.set_viewport_size({"width": 1280, "height": 900})

        # Unlink, with a second press to confirm.
        await chat.locator(".tg-unlink").click()
        await chat.locator(".tg-unlink-yes").click()
        await page.wait_for_selector("#tg-no-chats")
        r = await api.http.get("/api/v1/telegram/chats", headers=user.headers)
        assert r.json()["chats"] == []
        assert not problems, problems


# -- a link to one event ---------------------------------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.parametrize("cloud_db_url", ["sqlite"], indirect=True)
async def test_page_event_link_opens_player_after_login(api_factory: ApiFactory, mp4_clip: Clip) -> None:
    api = await api_factory()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    hub = await api.hub(cameras=("front",))
    wanted = await done_event(api, hub, mp4_clip, text="A courier leaves a parcel.")
    other = await done_event(api, hub, mp4_clip, text="A cat sits on the step.")
    stranger = await api.hub(cameras=("front",))  # another account
    theirs = await done_event(api, stranger, mp4_clip)

    async with browser_page() as (page, problems):
        # Not logged in: the log-in comes first, then the event opens.
        await page.goto(f"{api.base_url}/#event={wanted}")
        await log_in(page, hub.user)
        await page.wait_for_selector(f"dialog#player[open][data-event-id='{wanted}'] video")
        played: dict[str, Any] = await asyncio.wait_for(page.evaluate(LOADED_JS, "#clip"), 20)
        assert played["readyState"] >= 2 and played["width"] == 64
        title = await page.locator("dialog#player h2").inner_text()
        assert title.startswith("Front · "), title
        assert "A courier leaves a parcel." in await page.locator("dialog#player").inner_text()
        await page.wait_for_selector(f"li.event.target[data-event-id='{wanted}']")
        assert await page.locator("li.event.target").count() == 1
        await page.screenshot(path=str(SCREENSHOTS / "cloud-event-link.png"))
        await page.click("dialog#player >> text=Close")
        assert await page.evaluate("() => location.hash") == ""  # handled once

        # Another link while the page is open (hashchange), to an event the filtered list does not show: its card
        # is fetched and picked out all the same.
        await page.select_option("select[name=state]", "failed")
        await page.wait_for_selector(f"li[data-event-id='{wanted}']", state="detached")
        await page.evaluate("(id) => { location.hash = 'event=' + id; }", other)
        await page.wait_for_selector(f"dialog#player[open][data-event-id='{other}']")
        await page.wait_for_selector(f"li.event.target[data-event-id='{other}']")
        await page.click("dialog#player >> text=Close")
        await page.click("text=Clear")
        await page.wait_for_selector(f"li[data-event-id='{wanted}']")

        # Another account's event, an unknown id, a malformed one: the same plain note, no player.
        note = "This event is not in your timeline (deleted, or another account's)"
        for bad in (theirs, "0b0f4a52-3c1e-4a8e-9a55-6f1f9d7f0c11", "not-an-id-123", "..%2F..%2Fetc"):
            await page.evaluate("() => document.getElementById('event-note').hidden = true")
            await page.evaluate("(id) => { location.hash = 'event=' + id; }", bad)
            await page.wait_for_selector(f"#event-note:not([hidden]):has-text(\"{note}\")")
            assert not await page.locator("dialog#player").evaluate("(d) => d.open")
            assert await page.locator("li.event.target").count() == 0
        await page.screenshot(path=str(SCREENSHOTS / "cloud-event-unknown.png"))
        assert await page.locator(".toast.error").count() == 0
        assert not problems, problems


# -- arm / disarm ------------------------------------------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.parametrize("cloud_db_url", ["sqlite"], indirect=True)
async def test_page_disarm_button_shows_sent_then_the_hubs_answer(api_factory: ApiFactory) -> None:
    api = await api_factory(telegram={"command_timeout_s": 30})
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    hub = await api.hub(cameras=("front",))
    r = await api.http.put("/api/v1/hub/state", headers=hub.headers,
                           json={"armed": True, "cameras": [{"id": "front", "online": True}]})
    assert r.status_code == 204, r.text

    async with browser_page() as (page, problems):
        await page.goto(api.base_url + "/")
        await log_in(page, hub.user)
        card = page.locator(f"article.hub[data-hub-id='{hub.hub_id}']")
        await card.locator(".armed-state:text('Armed')").wait_for()

        await card.locator("button[data-cmd=disarm-1h]").click()
        # "Sent…" until the hub answers (it has not even fetched the command yet).
        await card.locator("button[data-cmd=disarm-1h]:text('Sent…')").wait_for()
        status = card.locator(".cmd-status[data-state=sent]")
        await status.wait_for()
        assert await status.inner_text() == "Disarm 1 h: sent…"
        await card.screenshot(path=str(SCREENSHOTS / "cloud-command-sent.png"))
        command_id = await status.get_attribute("data-command-id")
        assert command_id
        r = await api.http.get(f"/api/v1/hubs/{hub.hub_id}/commands/{command_id}", headers=hub.user.headers)
        assert r.status_code == 200 and r.json()["state"] == "pending", r.text
        assert r.json()["kind"] == "disarm" and r.json()["args"] == {"for_s": 3600}

        # The hub fetches it, disarms, answers; the page shows the answer.
        r = await api.http.get("/api/v1/hub/commands", params={"wait_s": 0}, headers=hub.headers)
        assert [c["id"] for c in r.json()["commands"]] == [command_id]
        r = await api.http.post(f"/api/v1/hub/commands/{command_id}/result", headers=hub.headers,
                                json={"ok": True, "message": "disarmed for 1 h"})
        assert r.status_code == 204, r.text
        done = card.locator(".cmd-status[data-state=done]")
        await done.wait_for()
        assert await done.inner_text() == "Disarm 1 h: done – disarmed for 1 h"
        assert await card.locator("button[data-cmd=disarm-1h]").inner_text() == "Disarm 1 h"
        r = await api.http.put("/api/v1/hub/state", headers=hub.headers, json={
            "armed": False, "disarmed_until": (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
            "cameras": [{"id": "front", "online": True}]})
        assert r.status_code == 204, r.text
        await card.locator(".armed-state:text('Disarmed')").wait_for()
        await page.screenshot(path=str(SCREENSHOTS / "cloud-command-done.png"))

        # Arm while the hub is away: it never fetches the command, which expires as "hub offline".
        await card.locator("button[data-cmd=arm]").click()
        await card.locator(".cmd-status[data-state=sent]").wait_for()
        api.clock.advance(seconds=31)
        assert await HubCommands(api.services.ctx).expire_due() == 1
        expired = card.locator(".cmd-status[data-state=expired]")
        await expired.wait_for()
        assert await expired.inner_text() == "The hub is offline; nothing changed"
        assert await card.locator("button[data-cmd=arm]").inner_text() == "Arm"
        await card.screenshot(path=str(SCREENSHOTS / "cloud-command-offline.png"))
        assert not problems, problems
