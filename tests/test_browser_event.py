"""End to end with a real phone stand-in: a Chromium fake camera films a walk → one event with a playable clip."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest

from hub.store import Store
from tests import scenes
from tests.harness.media import write_y4m
from tests.hubproc import HubProcess
from tests.test_browser_ingest import stream_camera, write_tone_wav

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    h = HubProcess.create(tmp_path_factory.mktemp("browser_event"),
                          events={"pre_roll_s": 2, "post_roll_s": 2, "cooldown_s": 60})
    h.start()
    yield h
    h.stop()


async def test_walk_in_front_of_a_phone_makes_one_event_with_a_clip(camera_browser, hub, api, tmp_path):
    scene = scenes.person_near(size=(640, 360), fps=15)  # the walk starts 3 s into the 8 s loop
    video = write_y4m(tmp_path / "walk.y4m", [np.dstack([y] * 3) for y in scene.frames], 15)
    browser = await camera_browser(video, write_tone_wav(tmp_path / "tone.wav"), spki=hub.spki)
    context, _page, cid = await stream_camera(browser, hub, api)
    try:
        ended = json.loads(hub.wait_for_log('"msg": "event ended"', timeout=60))
    finally:
        await context.close()
    store = Store(hub.data_dir / "hub.db")
    events = store.list_events(camera_id=cid)
    store.close()
    assert [e["id"] for e in events] == [ended["event_id"]], "one walk, one event (the loop's repeat is in cooldown)"
    ev = events[0]
    assert ev["status"] == "complete" and "motion" in ev["triggers"]
    assert ev["detected_at"] - ev["start"] <= 1.0  # debounce + one detect frame at 5 fps, over WebRTC
    clip = Path(ev["clip_path"])
    assert clip.suffix == ".mp4" and Path(ev["snapshot_path"]).read_bytes()[:2] == b"\xff\xd8"
    with av.open(str(clip)) as c:
        vs = c.streams.video[0]
        assert (vs.codec_context.width, vs.codec_context.height) == (640, 360)
        assert vs.codec_context.name == "h264"
        decoded = sum(1 for _ in c.decode(vs))
        has_audio = bool(c.streams.audio)
    assert decoded >= 15 * 3  # at least pre-roll + activity at 15 fps
    assert has_audio
