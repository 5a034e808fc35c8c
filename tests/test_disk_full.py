"""A disk that fills up mid-clip: the hub keeps running, retention makes room, the log says why."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time

import av
import httpx
import pytest

from hub.store import Store
from tests import scenes
from tests.hubproc import HubProcess
from tests.test_replay import encode_mp4


@pytest.fixture
def small_disk(tmp_path):
    """A real 96 MB filesystem (tmpfs) for the hub's data folder."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs for the disk-full test (needs root): {r.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_full_disk_mid_clip(tmp_path, small_disk):
    scene = scenes.person_near(size=(1280, 720), fps=15)
    source = encode_mp4(tmp_path / "walk.mp4", scene.frames, 15)
    hub = HubProcess.create(tmp_path / "hub", storage={"data_dir": str(small_disk / "data"), "min_free_gb": 0.001},
                            events={"pre_roll_s": 2, "post_roll_s": 2})
    data = small_disk / "data"
    hub.start()  # makes the database and certificate on the small disk
    hub.stop()

    # Old events fill the disk, leaving less room than the coming clip needs.
    store = Store(data / "hub.db")
    store.ensure_static_camera("yard", "Yard", "file")
    old = []
    now = time.time()
    for i in range(4):
        clip = data / "clips" / "yard" / f"old{i}.mp4"
        clip.parent.mkdir(parents=True, exist_ok=True)
        clip.write_bytes(os.urandom(20 * 1024 * 1024))
        old.append(store.insert_event({"camera_id": "yard", "status": "complete", "start": now - 3600 + i,
                                       "end": now - 3590 + i, "clip_path": str(clip), "clip_size": 20 << 20}))
    store.close()
    free = shutil.disk_usage(small_disk).free
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * max(0, free - 1_300_000))  # ~1.3 MB left: the db writes fit, the clip does not
    assert shutil.disk_usage(small_disk).free < 1_500_000

    cfg_cams = [{"id": "yard", "name": "Yard", "source": str(source), "loop": False}]
    import yaml

    cfg = yaml.safe_load(hub.config_path.read_text())
    cfg["cameras"] = cfg_cams
    hub.config_path.write_text(yaml.safe_dump(cfg))
    hub.start()
    try:
        hub.wait_for_log("disk full: clip cut short", timeout=60)
        removed = json.loads(hub.wait_for_log("retention removed events", timeout=30))
        assert "disk" in removed["reasons"] and removed["count"] >= 1
        ended = json.loads(hub.wait_for_log('"msg": "event ended"', timeout=60))
        # the hub is still healthy and serving
        assert httpx.get(f"{hub.http}/api/health").json()["status"] == "ok"
    finally:
        assert hub.stop() == 0
    assert shutil.disk_usage(small_disk).free > 60 * 1024 * 1024
    store = Store(data / "hub.db")
    ev = store.get_event(ended["event_id"])
    gone = [e for e in old if store.get_event(e) is None]
    assert gone == old[:len(gone)] and gone, "oldest first"
    assert ev["status"] == "partial", ev
    if ev["clip_path"]:  # whatever whole GOPs reached the disk before it filled up still play
        with av.open(ev["clip_path"]) as c:
            assert sum(1 for _ in c.decode(video=0)) > 0
    assert not [p for p in (data / "clips").rglob(".*")], "temp files left behind"
