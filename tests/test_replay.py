"""`pingwatch replay`: the live trigger code on files, with clips cut exactly as live."""

import json
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from hub.media.h264 import avcc_to_annexb, split_annexb
from tests import scenes
from tests.harness.media import write_wav, write_y4m


def encode_mp4(path: Path, frames: list[np.ndarray], fps: int, gop: int = 15) -> Path:
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=fps)
        s.width, s.height = frames[0].shape[1], frames[0].shape[0]
        s.pix_fmt = "yuv420p"
        s.options = {"profile": "baseline", "g": str(gop), "bf": "0", "preset": "veryfast", "crf": "23"}
        for i, y in enumerate(frames):
            f = av.VideoFrame.from_ndarray(y, format="gray").reformat(format="yuv420p")
            f.pts = i
            f.time_base = Fraction(1, fps)
            out.mux(s.encode(f))
        out.mux(s.encode())
    return path


def slices(avcc: bytes) -> bytes:
    """The coded slices of a length-prefixed H.264 sample (no SPS/PPS/SEI/AUD)."""
    nals = split_annexb(avcc_to_annexb(avcc))
    return b"".join(n for n in nals if n and (n[0] & 0x1F) not in (6, 7, 8, 9))


def replay(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hub.cli", "replay", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=180)


@pytest.fixture(scope="module")
def walk_mp4(tmp_path_factory) -> tuple[Path, scenes.VideoScene]:
    scene = scenes.person_near(size=(640, 360), fps=15)
    return encode_mp4(tmp_path_factory.mktemp("replay") / "walk.mp4", scene.frames, 15), scene


def events_of(r: subprocess.CompletedProcess[str]) -> list[dict]:
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]


def test_walk_gives_one_motion_event_close_to_the_onset(walk_mp4, tmp_path):
    path, scene = walk_mp4
    evs = events_of(replay(str(path), "--json", cwd=tmp_path))
    assert len(evs) == 1, evs
    ev = evs[0]
    onset = scene.onsets[0]
    assert ev["trigger"] == "motion"
    assert abs(ev["start"] - onset) <= 0.5 and 0 <= ev["detected_at"] - onset <= 0.5, ev
    assert ev["end"] > ev["detected_at"] and ev["peak_motion"] > 0.01
    assert ev["boxes"] and all(0 <= v <= 1 for v in ev["boxes"][0][1:])


def test_masking_the_whole_frame_silences_it(walk_mp4, tmp_path):
    path, _ = walk_mp4
    assert events_of(replay(str(path), "--json", "--mask", "0,0 1,0 1,1 0,1", cwd=tmp_path)) == []
    human = replay(str(path), "--mask", "0,0 1,0 1,1 0,1", cwd=tmp_path)
    assert human.returncode == 0 and "0 event(s)" in human.stdout


def test_quiet_scenes_from_y4m_give_nothing(tmp_path):
    for scene in (scenes.static(size=(640, 360), fps=15), scenes.lights(size=(640, 360), fps=15)):
        y4m = write_y4m(tmp_path / f"{scene.name}.y4m", [np.dstack([y] * 3) for y in scene.frames], 15)
        assert events_of(replay(str(y4m), "--json", cwd=tmp_path)) == [], scene.name


def test_clap_in_a_separate_wav(tmp_path):
    still = scenes.static(size=(320, 180), fps=5)
    y4m = write_y4m(tmp_path / "still.y4m", [np.dstack([y] * 3) for y in still.frames], 5)
    clap = scenes.audio_clap_quiet()
    wav = write_wav(tmp_path / "clap.wav", clap.samples, clap.sample_rate)
    evs = events_of(replay(str(y4m), "--audio", str(wav), "--json", cwd=tmp_path))
    assert [e["trigger"] for e in evs] == ["sound"]
    assert abs(evs[0]["start"] - clap.onsets[0]) <= 0.5 and evs[0]["audio_peak_dbfs"] > -40


def test_clips_are_remuxed_packets_of_the_source(walk_mp4, tmp_path):
    path, scene = walk_mp4
    clips = tmp_path / "clips"
    evs = events_of(replay(str(path), "--json", "--clips", str(clips), cwd=tmp_path))
    assert len(evs) == 1 and evs[0]["clip"], evs
    clip = Path(evs[0]["clip"])
    assert clip.exists() and clip.suffix == ".mp4" and Path(evs[0]["snapshot"]).exists()
    assert not list(clips.rglob(".*")), "no temp files left"
    with av.open(str(path)) as src:
        source = [slices(bytes(p)) for p in src.demux(video=0) if p.size]
    with av.open(str(clip)) as c:
        vs = c.streams.video[0]
        got = [slices(bytes(p)) for p in c.demux(vs) if p.size]
        duration = float(vs.duration * vs.time_base) if vs.duration else float(c.duration / av.time_base)
    with av.open(str(clip)) as c:
        decoded = sum(1 for _ in c.decode(video=0))
    # byte-identical coded pictures: the clip is a contiguous run of the source's packets from a keyframe
    # (parameter sets are repeated in-band on every IDR, so they are left out of the comparison)
    start = source.index(got[0])
    assert got == source[start:start + len(got)]
    assert decoded == len(got)
    expected = min(evs[0]["end"], len(scene.frames) / 15) - max(0.0, evs[0]["start"] - 5.0)
    assert abs(duration - expected) <= 1.0 + 1 / 15, (duration, expected)  # within one GOP


def test_corrupt_file_names_the_file(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40)
    r = replay(str(bad), cwd=tmp_path)
    assert r.returncode == 1 and str(bad) in r.stderr
    missing = replay(str(tmp_path / "nope.mp4"), cwd=tmp_path)
    assert missing.returncode == 2 and "no such file" in missing.stderr
    badmask = replay(str(bad), "--mask", "0,0 2,0 1,1", cwd=tmp_path)
    assert badmask.returncode == 2 and "polygon" in badmask.stderr
