"""Headless Debian Chromium driven by Playwright (async API) as a phone stand-in with a fake camera.

The fake camera/microphone files are launch arguments, so there is one browser per distinct (video, audio, spki);
`CameraBrowsers.launch_camera_browser` caches them and `close()` closes them all. Chromium loops the files.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from .ports import INSTALL_HINT, ServiceStartError

BASE_ARGS = [
    "--no-sandbox",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--autoplay-policy=no-user-gesture-required",
    # Containers often have a tiny /dev/shm; Chromium then crashes renderers. Use /tmp instead.
    "--disable-dev-shm-usage",
]


def find_chromium() -> str:
    exe = os.environ.get("PINGWATCH_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not exe:
        raise ServiceStartError(
            f"chromium: the `chromium` binary is not installed (Debian package chromium); {INSTALL_HINT}")
    return exe


def camera_args(video: Path, audio: Path | None = None, spki: str | None = None) -> list[str]:
    args = list(BASE_ARGS)
    args.append(f"--use-file-for-fake-video-capture={Path(video).resolve()}")
    if audio is not None:
        args.append(f"--use-file-for-fake-audio-capture={Path(audio).resolve()}")
    if spki:
        args.append(f"--ignore-certificate-errors-spki-list={spki}")
    return args


class CameraBrowsers:
    """Owns one Playwright instance and the browsers launched through it (session scoped in tests/conftest.py)."""

    def __init__(self) -> None:
        self._pw = None
        self._browsers: dict[tuple, object] = {}
        self.launch_times: dict[tuple, float] = {}

    async def _playwright(self):
        if self._pw is None:
            try:
                from playwright.async_api import async_playwright
            except ImportError as e:  # pragma: no cover - depends on the environment
                raise ServiceStartError(
                    f"chromium: the Python package playwright is missing ({e}); {INSTALL_HINT}") from e
            self._pw = await async_playwright().start()
        return self._pw

    async def launch_camera_browser(self, video: Path, audio: Path | None = None, spki: str | None = None):
        """A Playwright `Browser` whose fake camera plays ``video`` (Y4M) and fake mic plays ``audio`` (WAV).

        Browsers are cached per (video, audio, spki) and closed at teardown; callers open their own contexts/pages
        (and should close those). ``spki`` is the base64 SHA-256 of a certificate's public key to trust.
        """
        video = Path(video).resolve()
        audio = Path(audio).resolve() if audio is not None else None
        for p in (video, audio):
            if p is not None and not p.is_file():
                raise FileNotFoundError(f"fake capture file {p} does not exist")
        key = (str(video), str(audio) if audio else None, spki)
        browser = self._browsers.get(key)
        if browser is not None and browser.is_connected():
            return browser
        exe = find_chromium()
        pw = await self._playwright()
        t0 = time.monotonic()
        try:
            browser = await pw.chromium.launch(executable_path=exe, headless=True, args=camera_args(video, audio, spki))
        except Exception as e:
            raise ServiceStartError(f"chromium: launching {exe} failed: {e}\n{INSTALL_HINT}") from e
        self.launch_times[key] = time.monotonic() - t0
        self._browsers[key] = browser
        return browser

    # Allow `await camera_browser(video, audio)` as well as `.launch_camera_browser(...)`.
    __call__ = launch_camera_browser

    async def close(self) -> None:
        browsers, self._browsers = list(self._browsers.values()), {}
        for b in browsers:
            try:
                await b.close()
            except Exception:  # noqa: BLE001 - teardown: a browser that is already gone is closed enough
                pass
        if self._pw is not None:
            await self._pw.stop()
            self._pw = None
