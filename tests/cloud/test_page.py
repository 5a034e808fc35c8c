"""The cloud page in real headless Chromium against the real API (SQLite only: the page does not care which
database is behind the API, and the live channel's PostgreSQL fan-out is tested in test_live.py), real Azurite
(thumbnails and the clip load from its read SAS URLs under the page's CSP).

Log in, see the hub and its state, watch a live event's badge move uploading → queued → processing → done as the
test drives the states through the API and the worker's hooks, play the clip, and log out. Screenshots go to
artifacts/screenshots/cloud-*.png.
"""

from __future__ import annotations

import asyncio
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.cloud.conftest import PASSWORD, ApiFactory, Clip
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
