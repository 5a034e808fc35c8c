"""hub/recorder.py in this process: an event's row, clip, snapshot and bus messages, through the real parts.

RingBuffer -> EventRecorder (real Store on SQLite, real Bus) -> ClipWriter -> MP4 file, read back with PyAV; no
hub process, no broker, so the mutation benchmark (scripts/bench mutation) can run these against every mutant of
hub/recorder.py. The frames are real H.264 (libx264): each frame a flat grey of its own level, so a snapshot tells
which frame it shows. A full disk is a real one: a tiny tmpfs (needs root, as tests/test_disk_full.py does).
"""

from __future__ import annotations

import errno
import os
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from hub.buffer import RingBuffer
from hub.bus import Bus
from hub.clips import part_path_for
from hub.media import h264
from hub.media.frames import AUDIO_TIME_BASE, VIDEO_TIME_BASE, EncodedFrame
from hub.recorder import EventRecorder
from hub.recovery import recover
from hub.store import Store
from tests.test_clips import encode_opus

FPS = 10
GOP = 10  # one keyframe a second
T0 = 1_700_000_000.0
CAM = "cam"


def _level(i: int) -> int:
    return 16 + (i * 7) % 220  # the grey of frame i: neighbours differ by 7, enough to tell them apart in a JPEG


def encode(n: int, gop: int = GOP, noisy: bool = False, fps: int = FPS) -> list[EncodedFrame]:
    """``n`` H.264 frames at ``fps`` from T0, keyframe every ``gop``, frame i a flat grey of ``_level(i)``."""
    ctx = av.CodecContext.create("libx264", "w")
    ctx.width, ctx.height, ctx.pix_fmt = 160, 96, "yuv420p"
    ctx.time_base = Fraction(1, fps)
    ctx.options = {"profile": "baseline", "preset": "ultrafast", "tune": "zerolatency", "bf": "0",
                   "g": str(gop), "keyint_min": str(gop), "sc_threshold": "0"}
    rng = np.random.default_rng(1)
    packets = []
    for i in range(n):
        img = np.full((96, 160), _level(i), np.uint8)
        if noisy:  # big frames: a disk fills quickly
            img = rng.integers(0, 255, (96, 160), dtype=np.uint8)
        vf = av.VideoFrame.from_ndarray(img, format="gray").reformat(format="yuv420p")
        vf.pts = i
        packets += ctx.encode(vf)
    packets += ctx.encode(None)
    return [EncodedFrame("video", "h264", bytes(p), int(p.pts) * 90000 // fps, VIDEO_TIME_BASE,
                         T0 + int(p.pts) / fps, keyframe=bool(p.is_keyframe), width=160, height=96)
            for p in packets]


FRAMES = encode(40)


class Rig:
    def __init__(self, root: Path, pre_roll_s: float = 1.0, post_roll_s: float = 2.0,
                 clips_dir: Path | None = None) -> None:
        self.store = Store(root / "hub.db")
        self.bus = Bus()
        self.messages = self.bus.subscribe()
        self.buffer = RingBuffer(window_s=15.0)
        self.full_calls: list[float] = []  # each time the recorder asked for room
        self.clips_dir = clips_dir or root / "clips"
        self.recorder = EventRecorder(CAM, self.buffer, self.store, self.bus, self.clips_dir, pre_roll_s,
                                      post_roll_s, on_disk_full=lambda: self.full_calls.append(time.time()))
        self.recorder.codec = "h264"

    def push(self, frames: list[EncodedFrame]) -> None:
        for f in frames:
            self.buffer.push(f)

    def row(self, event_id: str) -> dict:
        ev = self.store.get_event(event_id)
        assert ev is not None
        return ev

    def published(self, topic: str) -> list[dict]:
        out = []
        while not self.messages.queue.empty():
            msg = self.messages.queue.get_nowait()
            if msg.topic == topic:
                out.append(msg.data)
        return out

    async def end(self, t: float, reason: str = "quiet") -> dict:
        task = self.recorder.end(t, reason)
        assert task is not None
        return await task


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    r = Rig(tmp_path)
    yield r
    r.store.close()


def _video_packets(path: Path) -> list[bytes]:
    """The clip's video packets, in Annex B as the camera sent them."""
    with av.open(str(path)) as c:
        return [h264.avcc_to_annexb(bytes(p)) for p in c.demux(video=0) if p.size]


def _sent(frames: list[EncodedFrame]) -> list[bytes]:
    return [h264.join_annexb(h264.split_annexb(f.data)) for f in frames]


def _grey(path: str | Path) -> float:
    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    assert img is not None, path
    return float(img.mean())


def _shows_frame(path: str | Path) -> int:
    """Which frame of FRAMES a snapshot shows: the one whose grey is nearest."""
    g = _grey(path)
    return min(range(len(FRAMES)), key=lambda i: abs(_level(i) - g))


# -- the row and the bus ------------------------------------------------------------------------------------------


async def test_an_event_is_a_recording_row_with_its_final_clip_path_from_the_start(rig: Rig) -> None:
    rig.push(FRAMES[:25])
    start = FRAMES[24].t
    event_id = rig.recorder.start(start, start + 0.3, "motion")
    assert rig.recorder.active
    row = rig.row(event_id)
    assert row["status"] == "recording" and row["camera_id"] == CAM and row["triggers"] == ["motion"]
    assert (row["start"], row["detected_at"], row["pre_roll_s"], row["post_roll_s"]) == (start, start + 0.3, 1.0, 2.0)
    day = time.strftime("%Y-%m-%d", time.localtime(start))
    assert row["clip_path"] == str(rig.clips_dir / CAM / day / f"{event_id}.mp4")  # where recovery looks
    assert (rig.clips_dir / CAM / day).stat().st_mode & 0o777 == 0o700
    started = rig.published("event.started")
    assert started == [{"event_id": event_id, "camera_id": CAM, "start": start, "detected_at": start + 0.3,
                        "triggers": ["motion"]}]
    await rig.end(FRAMES[-1].t)
    assert not rig.recorder.active


async def test_a_vp8_camera_records_webm(rig: Rig) -> None:
    rig.recorder.codec = "vp8"
    event_id = rig.recorder.start(T0, T0, "motion")
    assert rig.row(event_id)["clip_path"].endswith(f"{event_id}.webm")
    await rig.end(T0 + 1)


async def test_a_second_trigger_joins_the_open_event(rig: Rig) -> None:
    rig.push(FRAMES[:12])
    first = rig.recorder.start(FRAMES[11].t, FRAMES[11].t, "sound")
    assert rig.recorder.start(FRAMES[11].t + 0.5, FRAMES[11].t + 0.5, "motion") == first
    rig.recorder.update(trigger="person", t=FRAMES[11].t + 0.6)
    rig.recorder.update(trigger=None)
    rig.push(FRAMES[12:])
    event = await rig.end(FRAMES[-1].t)
    assert event["id"] == first and event["triggers"] == ["motion", "person", "sound"]
    assert [r["id"] for r in rig.store.list_events(camera_id=CAM)] == [first]  # one row, not three
    assert len(rig.published("event.started")) == 1


async def test_the_end_is_recorded_and_announced_with_the_finished_row(rig: Rig) -> None:
    rig.push(FRAMES[:20])
    event_id = rig.recorder.start(FRAMES[19].t, FRAMES[19].t, "motion")
    rig.push(FRAMES[20:])
    rig.published("event.started")
    event = await rig.end(FRAMES[-1].t + 0.05, "quiet")
    assert event["status"] == "complete" and event["end"] == FRAMES[-1].t + 0.05
    clip = Path(event["clip_path"])
    assert clip.is_file() and event["clip_size"] == clip.stat().st_size and event["clip_codec"] == "h264"
    # pre-roll 1 s from 1.9 s reaches back to the keyframe at 0 s; the last frame lasts one frame
    assert event["clip_duration_s"] == pytest.approx(FRAMES[-1].t - FRAMES[0].t + 1 / FPS, abs=0.01)
    ended = rig.published("event.ended")
    assert len(ended) == 1 and ended[0]["reason"] == "quiet" and ended[0]["event_id"] == event_id
    assert ended[0]["camera_id"] == CAM and ended[0]["event"] == rig.row(event_id) == event


async def test_ending_or_updating_without_an_event_does_nothing(rig: Rig) -> None:
    assert rig.recorder.end(T0, "quiet") is None
    rig.recorder.update(motion=0.9, t=T0, boxes=[(0.1, 0.1, 0.2, 0.2)], audio_dbfs=-3.0, trigger="person")
    assert not rig.recorder.active and rig.store.list_events(camera_id=CAM) == []


# -- the clip -----------------------------------------------------------------------------------------------------


async def test_the_clip_is_the_pre_roll_then_everything_until_the_end(rig: Rig) -> None:
    rig.push(FRAMES[:26])
    start = FRAMES[25].t  # 2.5 s: pre-roll 1 s reaches back to 1.5 s, so the clip starts on the keyframe at 1 s
    rig.recorder.start(start, start, "motion")
    rig.push(FRAMES[26:35])
    task = rig.recorder.end(FRAMES[34].t, "quiet")
    rig.push(FRAMES[35:])  # after the end: not in the clip
    assert task is not None
    event = await task
    assert _video_packets(Path(event["clip_path"])) == _sent(FRAMES[10:35])


async def test_the_pre_roll_never_starts_later_than_asked(rig: Rig) -> None:
    rig.recorder.pre_roll_s = 2.0
    rig.push(FRAMES[:26])
    start = FRAMES[25].t  # pre-roll 2 s reaches back to 0.5 s: the keyframe at 0 s
    rig.recorder.start(start, start, "motion")
    event = await rig.end(FRAMES[25].t)
    assert _video_packets(Path(event["clip_path"])) == _sent(FRAMES[0:26])


async def test_shutdown_cuts_the_open_event_short_and_waits_for_every_clip(rig: Rig) -> None:
    rig.push(FRAMES[:15])
    first = rig.recorder.start(FRAMES[14].t, FRAMES[14].t, "motion")
    pending = rig.recorder.end(FRAMES[14].t, "quiet")  # still finishing when the hub stops
    rig.push(FRAMES[15:30])
    second = rig.recorder.start(FRAMES[29].t, FRAMES[29].t, "motion")
    await rig.recorder.close(FRAMES[29].t + 0.1)
    assert pending is not None and pending.done()
    assert not rig.recorder.active
    for event_id in (first, second):
        row = rig.row(event_id)
        assert row["status"] == "complete" and Path(row["clip_path"]).is_file(), row
    assert rig.row(second)["end"] == FRAMES[29].t + 0.1
    assert {e["event_id"]: e["reason"] for e in rig.published("event.ended")} == {first: "quiet", second: "shutdown"}
    await rig.recorder.close(FRAMES[29].t + 0.2)  # nothing open, nothing finishing: returns at once
    assert rig.published("event.ended") == []


async def test_shutdown_completes_even_when_an_event_cannot_be_finished(rig: Rig) -> None:
    """The database went away under a finishing event (it raises): stopping the hub must still return."""
    rig.push(FRAMES[:15])
    rig.recorder.start(FRAMES[14].t, FRAMES[14].t, "motion")
    pending = rig.recorder.end(FRAMES[14].t, "quiet")
    rig.store.close()
    await rig.recorder.close(FRAMES[14].t + 0.1)
    assert pending is not None and pending.done() and isinstance(pending.exception(), sqlite3.ProgrammingError)


async def test_the_clip_carries_the_cameras_sound(rig: Rig) -> None:
    sound = [EncodedFrame("audio", "opus", data, i * 960, AUDIO_TIME_BASE, T0 + 0.01 + i * 0.02)
             for i, data in enumerate(encode_opus(3.0))]
    frames = sorted(FRAMES[:30] + sound, key=lambda f: f.t)
    rig.push([f for f in frames if f.t < FRAMES[15].t])
    rig.recorder.start(FRAMES[14].t, FRAMES[14].t, "sound")
    rig.push([f for f in frames if f.t >= FRAMES[15].t])
    event = await rig.end(FRAMES[29].t)
    with av.open(event["clip_path"]) as c:
        assert [s.type for s in c.streams] == ["video", "audio"] and c.streams.audio[0].codec_context.name == "opus"
        audio = [p for p in c.demux(audio=0) if p.size]
    assert len(audio) >= 100  # from the keyframe at 0 s to the end at 2.9 s, 20 ms each


async def test_the_duration_is_stored_to_the_millisecond(tmp_path: Path) -> None:
    rig = Rig(tmp_path, pre_roll_s=0.5)
    try:
        frames = encode(25, gop=15, fps=15)
        rig.push(frames[:16])
        rig.recorder.start(frames[15].t, frames[15].t, "motion")  # at 1 s: the pre-roll starts at 0 s
        rig.push(frames[16:])
        event = await rig.end(frames[-1].t)
        # the keyframe at 0 s to the last frame at 24/15 s, plus that frame's 1/15 s: 1.6667 s
        assert event["clip_duration_s"] == 1.667
    finally:
        rig.store.close()


# -- what the event learns while it records -------------------------------------------------------------------------


async def test_the_snapshot_shows_the_moment_of_peak_motion(rig: Rig) -> None:
    rig.push(FRAMES[:11])
    start = FRAMES[10].t
    event_id = rig.recorder.start(start, start, "motion")
    for i in range(11, 35):  # the strongest motion at frame 17, as strong again at 23: the first one is shown
        rig.push([FRAMES[i]])
        rig.recorder.update(motion={13: 0.3, 17: 0.8, 23: 0.8, 26: 0.5}.get(i, 0.1), t=FRAMES[i].t)
    event = await rig.end(FRAMES[34].t)
    assert event["peak_motion"] == 0.8
    jpeg = Path(event["snapshot_path"])
    assert jpeg == Path(event["clip_path"]).with_suffix(".jpg")
    assert Path(event["thumb_path"]) == jpeg.with_name(f"{event_id}-thumb.jpg")
    assert _shows_frame(jpeg) == 17 and _shows_frame(event["thumb_path"]) == 17


async def test_the_snapshot_is_the_peak_frame_when_the_motion_reading_comes_before_the_frame(rig: Rig) -> None:
    """The detector sees a frame on its own path: its reading can arrive before the encoded frame is buffered.
    Here the peak is a keyframe, so the frame that arrives after the reading starts the GOP the snapshot needs."""
    rig.push(FRAMES[:11])
    rig.recorder.start(FRAMES[10].t, FRAMES[10].t, "motion")
    rig.push(FRAMES[11:20])
    rig.recorder.update(motion=0.9, t=FRAMES[20].t)  # frame 20 (a keyframe) is not buffered yet
    rig.push(FRAMES[20:35])
    event = await rig.end(FRAMES[34].t)
    assert _shows_frame(event["snapshot_path"]) == 20


async def test_a_keyframe_just_after_the_peak_does_not_replace_it_in_the_snapshot(rig: Rig) -> None:
    """The peak at frame 19, the next keyframe (20) 0.1 s later: the snapshot shows 19, not the keyframe."""
    rig.push(FRAMES[:11])
    rig.recorder.start(FRAMES[10].t, FRAMES[10].t, "motion")
    rig.push(FRAMES[11:20])
    rig.recorder.update(motion=0.9, t=FRAMES[19].t)
    rig.push(FRAMES[20:35])
    event = await rig.end(FRAMES[34].t)
    assert _shows_frame(event["snapshot_path"]) == 19


async def test_a_late_motion_reading_still_finds_its_frame_behind_a_new_keyframe(rig: Rig) -> None:
    """The detector lags: the reading for frame 19 comes after keyframe 20 and frame 21 are buffered."""
    rig.push(FRAMES[:11])
    rig.recorder.start(FRAMES[10].t, FRAMES[10].t, "motion")
    rig.push(FRAMES[11:22])
    rig.recorder.update(motion=0.9, t=FRAMES[19].t)
    rig.push(FRAMES[22:35])
    event = await rig.end(FRAMES[34].t)
    assert _shows_frame(event["snapshot_path"]) == 19


async def test_a_reading_for_a_keyframe_already_buffered_shows_that_keyframe(rig: Rig) -> None:
    """The peak is keyframe 20 itself and its reading comes once frames 20 and 21 are in: the GOP it starts."""
    rig.push(FRAMES[:11])
    rig.recorder.start(FRAMES[10].t, FRAMES[10].t, "motion")
    rig.push(FRAMES[11:22])
    rig.recorder.update(motion=0.9, t=FRAMES[20].t)
    rig.push(FRAMES[22:35])
    event = await rig.end(FRAMES[34].t)
    assert _shows_frame(event["snapshot_path"]) == 20


async def test_a_sound_event_after_a_frame_the_clip_refused_still_gets_a_snapshot(rig: Rig) -> None:
    """A frame the clip cannot take (a codec change) in the pre-roll of a sound-only event: the clip gives up,
    but the snapshot is the last frame that was good, not a failed decode of the refused one."""
    rig.push(FRAMES[:16])
    rig.buffer.push(EncodedFrame("video", "vp8", b"\x10\x02\x00\x9d\x01\x2a", 0, VIDEO_TIME_BASE,
                                 FRAMES[15].t + 0.05))
    rig.recorder.start(FRAMES[15].t + 0.1, FRAMES[15].t + 0.1, "sound")
    rig.push(FRAMES[16:25])
    event = await rig.end(FRAMES[24].t)
    assert event["status"] == "partial" and event["snapshot_path"], event
    assert _shows_frame(event["snapshot_path"]) == 15


async def test_an_event_without_motion_shows_its_last_frame(rig: Rig) -> None:
    rig.push(FRAMES[:11])
    rig.recorder.start(FRAMES[10].t, FRAMES[10].t, "sound")
    rig.recorder.update(audio_dbfs=-20.0, t=FRAMES[10].t)
    rig.push(FRAMES[11:27])
    event = await rig.end(FRAMES[26].t)
    assert event["peak_motion"] == 0.0 and _shows_frame(event["snapshot_path"]) == 26


async def test_the_loudest_moment_and_the_strongest_motion_are_kept(rig: Rig) -> None:
    rig.push(FRAMES[:11])
    rig.recorder.start(FRAMES[10].t, FRAMES[10].t, "sound")
    for db in (-42.0, -12.5, -30.0):
        rig.recorder.update(audio_dbfs=db)
    for motion in (0.123456, 0.654321, 0.2):
        rig.recorder.update(motion=motion, t=FRAMES[10].t)
    rig.push(FRAMES[11:15])
    event = await rig.end(FRAMES[14].t)
    assert event["audio_peak_dbfs"] == -12.5 and event["peak_motion"] == 0.6543


async def test_a_quiet_event_keeps_its_only_sound_level(rig: Rig) -> None:
    rig.push(FRAMES[:11])
    rig.recorder.start(FRAMES[10].t, FRAMES[10].t, "sound")
    rig.recorder.update(audio_dbfs=-60.0)
    rig.recorder.update(audio_dbfs=None)
    event = await rig.end(FRAMES[10].t)
    assert event["audio_peak_dbfs"] == -60.0


async def test_boxes_are_sampled_relative_to_the_start_four_at_most_and_capped(rig: Rig) -> None:
    rig.push(FRAMES[:11])
    start = FRAMES[10].t
    rig.recorder.start(start, start, "motion")
    boxes = [(0.111111, 0.222222, 0.333333, 0.444444)] * 3 + [(0.5, 0.5, 0.6, 0.6), (0.9, 0.9, 1.0, 1.0)]
    rig.recorder.update(motion=0.5, t=start + 1.23456, boxes=boxes)
    rig.recorder.update(motion=0.5, t=None, boxes=boxes)  # no time: no sample
    rig.recorder.update(motion=0.5, t=start + 2, boxes=[])  # nothing seen: no sample
    for i in range(300):
        rig.recorder.update(t=start + 3 + i * 0.1, boxes=[(0.0, 0.0, 0.1, 0.1)])
    event = await rig.end(start + 40)
    assert event["boxes"][0] == [1.23, 0.1111, 0.2222, 0.3333, 0.4444, 0.1111, 0.2222, 0.3333, 0.4444,
                                 0.1111, 0.2222, 0.3333, 0.4444, 0.5, 0.5, 0.6, 0.6]
    assert event["boxes"][1] == [3.0, 0.0, 0.0, 0.1, 0.1]
    assert len(event["boxes"]) == 200


# -- when writing fails ---------------------------------------------------------------------------------------------


async def test_a_broken_stream_keeps_the_whole_gops_written_before_it(rig: Rig) -> None:
    """A stream that changes codec mid-event (the clip cannot take it): the event keeps its row, snapshot and the
    whole GOPs already on disk, marked partial; nothing more is written after the failure."""
    rig.push(FRAMES[:11])
    event_id = rig.recorder.start(FRAMES[10].t, FRAMES[10].t, "motion")
    rig.push(FRAMES[11:16])
    rig.recorder.update(motion=0.7, t=FRAMES[15].t)
    rig.push(FRAMES[16:31])
    bad = EncodedFrame("video", "vp8", b"\x10\x02\x00\x9d\x01\x2a", 0, VIDEO_TIME_BASE, FRAMES[30].t + 0.05)
    rig.buffer.push(bad)
    rig.push(FRAMES[31:])  # not written: the clip gave up at the failure
    event = await rig.end(FRAMES[-1].t)
    assert event["status"] == "partial" and event["id"] == event_id
    packets = _video_packets(Path(event["clip_path"]))
    # the clip starts at 0 s (1 s of pre-roll before 1 s); whole GOPs only, none from after the failure
    assert packets and packets == _sent(FRAMES[:len(packets)])
    assert len(packets) % GOP == 0 and len(packets) <= 31
    assert _shows_frame(event["snapshot_path"]) == 15
    assert rig.full_calls == []  # not a full disk: retention is not asked for room


async def test_a_stream_that_breaks_before_its_first_whole_gop_leaves_no_clip(rig: Rig) -> None:
    rig.push(FRAMES[:3])
    event_id = rig.recorder.start(FRAMES[2].t, FRAMES[2].t, "motion")  # the pre-roll: frames 0 to 2
    rig.buffer.push(EncodedFrame("video", "vp8", b"\x10\x02\x00\x9d\x01\x2a", 0, VIDEO_TIME_BASE,
                                 FRAMES[2].t + 0.05))
    rig.push(FRAMES[3:20])
    event = await rig.end(FRAMES[19].t)
    assert event["id"] == event_id and event["status"] == "partial" and event["clip_path"] is None
    assert not list(rig.clips_dir.rglob("*.mp4*"))  # nothing half-written left behind
    assert _open_files_under(rig.clips_dir) == []  # nor held open: a deleted file's space is freed only at close
    assert rig.full_calls == []


async def test_a_stream_that_breaks_inside_a_long_first_gop_leaves_no_clip_and_no_open_file(rig: Rig) -> None:
    """A 3 s first GOP: the file is open (after a second of video) but holds no whole GOP when the stream breaks.
    Nothing can be kept; the writer must be closed too, or the deleted part keeps its disk space while open."""
    frames = encode(40, gop=30)
    rig.push(frames[:11])
    rig.recorder.start(frames[10].t, frames[10].t, "motion")
    rig.push(frames[11:15])
    rig.buffer.push(EncodedFrame("video", "vp8", b"\x10\x02\x00\x9d\x01\x2a", 0, VIDEO_TIME_BASE,
                                 frames[14].t + 0.05))
    event = await rig.end(frames[14].t + 0.1)
    assert event["status"] == "partial" and event["clip_path"] is None
    assert not list(rig.clips_dir.rglob("*.mp4*"))
    assert _open_files_under(rig.clips_dir) == []


def _open_files_under(folder: Path) -> list[str]:
    """This process's open files below ``folder`` (deleted ones included: /proc names them all the same)."""
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(folder)):
            out.append(target)
    return out


def _tmpfs(mnt: Path, options: str) -> Iterator[Path]:
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs for the disk-full test (needs root): {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _make_room(disk: Path) -> None:
    """Grow a test tmpfs to 4 MB: room at last, as after retention ran."""
    subprocess.run(["mount", "-o", "remount,size=4m", str(disk)], check=True)


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 256 kB filesystem (tmpfs) for the clips folder."""
    yield from _tmpfs(tmp_path / "disk", "size=256k")


@pytest.fixture
def roomy_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 850 kB filesystem: room for a 600 kB clip while it records, not for its final copy as well."""
    yield from _tmpfs(tmp_path / "disk", "size=850k")


@pytest.fixture
def no_inodes_disk(tmp_path: Path) -> Iterator[Path]:
    """A real filesystem with no room for one more file or folder (every inode in use)."""
    mnt = tmp_path / "disk"
    for disk in _tmpfs(mnt, "size=256k,nr_inodes=8"):
        i = 0
        while True:
            try:
                (disk / f"f{i}").touch()
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                break
            i += 1
        yield disk


async def test_a_full_disk_cuts_the_clip_and_asks_for_room_at_once(tmp_path: Path, tiny_disk: Path) -> None:
    rig = Rig(tmp_path, clips_dir=tiny_disk / "clips")
    try:
        frames = encode(60, noisy=True)  # about 10 kB a frame: the disk fills within the event
        rig.push(frames[:11])
        event_id = rig.recorder.start(frames[10].t, frames[10].t, "motion")
        rig.push(frames[11:])
        assert rig.full_calls, "the recorder waited for the event's end to ask for room"
        event = await rig.end(frames[-1].t)
        assert event["id"] == event_id and event["status"] == "partial"
        assert event["end"] == frames[-1].t  # the row is finished all the same
        # No room for the copy of the whole GOPs either: the .part holding them stays, named by the row.
        clip = Path(event["clip_path"])
        assert part_path_for(clip).is_file() and not clip.exists()
        recover(rig.store, rig.clips_dir)  # still no room: the part is kept for the next start
        assert part_path_for(clip).is_file() and rig.row(event_id)["clip_path"] == str(clip)
        _make_room(tiny_disk)
        recover(rig.store, rig.clips_dir)
        packets = _video_packets(clip)  # whatever reached the disk, as it was sent
        assert packets and packets == _sent(frames[:len(packets)])
        assert rig.row(event_id)["clip_size"] == clip.stat().st_size
        assert not [p for p in tiny_disk.rglob("*") if p.suffix == ".part"]
    finally:
        rig.store.close()


async def test_a_disk_too_full_for_the_clip_folder_still_records_the_event(tmp_path: Path,
                                                                          no_inodes_disk: Path) -> None:
    rig = Rig(tmp_path, clips_dir=no_inodes_disk / "clips")
    try:
        rig.push(FRAMES[:11])
        event_id = rig.recorder.start(FRAMES[10].t, FRAMES[10].t, "motion")  # the day's folder: ENOSPC
        assert len(rig.full_calls) == 1  # retention is asked for room at once
        assert rig.row(event_id)["clip_path"] is None and rig.recorder.active
        rig.push(FRAMES[11:20])
        event = await rig.end(FRAMES[19].t)
        assert event["clip_path"] is None and event["snapshot_path"] is None and event["end"] == FRAMES[19].t
    finally:
        rig.store.close()


async def test_a_disk_that_fills_while_the_clip_is_finished_asks_for_room(tmp_path: Path, roomy_disk: Path) -> None:
    rig = Rig(tmp_path, clips_dir=roomy_disk / "clips")
    try:
        frames = encode(60, noisy=True)
        rig.push(frames[:11])
        event_id = rig.recorder.start(frames[10].t, frames[10].t, "motion")
        rig.push(frames[11:])
        assert rig.full_calls == []  # everything fitted while recording
        event = await rig.end(frames[-1].t)  # the final MP4 is a second copy: no room for it
        assert len(rig.full_calls) == 1
        assert event["id"] == event_id and event["status"] == "partial" and event["end"] == frames[-1].t
        assert event["snapshot_path"] and Path(event["snapshot_path"]).is_file()
        # The complete .part is the only copy of the clip: it stays, and the row keeps the name it will have.
        clip = Path(event["clip_path"])
        assert part_path_for(clip).is_file() and not clip.exists() and event["clip_size"] is None
        # Once there is room, start-up recovery finishes it: every frame the camera sent, the row complete.
        _make_room(roomy_disk)
        recover(rig.store, rig.clips_dir)
        row = rig.row(event_id)
        assert row["clip_path"] == str(clip) and row["clip_size"] == clip.stat().st_size
        assert row["status"] == "partial" and row["end"] == frames[-1].t
        assert _video_packets(clip) == _sent(frames[:60])
        assert not part_path_for(clip).exists()
    finally:
        rig.store.close()


async def test_an_end_the_database_cannot_hold_still_announces_the_event_and_asks_for_room(rig: Rig) -> None:
    rig.push(FRAMES[:11])
    event_id = rig.recorder.start(FRAMES[10].t, FRAMES[10].t, "motion")
    for i in range(200):  # a long event: its boxes need more pages than the database may grow by
        rig.recorder.update(t=FRAMES[10].t + i, boxes=[(0.123456, 0.234567, 0.345678, 0.456789)] * 4)
    pages = rig.store.db.execute("PRAGMA page_count").fetchone()[0]
    rig.store.db.execute(f"PRAGMA max_page_count = {pages}")  # SQLite's own "database or disk is full"
    rig.push(FRAMES[11:20])
    event = await rig.end(FRAMES[19].t)
    assert len(rig.full_calls) == 1
    assert event["id"] == event_id and event["status"] == "recording"  # left for start-up recovery to repair
    assert [e["event_id"] for e in rig.published("event.ended")] == [event_id]
