"""The whole analysis with the real bundled person model on generated clips.

What is asserted is what this model really says about these scenes (measured first): the walking figure at 45%
of the frame height scores ~0.72-0.80 in full frames; the small figure (20%) only ~0.36-0.41 in full frames but
~0.55-0.72 in the motion-guided crops; the empty scene ~0.01.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import av
import pytest

from cloud.worker.analysis import AnalysisConfig, analyse
from cloud.worker.errors import ClipError, ModelError, NoVideoError, TruncatedClipError
from cloud.worker.model import Detector
from cloud.worker.sampling import SamplingConfig
from tests.worker.scene import ClipTruth, make_clip

FEW = AnalysisConfig(sampling=SamplingConfig(max_samples=4))  # enough frames where the answer is not the point

NIGHT = datetime(2026, 3, 2, 23, 30, tzinfo=UTC)
DAY = datetime(2026, 3, 2, 11, 0, tzinfo=UTC)


def test_bundled_model_metadata(detector: Detector) -> None:
    assert detector.class_names == ["Normal", "Fall"]
    assert detector.labels == ["person"]  # both classes are a person
    assert detector.input_size == (640, 640) and detector.batch_mode == "fixed-1"
    assert detector.provider == "CPUExecutionProvider"  # this machine has no CUDA


def test_person_walking_past_the_door(walk_clip: ClipTruth, detector: Detector) -> None:
    r = analyse(walk_clip.path, walk_clip.boxes, "alert me if a person comes to the door at night", "Front door",
                NIGHT, detector=detector)
    assert [(lab.label, lab.count) for lab in r.labels] == [("person", 1)]
    person = r.labels[0]
    assert 0.6 <= person.max_confidence <= 0.95
    assert 0.9 <= person.first_seen_s <= 2.0 and 3.0 <= person.last_seen_s <= 4.1  # truth: 1.0-4.0 s
    assert r.notify is True and "23:30" in r.reason
    assert r.summary.startswith("A person crossed Front door from left to right and left after")
    assert r.tags == ["person", "night"]
    assert r.guided and r.provider == "CPUExecutionProvider" and r.model == "best_fp16.onnx"
    assert r.detector_images == r.detector_runs == len(r.frames) <= r.samples_planned <= 10
    assert r.frames_decoded < 60  # 6 s at 10 fps; decoding stops after the last planned frame
    jpeg = r.snapshots["person"]
    assert jpeg[:2] == b"\xff\xd8" and jpeg[-2:] == b"\xff\xd9"
    with av.open(__import__("io").BytesIO(jpeg)) as c:
        assert next(c.decode(video=0)).width == 1280
    x0, _y0, x1, y1 = person.snapshot_box  # the snapshot's box is where the figure was at that time
    walker = walk_clip.walkers[0]
    cx = (walker.x0 + (walker.x1 - walker.x0) * (person.snapshot_t - walker.t0) / (walker.t1 - walker.t0))
    assert x0 < cx < x1 and y1 == pytest.approx(walker.foot, abs=0.05)
    data = json.loads(r.dumps())  # the result is JSON
    assert data["labels"][0]["label"] == "person" and data["snapshot_sizes"]["person"] == len(jpeg)
    assert data["frames"][0]["detections"] == [] or data["frames"][0]["detections"][0]["track"] == 1


def test_same_clip_by_day_does_not_notify(walk_clip: ClipTruth, detector: Detector) -> None:
    r = analyse(walk_clip.path, walk_clip.boxes, "alert me if a person comes to the door at night", "Front door",
                DAY, FEW, detector=detector)
    assert r.labels and r.notify is False and "outside 20:00–06:00" in r.reason


def test_guided_crops_find_the_small_person_full_frames_miss(small_walk_clip: ClipTruth,
                                                            detector: Detector) -> None:
    guided = analyse(small_walk_clip.path, small_walk_clip.boxes, None, "Porch", DAY, detector=detector)
    assert [lab.label for lab in guided.labels] == ["person"]
    assert any(f.region != (0.0, 0.0, 1.0, 1.0) for f in guided.frames)
    sparse = analyse(small_walk_clip.path, None, None, "Porch", DAY, detector=detector)  # 3 full frames
    assert not sparse.guided and sparse.labels == []
    assert sparse.best_guess is not None and 0.25 <= sparse.best_guess["score"] < 0.6
    assert sparse.summary.startswith("Nothing was recognised at Porch (the model's best guess was a person at")
    assert sparse.notify is False and "motion-only" in sparse.tags
    assert list(sparse.snapshots) == ["candidate"] and sparse.key_frames == [sparse.snapshots["candidate"]]
    assert sparse.top_score == sparse.best_guess["score"]


def test_empty_scene(empty_clip: ClipTruth, detector: Detector) -> None:
    r = analyse(empty_clip.path, None, "people", "Hall", NIGHT, detector=detector)
    assert r.labels == [] and r.best_guess is None and r.notify is False
    assert r.summary == "Nothing was recognised at Hall."
    assert r.snapshots == {}


def test_early_stop_on_long_motion(tmp_path: Path, walk_clip: ClipTruth, detector: Detector) -> None:
    # motion reported over the whole clip: 12 planned frames, the answer is stable long before the end
    boxes = [[t / 5, 0.05, 0.35, 0.55, 0.9] for t in range(30)]
    r = analyse(walk_clip.path, boxes, None, "Door", DAY, AnalysisConfig(min_samples=4, patience=2),
                detector=detector)
    assert r.stopped_early and r.detector_images < r.samples_planned
    assert [(lab.label, lab.count) for lab in r.labels] == [("person", 1)]


def test_vp8_webm_is_analysed(vp8_clip: ClipTruth, detector: Detector) -> None:
    r = analyse(vp8_clip.path, vp8_clip.boxes, None, "Garden", DAY, FEW, detector=detector)
    assert r.clip["codec"] == "vp8"
    assert [(lab.label, lab.count) for lab in r.labels] == [("person", 1)]


def test_naive_mode_sees_every_frame(tmp_path: Path, detector: Detector) -> None:
    clip = make_clip(tmp_path / "short.mp4", [], seconds=1.0, size=(640, 360), fps=5)
    r = analyse(clip.path, None, None, "Hall", DAY, AnalysisConfig(mode="naive"), detector=detector)
    assert r.frames_decoded == r.detector_images == 5 and not r.guided and r.labels == []


@pytest.mark.parametrize("kind", ["zero", "garbage", "truncated-mp4", "missing"])
def test_unreadable_clips_are_a_clear_error(kind: str, tmp_path: Path, walk_clip: ClipTruth,
                                            detector: Detector) -> None:
    path = tmp_path / "clip.mp4"
    data = walk_clip.path.read_bytes()
    if kind == "zero":
        path.write_bytes(b"")
    elif kind == "garbage":
        path.write_bytes(b"\x00\x00\x00\x18ftypisom" + bytes(range(256)) * 50)
    elif kind == "truncated-mp4":  # the index (moov) is at the end: half a file has none
        path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ClipError) as exc:
        analyse(path, walk_clip.boxes, None, "Door", DAY, detector=detector)
    assert exc.value.reason == "clip_unreadable" and exc.value.hint
    assert {"zero": "empty", "garbage": "not a readable video", "truncated-mp4": "not a readable video",
            "missing": "not found"}[kind] in exc.value.message


def test_truncated_webm_says_where_it_ends(tmp_path: Path, vp8_clip: ClipTruth, detector: Detector) -> None:
    path = tmp_path / "cut.webm"
    data = vp8_clip.path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(TruncatedClipError) as exc:
        analyse(path, vp8_clip.boxes, None, "Door", DAY, detector=detector)
    assert exc.value.reason == "clip_truncated" and "ends at" in exc.value.message


def test_clip_without_video(audio_only_clip: Path, detector: Detector) -> None:
    with pytest.raises(NoVideoError) as exc:
        analyse(audio_only_clip, None, None, "Door", DAY, detector=detector)
    assert exc.value.reason == "clip_has_no_video"


def test_bad_model_path_through_analyse(walk_clip: ClipTruth, tmp_path: Path) -> None:
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"\x08\x07garbage")
    with pytest.raises(ModelError) as exc:
        analyse(walk_clip.path, None, None, config=AnalysisConfig(model_path=str(broken)))
    assert exc.value.reason == "model_unavailable" and "does not load" in exc.value.message


def test_batch_rewrite_matches_batch_one(walk_clip: ClipTruth, detector: Detector) -> None:
    """The fixed batch-1 model rewritten in memory to a dynamic batch gives the same detections."""
    batched = Detector(batch_size=2)
    assert batched.batch_mode == "rewritten-dynamic"
    with av.open(str(walk_clip.path)) as c:  # frames at 1.0, 2.0 and 3.0 s: the figure is in them
        frames = [f.to_ndarray(format="rgb24") for i, f in zip(range(31), c.decode(video=0), strict=False)
                  if i in (10, 20, 30)]
    one = detector.detect(frames)
    two = batched.detect(frames)
    assert batched.runs == 2 and batched.images == 3
    assert any(one)
    assert [[d.label for d in f] for f in one] == [[d.label for d in f] for f in two]
    for a, b in zip(one, two, strict=False):
        for da, db in zip(a, b, strict=False):
            assert da.score == pytest.approx(db.score, abs=1e-3)
            assert da.box == pytest.approx(db.box, abs=0.5)
