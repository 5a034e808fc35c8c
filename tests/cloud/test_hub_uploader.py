"""The hub's uploader against the real cloud API (SQLite and PostgreSQL), a real Azurite and the hub's own
SQLite: an event reaches the cloud once, survives an API that is down, and a refusal stays local with its reason."""

from __future__ import annotations

import asyncio
import math
import time
from pathlib import Path
from typing import Any

import pytest

from hub.bus import Bus
from hub.config import CloudConfig as HubCloudConfig
from hub.store import Store
from hub.upload.link import CloudLink
from hub.upload.uploader import Uploader
from tests.cloud.conftest import ApiFactory, Clip, CloudApi, HubSession
from tests.harness.ports import free_port

TIMEOUT = 30.0


class HubSide:
    """A hub's store with one camera and finished events whose clips are real MP4s, and its uploader."""

    def __init__(self, root: Path, link: CloudLink | None) -> None:
        self.root = root
        self.clips = root / "clips"
        self.clips.mkdir(parents=True)
        self.store = Store(root / "hub.db")
        self.store.ensure_static_camera("front", "Front door", "file")
        self.bus = Bus()
        self.link = link
        self.states = self.bus.subscribe("upload.state", maxsize=1024)
        self.uploader = Uploader(HubCloudConfig(), self.store, self.bus, self.clips, root / "uploads",
                                 lambda: self.link, retry_base_s=0.05)

    def add_event(self, clip: Clip, name: str) -> dict[str, Any]:
        path = self.clips / f"{name}.mp4"
        path.write_bytes(clip.data)
        start = time.time() - 60
        eid = self.store.insert_event({
            "id": name, "camera_id": "front", "triggers": ["motion"], "status": "complete", "start": start,
            "end": start + clip.duration_s, "clip_path": str(path), "clip_size": len(clip.data),
            "clip_duration_s": clip.duration_s, "boxes": [[0.5, 0.1, 0.1, 0.3, 0.4]], "pre_roll_s": 1.0,
        })
        event = self.store.get_event(eid)
        assert event is not None
        return event

    def finish(self, event: dict[str, Any]) -> None:
        """What the recorder does when a clip is finished."""
        self.bus.publish("event.ended", event=event, camera_id=event["camera_id"], event_id=event["id"])

    async def until(self, event_id: str, state: str) -> list[dict[str, Any]]:
        """Every upload.state message for the event up to the first in ``state``."""
        seen: list[dict[str, Any]] = []

        async def wait() -> None:
            while True:
                msg = await self.states.get()
                if msg.data["event_id"] == event_id:
                    seen.append(msg.data)
                    if msg.data["state"] == state:
                        return

        try:
            await asyncio.wait_for(wait(), TIMEOUT)
        except TimeoutError:
            raise AssertionError(f"{event_id} never reached {state!r}; saw {seen}") from None
        return seen

    async def close(self) -> None:
        await self.uploader.stop()
        self.store.close()


def _link(api: CloudApi, hub: HubSession, url: str | None = None) -> CloudLink:
    return CloudLink(api_url=url or api.base_url, hub_id=hub.hub_id, hub_token=hub.token)


async def _cloud_events(api: CloudApi, hub: HubSession) -> list[dict[str, Any]]:
    r = await api.http.get("/api/v1/events", headers=hub.user.headers)
    assert r.status_code == 200, r.text
    return r.json()["events"]


async def test_a_finished_event_reaches_the_cloud_once(api: CloudApi, mp4_clip: Clip, tmp_path: Path) -> None:
    cloud_hub = await api.hub(cameras=())  # the uploader mirrors the hub's cameras itself
    side = HubSide(tmp_path, _link(api, cloud_hub))
    try:
        await side.uploader.start()
        event = side.add_event(mp4_clip, "ev-once")
        side.finish(event)
        side.finish(event)  # at-least-once on the bus: a second delivery must change nothing
        states = [s["state"] for s in await side.until("ev-once", "done")]
        assert states[0] == "pending" and "uploading" in states and "finalizing" in states, states

        cloud = await _cloud_events(api, cloud_hub)
        assert len(cloud) == 1, cloud
        assert cloud[0]["hub_event_id"] == "ev-once" and cloud[0]["state"] == "queued", cloud[0]
        row = side.store.get_event("ev-once")
        assert row is not None and row["upload_status"] == "done" and row["upload_reason"] is None
        r = await api.http.get("/api/v1/account", headers=cloud_hub.user.headers)
        assert r.json()["credits"]["used"] == math.ceil(mp4_clip.duration_s / 10)  # charged once
        assert not list((tmp_path / "uploads").glob("*.json"))  # the journal goes with a finished upload
        assert side.uploader.enqueue_finished(event) is False  # and it is never queued again
    finally:
        await side.close()


async def test_an_api_that_is_down_is_retried_until_it_answers(api: CloudApi, mp4_clip: Clip,
                                                               tmp_path: Path) -> None:
    cloud_hub = await api.hub(cameras=("front",))
    side = HubSide(tmp_path, _link(api, cloud_hub, url=f"http://127.0.0.1:{free_port()}"))  # nothing listens
    try:
        await side.uploader.start()
        event = side.add_event(mp4_clip, "ev-down")
        side.finish(event)
        tries = 0
        while tries < 2:  # it failed, said why and when it tries again, twice
            msg = (await asyncio.wait_for(side.states.get(), TIMEOUT)).data
            if msg["reason"] and "not answering" in msg["reason"]:
                assert msg["state"] == "pending" and msg["retry_in_s"] > 0
                tries += 1
        row = side.store.get_event("ev-down")
        assert row is not None and row["upload_status"] == "pending" and "not answering" in row["upload_reason"]
        assert (side.clips / "ev-down.mp4").exists()  # the clip stays on the hub meanwhile

        side.link = _link(api, cloud_hub)  # the cloud is back
        await side.until("ev-down", "done")
        assert len(await _cloud_events(api, cloud_hub)) == 1
    finally:
        await side.close()


async def test_an_event_the_plan_refuses_stays_local_with_the_reason(api_factory: ApiFactory, mp4_clip: Clip,
                                                                     tmp_path: Path) -> None:
    api = await api_factory(plans={"free": {"monthly_credits": 0}})
    cloud_hub = await api.hub(cameras=("front",))
    side = HubSide(tmp_path, _link(api, cloud_hub))
    try:
        await side.uploader.start()
        side.finish(side.add_event(mp4_clip, "ev-broke"))
        last = (await side.until("ev-broke", "refused"))[-1]
        assert last["refusal"] == "no_credits", last
        row = side.store.get_event("ev-broke")
        assert row is not None and row["upload_status"] == "refused" and "credits" in row["upload_reason"]
        assert (side.clips / "ev-broke.mp4").exists()
        assert side.uploader.outbox.open_count() == 0  # nothing left to retry
        assert await _cloud_events(api, cloud_hub) == []
    finally:
        await side.close()


async def test_a_clip_waiting_for_recovery_is_sent_once_finished_not_refused(api: CloudApi, mp4_clip: Clip,
                                                                            tmp_path: Path) -> None:
    """A disk full at the final remux leaves the complete .part and a `partial` row naming the clip that the next
    start's recovery writes: the upload waits for it (refusing would lose the event for the cloud for good)."""
    from hub.clips import part_path_for

    cloud_hub = await api.hub(cameras=("front",))
    side = HubSide(tmp_path, _link(api, cloud_hub))
    try:
        await side.uploader.start()
        event = side.add_event(mp4_clip, "ev-wait")
        clip = side.clips / "ev-wait.mp4"
        part = part_path_for(clip)
        clip.rename(part)  # what the recorder left: the .part, and the row still naming the clip
        side.store.update_event("ev-wait", status="partial")
        side.finish(side.store.get_event("ev-wait") or event)
        waiting = (await side.until("ev-wait", "pending"))[-1]
        while not waiting.get("reason"):
            waiting = (await side.until("ev-wait", "pending"))[-1]
        assert "waiting to be finished" in waiting["reason"], waiting
        part.rename(clip)  # recovery at the next start finished it
        await side.until("ev-wait", "done")
        assert [e["hub_event_id"] for e in await _cloud_events(api, cloud_hub)] == ["ev-wait"]
    finally:
        await side.close()


async def test_an_unlinked_hub_queues_nothing(mp4_clip: Clip, tmp_path: Path) -> None:
    side = HubSide(tmp_path, None)
    try:
        await side.uploader.start()
        assert side.uploader.enqueue_finished(side.add_event(mp4_clip, "ev-local")) is False
        assert side.uploader.outbox.counts() == {}
        assert side.uploader.status()["linked"] is False
    finally:
        await side.close()


@pytest.mark.parametrize("stored", ["/etc/passwd", "../hub.db", ""])
async def test_a_clip_path_outside_the_clips_folder_is_never_sent(api: CloudApi, mp4_clip: Clip, tmp_path: Path,
                                                                 stored: str) -> None:
    cloud_hub = await api.hub(cameras=("front",))
    side = HubSide(tmp_path, _link(api, cloud_hub))
    try:
        await side.uploader.start()
        event = side.add_event(mp4_clip, "ev-evil")
        side.store.update_event("ev-evil", clip_path=stored or None)
        side.uploader.outbox.enqueue("ev-evil")  # a tampered row that made it into the outbox
        side.uploader._wake.set()
        last = (await side.until(event["id"], "refused"))[-1]
        assert last["refusal"] == "no_clip"
        assert await _cloud_events(api, cloud_hub) == []
    finally:
        await side.close()


async def test_cloud_link_on_the_cli_saves_a_private_link_that_status_uses(api: CloudApi, tmp_path: Path) -> None:
    import json
    import os
    import sys

    user = await api.account()
    cfg = tmp_path / "hub.yaml"
    cfg.write_text(f"storage:\n  data_dir: {tmp_path / 'data'}\n")
    env = {**os.environ, "PINGWATCH_CONFIG": str(cfg)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hub.cli", "cloud", "link", "--url", api.base_url, "--name", "attic", "--json",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        assert proc.stdout is not None
        first = json.loads(await asyncio.wait_for(proc.stdout.readline(), TIMEOUT))
        assert first["status"] == "pending" and first["code"]
        r = await api.http.post("/api/v1/hubs/link", json={"code": first["code"], "name": "Attic"},
                                headers=user.headers)
        assert r.status_code == 201, r.text
        out, errs = await asyncio.wait_for(proc.communicate(), TIMEOUT)
        assert proc.returncode == 0, errs.decode()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    done = json.loads(out.decode().strip().splitlines()[-1])
    assert done["status"] == "linked" and done["hub_id"] == r.json()["id"]
    saved = tmp_path / "data" / "cloud.json"
    assert saved.stat().st_mode & 0o777 == 0o600
    assert json.loads(saved.read_text())["hub_token"]  # the token is kept only here, never printed

    status = await asyncio.create_subprocess_exec(sys.executable, "-m", "hub.cli", "cloud", "status", "--json",
                                                  env=env, stdout=asyncio.subprocess.PIPE)
    info = json.loads((await asyncio.wait_for(status.communicate(), TIMEOUT))[0])
    assert info["linked"] is True and info["reachable"] is True, info
    assert info["credits"]["left"] > 0


def _noisy_clip(path: Path, seconds: int = 10, fps: int = 10) -> Path:
    """A real MP4 of ~2 MB (noise keeps x264 at its bitrate): many blocks at a capped upload rate."""
    import av
    import numpy as np

    rng = np.random.default_rng(7)
    with av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"}) as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt, stream.bit_rate = 320, 240, "yuv420p", 1_600_000
        for i in range(seconds * fps):
            frame = av.VideoFrame.from_ndarray(rng.integers(0, 255, (240, 320, 3), dtype=np.uint8), format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def _staged(journal: Path) -> list[int]:
    import json

    try:
        return list(json.loads(journal.read_text())["staged"])
    except (OSError, ValueError, KeyError):  # not written yet, or caught mid-write
        return []


async def test_a_hub_killed_mid_upload_resumes_where_it_stopped(api: CloudApi, tmp_path: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    """SIGKILL (a power cut) while blocks are on the wire: the restarted hub sends only the blocks its journal
    does not hold, the cloud gets one event with the whole clip, charged once."""
    import hashlib
    import logging
    import sys

    import sqlalchemy as sa

    from cloud.api.db.schema import events
    from hub.config import CloudConfig as HubCloud
    from hub.upload.blob_upload import DEFAULT_BLOCK_SIZE, TokenBucket, effective_block_size

    kbps = 1600  # 200 kB/s: ~10 s for the clip, one block a second
    cloud_hub = await api.hub(cameras=("front",))
    clip = _noisy_clip(tmp_path / "big.mp4")
    size = clip.stat().st_size
    root = tmp_path / "hub"
    journal = root / "uploads" / "ev-killed.json"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.cloud.uploader_proc", str(root), api.base_url, cloud_hub.hub_id,
        cloud_hub.token, str(clip), str(kbps), stdout=asyncio.subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + TIMEOUT
        while len(_staged(journal)) < 2:
            assert proc.returncode is None, "the uploader process died on its own"
            assert time.monotonic() < deadline, "no two blocks staged in time"
            await asyncio.sleep(0.05)  # poll interval of a bounded wait on another process's file
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
    staged = _staged(journal)
    total = -(-size // effective_block_size(DEFAULT_BLOCK_SIZE, TokenBucket(kbps * 125), size))
    assert 2 <= len(staged) < total, (staged, total)

    # The hub starts again on the same data folder, same config.
    caplog.set_level(logging.INFO, logger="hub.upload.uploader")
    store = Store(root / "hub.db")
    bus = Bus()
    states = bus.subscribe("upload.state", maxsize=1024)
    link = _link(api, cloud_hub)
    uploader = Uploader(HubCloud(upload_kbps=kbps), store, bus, root / "clips", root / "uploads", lambda: link,
                        retry_base_s=0.05)
    try:
        await uploader.start()

        async def done() -> None:
            while (await states.get()).data["state"] != "done":
                pass

        await asyncio.wait_for(done(), TIMEOUT)
    finally:
        await uploader.stop()
        store.close()
    [uploaded] = [r for r in caplog.records if r.getMessage() == "event uploaded"]
    resumed, sent = uploaded.blocks_resumed, uploaded.blocks_sent  # type: ignore[attr-defined]
    assert (resumed, sent) == (len(staged), total - len(staged))
    [event] = await _cloud_events(api, cloud_hub)
    assert event["hub_event_id"] == "ev-killed" and event["state"] == "queued"
    blob_name = await api.services.ctx.db.tx(lambda c: c.execute(
        sa.select(events.c.blob_name).where(events.c.hub_id == cloud_hub.hub_id)).scalar_one())
    blob = await api.services.ctx.blobs.read(blob_name)
    assert hashlib.md5(blob).digest() == hashlib.md5(clip.read_bytes()).digest()
    r = await api.http.get("/api/v1/account", headers=cloud_hub.user.headers)
    assert r.json()["credits"]["used"] == 1  # 10 s: one credit, charged once
