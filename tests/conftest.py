"""Shared fixtures: real services, really started on 127.0.0.1 with free ports, torn down at session end.

A service starts only when a test asks for its fixture. A service that cannot start fails the tests that need it
with a message naming what is missing and what to run (`scripts/install-test-deps`); nothing is skipped.

Fixtures (session scoped):
- ``mosquitto``: host, port, url
- ``azurite``: blob_url, queue_url, table_url, connection_string, account_name, account_key
- ``postgres``: dsn, host, port, user, dbname, create_database(name) -> dsn
- ``camera_browser``: async factory ``await camera_browser(video, audio=None, spki=None)`` -> Playwright Browser
  with that fake camera/mic (one browser per distinct file set; also ``camera_browser.launch_camera_browser``)
- ``telegram`` (per test): a fake Telegram Bot API server speaking the real protocol (tests.harness.telegram)
- ``media_dir``: a temp dir for generated media
- ``smoke_scene``: a generated 640x360 15 fps moving-square Y4M plus a 440 Hz WAV (SceneFiles)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest
import pytest_asyncio

from tests.harness import media
from tests.harness.azurite import Azurite, start_azurite
from tests.harness.chromium import CameraBrowsers
from tests.harness.mosquitto import Mosquitto, start_mosquitto
from tests.harness.ports import ServiceStartError
from tests.harness.postgres import Postgres, start_postgres
from tests.harness.rtsp import RtspServer, start_rtsp_server
from tests.harness.telegram import FakeTelegram

T = TypeVar("T")

# name -> seconds to start, shown in the terminal summary.
_START_TIMES: dict[str, float] = {}


def _start(name: str, starter: Callable[[], T]) -> T:
    try:
        return starter()
    except ServiceStartError as e:
        pytest.fail(f"[harness] {name} could not start: {e}", pytrace=False)


@pytest.fixture(scope="session")
def mosquitto() -> Mosquitto:
    broker = _start("mosquitto", start_mosquitto)
    _START_TIMES["mosquitto"] = broker.startup_s
    try:
        yield broker
    finally:
        broker.stop()


def _rtsp_camera(**options: int) -> Iterator[RtspServer]:
    server = _start("RTSP server", lambda: start_rtsp_server(keyint_s=1, **options))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def rtsp_server() -> Iterator[RtspServer]:
    """A running RTSP camera (gst-rtsp-server: main and sub stream, still picture, quiet noise; restartable on its
    port), per test: tests restart and stop it."""
    yield from _rtsp_camera()


@pytest.fixture
def rtsp_server_sub_audio() -> Iterator[RtspServer]:
    """The same camera with its audio on the sub-stream too, as many cameras send it."""
    yield from _rtsp_camera(sub_audio=1)


@pytest.fixture(scope="session")
def azurite() -> Azurite:
    az = _start("azurite", start_azurite)
    _START_TIMES["azurite"] = az.startup_s
    try:
        yield az
    finally:
        az.stop()


@pytest.fixture(scope="session")
def postgres() -> Postgres:
    pg = _start("postgres", start_postgres)
    _START_TIMES["postgres"] = pg.startup_s
    try:
        yield pg
    finally:
        pg.stop()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def camera_browser() -> CameraBrowsers:
    browsers = CameraBrowsers()
    try:
        yield browsers
    finally:
        for key, secs in browsers.launch_times.items():
            _START_TIMES[f"chromium ({Path(key[0]).name})"] = secs
        await browsers.close()


@pytest_asyncio.fixture(loop_scope="session")
async def telegram() -> FakeTelegram:
    """A fresh fake Telegram Bot API on 127.0.0.1 per test (tests.harness.telegram)."""
    async with FakeTelegram() as server:
        yield server


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


@dataclass(frozen=True)
class SceneFiles:
    video: Path
    audio: Path
    width: int
    height: int
    fps: int


@pytest.fixture(scope="session")
def smoke_scene(media_dir: Path) -> SceneFiles:
    w, h, fps = 640, 360, 15
    video = media.write_y4m(media_dir / "moving_square.y4m", media.moving_square_scene(w, h, fps, seconds=4), fps)
    audio = media.write_wav(media_dir / "tone440.wav", media.sine_wave(440.0, seconds=2.0), rate=48000)
    return SceneFiles(video=video, audio=audio, width=w, height=h, fps=fps)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if _START_TIMES:
        parts = ", ".join(f"{k} {v:.2f}s" for k, v in _START_TIMES.items())
        terminalreporter.write_line(f"harness start times: {parts}")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def api(hub):
    """An HTTPS client for the module's own ``hub`` fixture (a tests.hubproc.HubProcess), trusting its certificate."""
    import ssl

    import httpx

    ctx = ssl.create_default_context(cafile=str(hub.cert_path))
    async with httpx.AsyncClient(base_url=hub.https, verify=ctx, timeout=10.0) as client:
        yield client
