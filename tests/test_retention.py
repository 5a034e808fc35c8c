"""Retention and the one event deletion (hub.retention.delete_event) on a real SQLite store and real files.

Clips are written by the hub's own ClipWriter and snapshots by write_snapshot, from one second of H.264 made once
per module, so every event owns files of the same real size. Budgets and free space are set from that size, so
each test says exactly how many events a pass must remove. In process only (the mutation benchmark runs this file
per mutant); the CLI and web faces of the same deletion are in tests/test_delete_paths.py.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from hub.clips import ClipWriter, part_path_for, tmp_path_for, write_snapshot
from hub.config import StorageConfig
from hub.errors import ErrorKind
from hub.media.frames import EncodedFrame
from hub.retention import GB, EventDeleteError, PrunePlan, apply_prune, delete_event, plan_prune
from hub.store import Store
from tests.test_clips import encode_opus, encode_video, to_frames

DAY_S = 86400
CAM = "yard"
FAR = 10**15  # free bytes no threshold reaches: only the rule under test deletes anything


def make_frames() -> list[EncodedFrame]:
    """One second of 160x120 H.264 (one GOP) with Opus, as the WebRTC tap hands them to the recorder."""
    return to_frames("h264", encode_video("h264", n=15, w=160, h=120), encode_opus(1.0))


@pytest.fixture(scope="module")
def frames() -> list[EncodedFrame]:
    return make_frames()


@dataclass
class Recorded:
    id: str
    clip: Path
    snapshot: Path
    thumb: Path

    @property
    def files(self) -> list[Path]:
        return [self.clip, self.snapshot, self.thumb]

    @property
    def size(self) -> int:
        return sum(f.stat().st_size for f in self.files)


def record(store: Store, clips: Path, frames: list[EncodedFrame], eid: str, start: float,
           **row: object) -> Recorded:
    """An event as the recorder leaves it: a finished clip, its snapshot and thumbnail, a 'complete' row with
    absolute paths."""
    day = clips / CAM / time.strftime("%Y-%m-%d", time.localtime(start))
    day.mkdir(parents=True, exist_ok=True)
    writer = ClipWriter(day / f"{eid}.mp4", durable=False)
    writer.write_many(frames)
    clip = writer.close()
    snap = write_snapshot(frames, frames[-1].t, day / f"{eid}.jpg", day / f"{eid}-thumb.jpg")
    store.ensure_static_camera(CAM, "Yard", "file")
    store.insert_event({"id": eid, "camera_id": CAM, "status": "complete", "start": start, "end": start + 1,
                        "triggers": ["motion"], "clip_path": str(clip.path), "clip_size": clip.size,
                        "snapshot_path": str(snap.jpeg_path), "thumb_path": str(snap.thumb_path)} | row)
    return Recorded(eid, clip.path, snap.jpeg_path, snap.thumb_path)


@pytest.fixture
def data(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    store = Store(root / "hub.db")
    yield root, store
    store.close()


def four_events(store: Store, clips: Path, frames: list[EncodedFrame]) -> list[Recorded]:
    now = time.time()
    return [record(store, clips, frames, f"ev-{i}", now - 3600 + i * 60) for i in range(4)]


def test_over_the_budget_the_oldest_goes_and_only_as_many_as_needed(data, frames):
    root, store = data
    clips = root / "clips"
    evs = four_events(store, clips, frames)
    size = evs[0].size
    assert all(e.size == size for e in evs)  # the same frames: the arithmetic below is exact
    # Half an event over the budget: deleting the oldest is enough. A pass that did not count what it had
    # already freed would still see 4 events' worth and delete all four.
    cfg = StorageConfig(max_disk_gb=(3.5 * size) / GB, min_free_gb=0)
    plan = plan_prune(store, cfg, clips, free_bytes=FAR)
    assert [e["id"] for e in plan.events] == ["ev-0"]
    assert plan.reasons == {"ev-0": "budget"}
    assert plan.clips_bytes_before == 4 * size and plan.bytes_freed == size
    assert apply_prune(store, plan) == 1
    assert store.get_event("ev-0") is None and not any(f.exists() for f in evs[0].files)
    assert [store.get_event(e.id) is not None for e in evs[1:]] == [True] * 3
    assert all(f.exists() for e in evs[1:] for f in e.files)
    # within the budget now: the next pass removes nothing
    assert plan_prune(store, cfg, clips, free_bytes=FAR).events == []


@pytest.mark.parametrize(("short_by", "extra_free", "expected"), [
    (0.5, 0, ["ev-0"]),  # half an event short of min_free_gb: one event
    (0.5, 1.0, ["ev-0", "ev-1"]),  # an emergency pass asks for one event's room more: two
])
def test_low_free_space_frees_just_enough(data, frames, short_by, extra_free, expected):
    root, store = data
    clips = root / "clips"
    evs = four_events(store, clips, frames)
    size = evs[0].size
    cfg = StorageConfig(max_disk_gb=1000, min_free_gb=1)
    plan = plan_prune(store, cfg, clips, free_bytes=GB - int(short_by * size), extra_free=int(extra_free * size))
    assert [e["id"] for e in plan.events] == expected
    assert set(plan.reasons.values()) == {"disk"}
    assert plan.bytes_freed == len(expected) * size


def test_sizes_are_the_files_on_disk_not_the_rows_clip_size(data, frames):
    root, store = data
    clips = root / "clips"
    ev = record(store, clips, frames, "ev-lies", time.time() - 60, clip_size=1)  # a row that lies
    record(store, clips, frames, "ev-unknown", time.time() - 30, clip_size=None)  # recovered: no size
    plan = plan_prune(store, StorageConfig(max_disk_gb=(1.5 * ev.size) / GB, min_free_gb=0), clips, free_bytes=FAR)
    assert plan.clips_bytes_before == 2 * ev.size  # clip, snapshot and thumbnail of both, as stat'ed
    assert [e["id"] for e in plan.events] == ["ev-lies"] and plan.bytes_freed == ev.size


def test_an_event_still_recording_is_never_deleted(data, frames):
    root, store = data
    clips = root / "clips"
    old = time.time() - 400 * DAY_S  # past retention and the oldest: first in line for every rule
    folder = clips / CAM / "recording"
    folder.mkdir(parents=True)
    writer = ClipWriter(folder / "ev-rec.mp4", durable=False)
    try:
        writer.write_many(frames)  # a real .part, held open as the recorder holds it
        assert writer.part_path.exists()
        store.ensure_static_camera(CAM, "Yard", "file")
        store.insert_event({"id": "ev-rec", "camera_id": CAM, "status": "recording", "start": old,
                            "triggers": ["motion"], "clip_path": str(folder / "ev-rec.mp4")})
        done = record(store, clips, frames, "ev-done", old + 1)
        cfg = StorageConfig(retention_days=30, max_disk_gb=1e-9, min_free_gb=1000)
        plan = plan_prune(store, cfg, clips, free_bytes=0)
        assert [e["id"] for e in plan.events] == ["ev-done"]
        with pytest.raises(EventDeleteError) as refused:
            delete_event(store, "ev-rec", clips, root)
        assert refused.value.kind is ErrorKind.CONFLICT and "recording" in refused.value.message
        # a plan that lists it anyway (stale, or made by hand) still cannot take it
        stale = PrunePlan(events=[store.get_event("ev-rec")], reasons={"ev-rec": "age"}, clips_dir=clips)
        assert apply_prune(store, stale) == 0
        assert store.get_event("ev-rec") is not None and writer.part_path.exists()
        assert apply_prune(store, plan) == 1 and not any(f.exists() for f in done.files)
        assert writer.part_path.exists()
    finally:
        writer.abort()


def test_delete_removes_clip_snapshot_thumbnail_and_sidecars(data, frames):
    root, store = data
    clips = root / "clips"
    ev = record(store, clips, frames, "ev-a", time.time() - 60)
    other = record(store, clips, frames, "ev-b", time.time() - 30)
    # Left by a cut-short write (hub/clips.py names them): the clip's .part and a snapshot's .tmp.
    sidecars = [part_path_for(ev.clip), tmp_path_for(ev.snapshot)]
    for s in sidecars:
        s.write_bytes(b"left over")
    done = delete_event(store, "ev-a", clips, root)
    owned = [*ev.files, *sidecars]
    assert sorted(done.removed) == sorted(p.resolve() for p in owned) and done.errors == ()
    assert done.event["id"] == "ev-a" and store.get_event("ev-a") is None
    assert not any(p.exists() for p in owned)
    assert all(p.exists() for p in other.files)  # same folder, another event: untouched
    delete_event(store, "ev-b", clips, root)
    assert not (clips / CAM).exists() and clips.is_dir()  # the emptied camera/day folders go, clips/ stays
    with pytest.raises(EventDeleteError) as gone:
        delete_event(store, "ev-b", clips, root)
    assert gone.value.kind is ErrorKind.NOT_FOUND


def test_sidecars_of_a_tampered_path_outside_clips_are_not_touched(data, frames):
    root, store = data
    clips = root / "clips"
    outside = root.parent / "elsewhere"
    outside.mkdir()
    victims = [outside / "victim.mp4", part_path_for(outside / "victim.mp4"), tmp_path_for(outside / "victim.mp4")]
    for v in victims:
        v.write_text("not the hub's")
    record(store, clips, frames, "ev-t", time.time() - 60, clip_path=str(outside / "victim.mp4"))
    done = delete_event(store, "ev-t", clips, root)
    assert {p.name for p in done.removed} == {"ev-t.jpg", "ev-t-thumb.jpg"}
    assert all(v.read_text() == "not the hub's" for v in victims)


def test_a_pass_skips_an_event_deleted_since_it_was_planned(data, frames):
    root, store = data
    clips = root / "clips"
    old = time.time() - 400 * DAY_S
    evs = [record(store, clips, frames, f"ev-{i}", old + i) for i in range(2)]
    plan = plan_prune(store, StorageConfig(retention_days=30), clips, free_bytes=FAR)
    assert [e["id"] for e in plan.events] == ["ev-0", "ev-1"]
    delete_event(store, "ev-0", clips, root)  # the web UI, between the plan and the pass
    seen: list[str] = []
    assert apply_prune(store, plan, on_deleted=lambda e: seen.append(e["id"])) == 1
    assert seen == ["ev-1"] and not any(f.exists() for e in evs for f in e.files)


# -- boundaries of each rule, on events whose only file has a chosen size --------------------------------------


def sized_event(store: Store, clips: Path, eid: str, start: float, size: int) -> Path:
    """An event whose one file is a clip of exactly ``size`` bytes (sizes come from the disk, not the row)."""
    clip = clips / CAM / f"{eid}.mp4"
    clip.parent.mkdir(parents=True, exist_ok=True)
    clip.write_bytes(b"\0" * size)
    store.ensure_static_camera(CAM, "Yard", "file")
    store.insert_event({"id": eid, "camera_id": CAM, "status": "complete", "start": start, "clip_path": str(clip)})
    return clip


def test_clips_exactly_at_the_budget_stay_and_one_byte_over_costs_the_oldest(data):
    root, store = data
    clips = root / "clips"
    now = time.time()
    for i in range(4):
        sized_event(store, clips, f"ev-{i}", now - 600 + i, 250)
    cfg = StorageConfig(max_disk_gb=0.000001, min_free_gb=0)  # 1000 bytes: max_disk_gb counts 10^9 bytes
    assert plan_prune(store, cfg, clips, free_bytes=FAR).events == []
    sized_event(store, clips, "ev-4", now, 1)
    plan = plan_prune(store, cfg, clips, free_bytes=FAR)
    assert [e["id"] for e in plan.events] == ["ev-0"] and plan.reasons == {"ev-0": "budget"}


def test_free_space_exactly_at_the_minimum_is_enough(data):
    root, store = data
    clips = root / "clips"
    sized_event(store, clips, "ev-0", time.time() - 60, 10)
    cfg = StorageConfig(max_disk_gb=1000, min_free_gb=1)  # decimal gigabytes: 10^9 bytes
    assert plan_prune(store, cfg, clips, free_bytes=1_000_000_000).events == []
    plan = plan_prune(store, cfg, clips, free_bytes=999_999_999)
    assert [e["id"] for e in plan.events] == ["ev-0"] and plan.reasons == {"ev-0": "disk"}


def test_an_event_is_kept_until_it_is_exactly_retention_days_old(data):
    root, store = data
    clips = root / "clips"
    now = 2_000_000_000.0
    edge = now - 30 * DAY_S
    sized_event(store, clips, "ev-older", edge - 1, 10)
    sized_event(store, clips, "ev-edge", edge, 10)
    sized_event(store, clips, "ev-new", now - 10, 10)
    plan = plan_prune(store, StorageConfig(retention_days=30, min_free_gb=0), clips, now=now, free_bytes=FAR)
    assert [e["id"] for e in plan.events] == ["ev-older"] and plan.reasons == {"ev-older": "age"}


def test_without_a_free_space_figure_the_pass_asks_the_disk(data):
    # `pingwatch events prune` and the hub's pass give no figure: the clips folder's file system is asked, and
    # a hub that never recorded (no clips folder yet) gets one rather than an error.
    root, store = data
    clips = root / "clips"
    assert plan_prune(store, StorageConfig(min_free_gb=0), clips).events == []
    assert clips.is_dir()
    sized_event(store, clips, "ev-0", time.time() - 60, 10)
    sized_event(store, clips, "ev-1", time.time() - 30, 10)
    # No disk has 10^18 bytes free: both go for lack of room, and a second pass finds the folder already there.
    plan = plan_prune(store, StorageConfig(max_disk_gb=1000, min_free_gb=1e9), clips)
    assert [e["id"] for e in plan.events] == ["ev-0", "ev-1"] and set(plan.reasons.values()) == {"disk"}


def test_an_event_without_a_clip_still_loses_its_snapshot_and_thumbnail(data):
    # A clip that failed (disk full, a crash) leaves clip_path empty; the images taken for it are still its files.
    root, store = data
    clips = root / "clips"
    day = clips / CAM / "day"
    day.mkdir(parents=True)
    snap, thumb = day / "ev-x.jpg", day / "ev-x-thumb.jpg"
    snap.write_bytes(b"jpeg")
    thumb.write_bytes(b"jpg")
    store.ensure_static_camera(CAM, "Yard", "file")
    store.insert_event({"id": "ev-x", "camera_id": CAM, "status": "failed", "start": time.time() - 60,
                        "clip_path": None, "snapshot_path": str(snap), "thumb_path": str(thumb)})
    assert plan_prune(store, StorageConfig(max_disk_gb=0.000000001, min_free_gb=0), clips,
                      free_bytes=FAR).bytes_freed == 7
    done = delete_event(store, "ev-x", clips, root)
    assert sorted(done.removed) == sorted([snap.resolve(), thumb.resolve()])
    assert not snap.exists() and not thumb.exists()


@pytest.fixture
def full_disk(tmp_path: Path):
    """A real 1 MB filesystem (tmpfs) holding the hub's database and clips folder."""
    from tests.test_recorder import _tmpfs

    yield from _tmpfs(tmp_path / "disk", "size=1m")


def test_retention_frees_a_disk_so_full_that_the_database_cannot_commit(full_disk: Path, caplog):
    """With not a byte left, SQLite cannot commit a row delete (its WAL grows first): the event's files go first,
    which makes the room, then its row. Before, the delete failed and retention could never free the disk."""
    import logging
    import os
    import sqlite3

    clips = full_disk / "clips"
    store = Store(full_disk / "hub.db")
    try:
        clip = sized_event(store, clips, "ev-old", time.time() - 3600, 300_000)
        filler = full_disk / "filler"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
        try:  # every page the filesystem has left
            while True:
                os.write(fd, b"\0" * 4096)
        except OSError:
            pass
        finally:
            os.close(fd)
        with pytest.raises(sqlite3.OperationalError, match="full"):  # the disk really is too full to commit
            store.ensure_static_camera("other", "Other", "file")
        caplog.set_level(logging.WARNING, logger="hub.retention")
        deleted = delete_event(store, "ev-old", clips, full_disk)
        assert clip in deleted.removed and not clip.exists()
        assert store.get_event("ev-old") is None
        assert any("disk full" in r.getMessage() for r in caplog.records)
    finally:
        store.close()
