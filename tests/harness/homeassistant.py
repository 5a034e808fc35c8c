"""A real, unmodified Home Assistant (from PyPI) on 127.0.0.1:<free port>, with only the MQTT integration.

Installed into its own venv, ``.tools/homeassistant/venv`` (Python 3.13: HA 2025.4 needs it, the hub runs on 3.11),
with a stamp file so a second install costs nothing. ``python -m tests.harness.homeassistant install`` installs it
(scripts/install-test-deps runs that); :func:`start_home_assistant` installs it on first use too, printing progress,
so a test run on a machine that skipped install-test-deps still works.

What is installed: ``homeassistant`` pinned, plus the packages the integrations it loads at start import
(paho-mqtt, the frontend, backup's securetar/cronsim, psutil, ifaddr, Pillow, isal, PyTurboJPEG), all under HA's
own ``package_constraints.txt``. HA is started with ``--skip-pip``: it never downloads anything at run time, and a
package that is missing fails the start with HA's own log in the error, instead of a silent install.

The configuration loads ``http`` (127.0.0.1 only), ``api``, ``websocket_api`` and ``config`` (for config-entry
flows), and nothing that reaches the internet (no ``default_config``, cloud, analytics or updater). Onboarding
makes the owner through ``POST /api/onboarding/users``, exchanges the auth code for tokens at ``/auth/token``,
and the MQTT entry is made through the config-entry flow API, as a user would in the UI.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .ports import HOST, ServiceStartError, free_port, stop_process, tail, wait_until

REPO_ROOT = Path(__file__).resolve().parents[2]
HA_VERSION = "2025.4.4"
TOOLS_DIR = REPO_ROOT / ".tools" / "homeassistant"
VENV = TOOLS_DIR / "venv"
STAMP = TOOLS_DIR / "installed.json"
# Imported by the integrations HA loads at start (mqtt, http, frontend via mqtt's dependencies, backup, hardware,
# network, image); versions come from HA's package_constraints.txt or, when it does not pin one, the integration
# manifests. Without them HA would pip-install at start; with --skip-pip it fails instead.
EXTRA_PACKAGES = ("paho-mqtt", "home-assistant-frontend", "cronsim", "securetar", "psutil-home-assistant", "ifaddr",
                  "Pillow", "isal", "PyTurboJPEG")
PYTHON_HINT = ("Home Assistant 2025.4 needs Python 3.13: install it with pyenv (`pyenv install 3.13`) or Debian's "
               "python3.13, or point PINGWATCH_PYTHON313 at a python3.13 executable")
CLIENT_ID = f"http://{HOST}/"  # HA accepts any URL as an OAuth client id; this one names nobody outside


def _progress(msg: str) -> None:
    # pytest captures stdout/stderr of fixtures; a multi-minute install must still say what it is doing.
    print(f"[homeassistant] {msg}", file=sys.__stderr__, flush=True)


def find_python313() -> str:
    """A Python 3.13 executable: $PINGWATCH_PYTHON313, python3.13 on PATH, or pyenv's newest 3.13.x."""
    pyenv_root = os.environ.get("PYENV_ROOT") or str(Path.home() / ".pyenv")
    candidates = [os.environ.get("PINGWATCH_PYTHON313"), shutil.which("python3.13")]
    for root in dict.fromkeys([pyenv_root, "/root/.pyenv"]):
        candidates += sorted(glob.glob(f"{root}/versions/3.13*/bin/python3.13"), reverse=True)
    for c in candidates:
        if not c or not os.access(c, os.X_OK):
            continue
        try:
            out = subprocess.run([c, "-c", "import sys; print(sys.version_info[:2] == (3, 13))"],
                                 capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if out.stdout.strip() == "True":
            return c
    raise ServiceStartError(f"homeassistant: no Python 3.13 found. {PYTHON_HINT}")


def _wanted() -> dict[str, Any]:
    return {"homeassistant": HA_VERSION, "extras": list(EXTRA_PACKAGES)}


def is_installed() -> bool:
    try:
        stamp = json.loads(STAMP.read_text())
    except (OSError, ValueError):
        return False
    return stamp.get("wanted") == _wanted() and (VENV / "bin" / "hass").exists()


def _pip(python: Path, *args: str, log: Path) -> None:
    cmd = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "--quiet", *args]
    with log.open("a") as out:
        out.write(f"$ {' '.join(cmd)}\n")
        out.flush()
        rc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT).returncode
    if rc != 0:
        raise ServiceStartError(f"homeassistant: pip failed ({rc}) installing into {VENV}:\n{tail(log, 40)}")


def install(force: bool = False) -> Path:
    """Install HA into ``.tools/homeassistant/venv`` unless the stamp says it is there; returns the ``hass`` path."""
    hass = VENV / "bin" / "hass"
    if is_installed() and not force:
        return hass
    python313 = find_python313()
    TOOLS_DIR.mkdir(parents=True, exist_ok=True)
    log = TOOLS_DIR / "install.log"
    log.write_text("")
    STAMP.unlink(missing_ok=True)
    t0 = time.monotonic()
    _progress(f"installing Home Assistant {HA_VERSION} into {VENV} (once; a few minutes; log: {log})")
    if not (VENV / "bin" / "python").exists():
        rc = subprocess.run([python313, "-m", "venv", str(VENV)], capture_output=True, text=True)
        if rc.returncode != 0:
            raise ServiceStartError(f"homeassistant: `{python313} -m venv` failed: {rc.stderr.strip()}. "
                                    "Debian's python3.13 needs python3.13-venv")
    py = VENV / "bin" / "python"
    _pip(py, "--upgrade", "pip", log=log)
    _progress("pip install homeassistant")
    _pip(py, f"homeassistant=={HA_VERSION}", log=log)
    constraints = _constraints(py)
    _progress("pip install the packages its start-up integrations import")
    _pip(py, "-c", str(constraints), *_pinned_extras(py), log=log)
    STAMP.write_text(json.dumps({"wanted": _wanted(), "constraints_sha256":
                                 hashlib.sha256(constraints.read_bytes()).hexdigest()}, indent=1))
    _progress(f"installed in {time.monotonic() - t0:.0f} s")
    return hass


def _constraints(py: Path) -> Path:
    out = subprocess.run([str(py), "-c", "import homeassistant, pathlib; "
                          "print(pathlib.Path(homeassistant.__file__).parent / 'package_constraints.txt')"],
                         capture_output=True, text=True)
    path = Path(out.stdout.strip())
    if out.returncode != 0 or not path.is_file():
        raise ServiceStartError(f"homeassistant: no package_constraints.txt in the installed HA: {out.stderr}")
    return path


def _pinned_extras(py: Path) -> list[str]:
    """EXTRA_PACKAGES with the version an integration manifest pins (the constraints file pins only some)."""
    script = (
        "import json, pathlib, re, sys, homeassistant.components as c\n"
        "want = {n.lower(): n for n in sys.argv[1:]}\n"
        "pins = {}\n"
        "for m in pathlib.Path(c.__file__).parent.glob('*/manifest.json'):\n"
        "    for r in json.loads(m.read_text()).get('requirements', []):\n"
        "        name = re.split('[=<>~!\\\\[ ]', r, maxsplit=1)[0].lower()\n"
        "        if name in want and '==' in r: pins.setdefault(name, r)\n"
        "print(json.dumps([pins.get(k, v) for k, v in want.items()]))\n"
    )
    out = subprocess.run([str(py), "-c", script, *EXTRA_PACKAGES], capture_output=True, text=True)
    if out.returncode != 0:
        raise ServiceStartError(f"homeassistant: cannot read the integration manifests: {out.stderr}")
    return list(json.loads(out.stdout))


# -- running it -------------------------------------------------------------------------------------------


CONFIGURATION = """\
homeassistant:
  name: ping-watch test
  unit_system: metric
  time_zone: UTC
  country: DE
  latitude: 0
  longitude: 0
  elevation: 0
http:
  server_host: {host}
  server_port: {port}
api:
websocket_api:
config:
onboarding:
logger:
  default: warning
  logs:
    homeassistant.components.mqtt: info
"""


@dataclass
class HomeAssistant:
    """A running HA: ``url`` (http://127.0.0.1:<port>), ``token`` (a long-lived access token of its owner),
    ``mqtt_entry_id`` (the MQTT config entry made against the harness's broker)."""

    host: str
    port: int
    config_dir: Path
    log_path: Path
    token: str = ""
    mqtt_entry_id: str = ""
    startup_s: float = 0.0
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}/api/websocket"

    def log_tail(self, n: int = 40) -> str:
        return tail(self.log_path, n)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, timeout=60.0)  # HA's own shutdown stages allow it well under a minute
            self.proc = None
        shutil.rmtree(self.config_dir, ignore_errors=True)


def _http(method: str, url: str, *, json_body: Any = None, form: dict[str, str] | None = None,
          token: str | None = None, timeout: float = 30.0) -> tuple[int, Any]:
    data, headers = None, {}
    if json_body is not None:
        data, headers["Content-Type"] = json.dumps(json_body).encode(), "application/json"
    elif form is not None:
        from urllib.parse import urlencode

        data, headers["Content-Type"] = urlencode(form).encode(), "application/x-www-form-urlencoded"
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            body = resp.read()
            status = resp.status
    except urllib.error.HTTPError as exc:
        body, status = exc.read(), exc.code
    try:
        return status, json.loads(body) if body else None
    except ValueError:
        return status, body.decode("utf-8", "replace")


def start_home_assistant(mqtt_host: str, mqtt_port: int, *, timeout: float = 240.0) -> HomeAssistant:
    """Install (first time only), start, onboard, and connect HA to the broker at ``mqtt_host:mqtt_port``."""
    hass = install()
    t0 = time.monotonic()
    config_dir = Path(tempfile.mkdtemp(prefix="pingwatch-ha-"))
    port = free_port()
    (config_dir / "configuration.yaml").write_text(CONFIGURATION.format(host=HOST, port=port))
    log_path = config_dir / "ha-stdout.log"
    with log_path.open("wb") as out:
        # --skip-pip: never download at run time; --log-no-color: plain text in error messages.
        proc = subprocess.Popen([str(hass), "--config", str(config_dir), "--skip-pip", "--log-no-color"],
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    ha = HomeAssistant(host=HOST, port=port, config_dir=config_dir, log_path=log_path, proc=proc)
    try:
        _onboard(ha, timeout)
        _add_mqtt(ha, mqtt_host, mqtt_port)
    except BaseException:
        ha.stop()
        raise
    ha.startup_s = time.monotonic() - t0
    return ha


def _onboard(ha: HomeAssistant, timeout: float) -> None:
    def onboarding_up() -> bool:
        try:
            status, _ = _http("GET", f"{ha.url}/api/onboarding", timeout=2.0)
        except OSError:
            return False
        return status == 200

    wait_until(onboarding_up, timeout=timeout, what="homeassistant (GET /api/onboarding)", proc=ha.proc,
               log=ha.log_path, interval=0.2)
    status, body = _http("POST", f"{ha.url}/api/onboarding/users", json_body={
        "client_id": CLIENT_ID, "name": "ping-watch tests", "username": "pingwatch",
        "password": "pingwatch-tests-only", "language": "en"})
    if status != 200 or "auth_code" not in (body or {}):
        raise ServiceStartError(f"homeassistant: onboarding refused ({status}): {body}\n{ha.log_tail()}")
    status, tokens = _http("POST", f"{ha.url}/auth/token", form={
        "grant_type": "authorization_code", "code": body["auth_code"], "client_id": CLIENT_ID})
    if status != 200 or "access_token" not in (tokens or {}):
        raise ServiceStartError(f"homeassistant: /auth/token refused ({status}): {tokens}")
    ha.token = _long_lived_token(ha, tokens["access_token"])

    def running() -> bool:  # the core finished starting (every integration set up), not only its HTTP server
        status, cfg = _http("GET", f"{ha.url}/api/config", token=ha.token, timeout=5.0)
        return status == 200 and isinstance(cfg, dict) and cfg.get("state") == "RUNNING"

    wait_until(running, timeout=timeout, what="homeassistant (core state RUNNING)", proc=ha.proc,
               log=ha.log_path, interval=0.2)


def _long_lived_token(ha: HomeAssistant, access_token: str) -> str:
    """A long-lived token over the WebSocket API (the short access token expires in 30 minutes)."""
    import asyncio

    import aiohttp

    async def get() -> str:
        async with aiohttp.ClientSession() as http, http.ws_connect(ha.ws_url) as ws:
            await ws.receive_json()  # auth_required
            await ws.send_json({"type": "auth", "access_token": access_token})
            ok = await ws.receive_json()
            if ok.get("type") != "auth_ok":
                raise ServiceStartError(f"homeassistant: WebSocket auth refused: {ok}")
            await ws.send_json({"id": 1, "type": "auth/long_lived_access_token", "client_name": "ping-watch tests",
                                "lifespan": 1})
            res = await ws.receive_json()
            if not res.get("success"):
                raise ServiceStartError(f"homeassistant: no long-lived token: {res}")
            return str(res["result"])

    return asyncio.run(asyncio.wait_for(get(), 30.0))


def _add_mqtt(ha: HomeAssistant, host: str, port: int) -> None:
    """The MQTT integration, set up the way a user does it in the UI: a config flow, broker and port."""
    status, flow = _http("POST", f"{ha.url}/api/config/config_entries/flow", token=ha.token,
                         json_body={"handler": "mqtt", "show_advanced_options": False})
    for _ in range(3):  # user -> broker form (the step names vary between releases); answer until an entry exists
        if status != 200 or not isinstance(flow, dict):
            raise ServiceStartError(f"homeassistant: MQTT config flow failed ({status}): {flow}\n{ha.log_tail()}")
        if flow.get("type") == "create_entry":
            ha.mqtt_entry_id = str(flow["result"]["entry_id"] if isinstance(flow["result"], dict)
                                   else flow["result"])
            return
        if flow.get("type") != "form" or flow.get("errors"):
            raise ServiceStartError(f"homeassistant: MQTT config flow stopped: {flow}\n{ha.log_tail()}")
        status, flow = _http("POST", f"{ha.url}/api/config/config_entries/flow/{flow['flow_id']}", token=ha.token,
                             json_body={"broker": host, "port": port})
    raise ServiceStartError(f"homeassistant: MQTT config flow did not finish: {flow}")


class HAClient:
    """HA's REST and WebSocket APIs with the owner's token (aiohttp): what the tests assert through.

    ``await client.ws(type, **fields)`` sends one WebSocket command and returns its result (raising on failure);
    ``subscribe_states()`` keeps every ``state_changed`` event in ``changes``, and ``wait_state`` waits for one."""

    def __init__(self, ha: HomeAssistant) -> None:
        self.ha = ha
        self.changes: list[dict[str, Any]] = []  # state_changed event data, in order

    async def __aenter__(self) -> HAClient:
        import asyncio

        import aiohttp

        self._http = aiohttp.ClientSession(headers={"Authorization": f"Bearer {self.ha.token}"},
                                           timeout=aiohttp.ClientTimeout(total=30))
        self._ws = await self._http.ws_connect(self.ha.ws_url, max_msg_size=0)
        await self._ws.receive_json()  # auth_required
        await self._ws.send_json({"type": "auth", "access_token": self.ha.token})
        ok = await self._ws.receive_json()
        if ok.get("type") != "auth_ok":
            raise ServiceStartError(f"homeassistant: WebSocket auth refused: {ok}")
        self._next_id = 1
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._changed = asyncio.Condition()
        self._reader = asyncio.create_task(self._read(), name="ha-ws-reader")
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._reader.cancel()
        await self._ws.close()
        await self._http.close()

    async def _read(self) -> None:
        async for msg in self._ws:
            data = msg.json()
            for item in data if isinstance(data, list) else [data]:  # HA may coalesce messages
                if item.get("type") == "result":
                    fut = self._pending.pop(item["id"], None)
                    if fut is not None and not fut.done():
                        fut.set_result(item)
                elif item.get("type") == "event" and item["event"].get("event_type") == "state_changed":
                    self.changes.append(item["event"]["data"])
                    async with self._changed:
                        self._changed.notify_all()
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(ConnectionError("HA closed the WebSocket"))

    async def ws(self, type_: str, **fields: Any) -> Any:
        import asyncio

        msg_id, self._next_id = self._next_id, self._next_id + 1
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = fut
        await self._ws.send_json({"id": msg_id, "type": type_, **fields})
        res = await asyncio.wait_for(fut, 30.0)
        if not res.get("success"):
            raise AssertionError(f"HA refused {type_}: {res.get('error')}")
        return res.get("result")

    async def subscribe_states(self) -> None:
        await self.ws("subscribe_events", event_type="state_changed")

    async def get(self, path: str) -> Any:
        async with self._http.get(f"{self.ha.url}{path}") as r:
            if r.status == 404:
                return None
            r.raise_for_status()
            return await r.json()

    async def get_bytes(self, path: str) -> bytes:
        async with self._http.get(f"{self.ha.url}{path}") as r:
            r.raise_for_status()
            return await r.read()

    async def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        async with self._http.post(f"{self.ha.url}{path}", json=body or {}) as r:
            text = await r.text()
            if r.status >= 400:
                raise AssertionError(f"HA answered {r.status} to POST {path}: {text}")
            return json.loads(text) if text else None

    async def state(self, entity_id: str) -> dict[str, Any] | None:
        return await self.get(f"/api/states/{entity_id}")  # type: ignore[no-any-return]

    def mark(self) -> int:
        return len(self.changes)

    async def wait_state(self, entity_id: str, state: str | None = None, *, after: int = 0,
                         timeout: float = 30.0) -> dict[str, Any]:
        """The first new state of ``entity_id`` (equal to ``state`` if given) in ``changes[after:]``."""
        import asyncio

        def find() -> dict[str, Any] | None:
            for ch in self.changes[after:]:
                new = ch.get("new_state") or {}
                if ch["entity_id"] == entity_id and (state is None or new.get("state") == state):
                    return new
            return None

        async def waiter() -> dict[str, Any]:
            async with self._changed:
                await self._changed.wait_for(lambda: find() is not None)
            found = find()
            assert found is not None
            return found

        try:
            return await asyncio.wait_for(waiter(), timeout)
        except TimeoutError:
            seen = [(c["entity_id"], (c.get("new_state") or {}).get("state")) for c in self.changes[after:]]
            raise AssertionError(f"HA: no state {state!r} of {entity_id} within {timeout}s; seen {seen[-30:]}\n"
                                 f"{self.ha.log_tail(20)}") from None

    async def until(self, check: Any, what: str, timeout: float = 30.0) -> Any:
        """Poll an async ``check`` (a registry or state read) until it returns something truthy, under a
        deadline: HA announces registry changes as events too, but a read is what the test asserts on."""
        import asyncio

        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        delay = 0.05
        while True:
            result = await check()
            if result:
                return result
            if loop.time() >= deadline:
                raise AssertionError(f"HA: {what} not within {timeout}s; last: {result!r}\n{self.ha.log_tail(20)}")
            await asyncio.sleep(delay)  # a poll interval under a deadline
            delay = min(delay * 1.5, 0.5)


if __name__ == "__main__":  # `python -m tests.harness.homeassistant install`
    if sys.argv[1:] != ["install"]:
        sys.exit("usage: python -m tests.harness.homeassistant install")
    try:
        install()
    except ServiceStartError as exc:
        sys.exit(str(exc))
    print(f"homeassistant {HA_VERSION} present in {VENV}")
