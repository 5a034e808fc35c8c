"""The faces of the one event deletion (hub.retention.delete_event): `pingwatch events prune` on a data folder, and
`pingwatch events delete` through a real hub's DELETE /api/ui/events/{id}. Real clips from the hub's ClipWriter."""

from __future__ import annotations

import json
import time

import pytest

from hub.clips import ClipWriter, tmp_path_for, write_snapshot
from hub.media.frames import EncodedFrame
from hub.store import Store
from tests.hubproc import HubProcess
from tests.test_cli import pw
from tests.test_retention import CAM, DAY_S, make_frames, record


@pytest.fixture(scope="module")
def frames() -> list[EncodedFrame]:
    return make_frames()


def test_cli_prune_really_removes_the_files(tmp_path, frames):
    pw("init", "--config", "hub.yaml", "--json", cwd=tmp_path, check=True)
    data = tmp_path / "data"
    store = Store(data / "hub.db")
    try:
        old = record(store, data / "clips", frames, "ev-old", time.time() - 40 * DAY_S)
        new = record(store, data / "clips", frames, "ev-new", time.time() - 60)
    finally:
        store.close()
    old_size, new_size = old.size, new.size
    r = json.loads(pw("events", "prune", "-c", "hub.yaml", "--json", cwd=tmp_path, check=True).stdout)
    assert [(e["id"], e["reason"]) for e in r["events"]] == [("ev-old", "age")]
    assert r["bytes_freed"] == old_size and r["clips_bytes_before"] == old_size + new_size
    assert not any(f.exists() for f in old.files)
    assert all(f.exists() for f in new.files)
    store = Store(data / "hub.db")
    try:
        assert store.get_event("ev-old") is None and store.get_event("ev-new") is not None
    finally:
        store.close()


@pytest.fixture
def hub(tmp_path):
    h = HubProcess.create(tmp_path / "hub")
    h.start()
    try:
        h.wait_for_log("retention pass done")  # the start-up pass is over before the test adds events
        yield h
    finally:
        h.kill()


def test_web_and_cli_delete_refuse_a_recording_event_then_remove_every_file(hub, tmp_path, frames):
    """`pingwatch events delete` goes through the hub's DELETE /api/ui/events/{id}, i.e. delete_event."""
    cfg = str(hub.config_path)
    clips = hub.data_dir / "clips"
    folder = clips / CAM / "today"
    folder.mkdir(parents=True)
    writer = ClipWriter(folder / "ev-live.mp4", durable=False)
    store = Store(hub.data_dir / "hub.db")
    try:
        writer.write_many(frames)
        store.ensure_static_camera(CAM, "Yard", "file")
        start = time.time() - 5
        store.insert_event({"id": "ev-live", "camera_id": CAM, "status": "recording", "start": start,
                            "triggers": ["motion"], "clip_path": str(writer.path)})
        refused = pw("events", "delete", "ev-live", "-c", cfg, cwd=tmp_path)
        assert refused.returncode == 1 and "still recording" in refused.stderr, refused.stderr
        assert store.get_event("ev-live") is not None and writer.part_path.exists()

        clip = writer.close()  # the recorder finishes: clip, snapshot, row
        snap = write_snapshot(frames, frames[-1].t, folder / "ev-live.jpg", folder / "ev-live-thumb.jpg")
        stale = tmp_path_for(snap.jpeg_path)
        stale.write_bytes(b"left over")
        store.update_event("ev-live", status="complete", end=start + 1, clip_path=str(clip.path),
                           clip_size=clip.size, snapshot_path=str(snap.jpeg_path), thumb_path=str(snap.thumb_path))
        r = json.loads(pw("events", "delete", "ev-live", "-c", cfg, "--json", cwd=tmp_path, check=True).stdout)
        assert r == {"event_id": "ev-live", "deleted": True, "files_removed": 4}
        assert not any(p.exists() for p in (clip.path, snap.jpeg_path, snap.thumb_path, stale))
        assert not (clips / CAM).exists()
        assert store.get_event("ev-live") is None
    finally:
        store.close()
        writer.abort()
