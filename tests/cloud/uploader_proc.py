"""A hub's uploader in a process of its own, for tests/cloud/test_hub_uploader.py to SIGKILL mid-upload.

    python -m tests.cloud.uploader_proc ROOT API_URL HUB_ID HUB_TOKEN CLIP KBPS

Uses the hub's own Store, outbox and Uploader (as hub/app.py builds them) on ROOT/hub.db, ROOT/clips and
ROOT/uploads, queues one finished event for CLIP and uploads it at KBPS until killed."""

from __future__ import annotations

import asyncio
import shutil
import sys
import time
from pathlib import Path

from hub.bus import Bus
from hub.config import CloudConfig
from hub.store import Store
from hub.upload.link import CloudLink
from hub.upload.uploader import Uploader

EVENT_ID = "ev-killed"


async def main(root: Path, api_url: str, hub_id: str, token: str, clip: Path, kbps: int) -> None:
    clips = root / "clips"
    clips.mkdir(parents=True, exist_ok=True)
    path = clips / f"{EVENT_ID}.mp4"
    shutil.copyfile(clip, path)
    store = Store(root / "hub.db")
    store.ensure_static_camera("front", "Front door", "file")
    start = time.time() - 60
    store.insert_event({"id": EVENT_ID, "camera_id": "front", "triggers": ["motion"], "status": "complete",
                        "start": start, "end": start + 10, "clip_path": str(path), "clip_size": path.stat().st_size,
                        "clip_duration_s": 10.0})
    bus = Bus()
    link = CloudLink(api_url=api_url, hub_id=hub_id, hub_token=token)
    uploader = Uploader(CloudConfig(upload_kbps=kbps), store, bus, clips, root / "uploads", lambda: link)
    await uploader.start()
    event = store.get_event(EVENT_ID)
    bus.publish("event.ended", event=event, camera_id="front", event_id=EVENT_ID)
    print("queued", flush=True)
    await asyncio.Event().wait()  # until SIGKILL


if __name__ == "__main__":
    a = sys.argv[1:]
    asyncio.run(main(Path(a[0]), a[1], a[2], a[3], Path(a[4]), int(a[5])))
