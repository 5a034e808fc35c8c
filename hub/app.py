"""The hub process: one aiohttp application owning the store, the bus and the cameras.

Start-up order matters: data dir → store → certificate → cameras → HTTP(S). Shutdown runs in reverse so open
clips are finished (their post-roll cut short) before peers close and before the database is flushed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from hub import __version__
from hub.bus import Bus
from hub.config import HubConfig
from hub.datadir import DataDir
from hub.store import Store
from hub.tls import CertInfo, ensure_certificate

log = logging.getLogger(__name__)

HUB_KEY: web.AppKey[Hub] = web.AppKey("hub", object)  # type: ignore[arg-type]
REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Hub:
    config: HubConfig
    data: DataDir
    store: Store
    bus: Bus
    cert: CertInfo
    secrets: dict[str, str]
    started_at: float = field(default_factory=time.time)
    cameras: Any = None  # hub.cameras.CameraManager, set in create_app
    control: Any = None  # hub.control.Controller, set in create_app
    mqtt: Any = None  # mqtt.bridge.MqttBridge when mqtt.enabled
    scheduler: Any = None  # hub.scheduler.HubScheduler
    live: Any = None  # hub.live.LiveRelays, set by hub.web.ui.setup_ui
    closing: bool = False

    def urls(self) -> dict[str, str]:
        from hub.tls import lan_address

        host = self.config.server.public_host or lan_address()
        base = f"https://{host}:{self.config.server.https_port}"
        return {"base": base, "camera": f"{base}/cam/", "ui": f"{base}/"}


def open_hub(config: HubConfig) -> Hub:
    import cv2

    # Every camera's detector runs on the event loop; OpenCV's own worker threads only oversubscribe the
    # Pi's cores (measured: the detector is as fast single-threaded, 0.21 vs 0.20 ms per frame).
    cv2.setNumThreads(1)
    data = DataDir(config.storage.data_dir).ensure()
    secrets = data.load_secrets(create=True)
    store = Store(data.db_path)
    extra = [config.server.public_host] if config.server.public_host else []
    cert = ensure_certificate(data, extra)
    return Hub(config=config, data=data, store=store, bus=Bus(), cert=cert, secrets=secrets)


def create_app(hub: Hub) -> web.Application:
    from hub.cameras import CameraManager
    from hub.web.api import setup_routes

    app = web.Application(client_max_size=hub.config.server.max_body_bytes)
    app[HUB_KEY] = hub
    from hub.control import Controller

    hub.cameras = CameraManager(hub)
    hub.control = Controller(hub)
    setup_routes(app)

    async def on_startup(_: web.Application) -> None:
        from hub.recovery import recover
        from hub.scheduler import HubScheduler

        repaired = await asyncio.to_thread(recover, hub.store, hub.data.clips_dir)
        if any(repaired.values()):
            log.warning("repaired events interrupted by a crash", extra=repaired)
        hub.scheduler = HubScheduler(hub)
        hub.scheduler.start()
        asyncio.get_running_loop().create_task(hub.scheduler.prune())
        await hub.cameras.start()
        if hub.config.mqtt.enabled:
            from mqtt.bridge import MqttBridge, stable_hub_id

            hub.mqtt = MqttBridge(hub.config.mqtt, hub.bus, hub.control, stable_hub_id(hub.store), hub.urls()["base"])
            await hub.mqtt.start()  # returns at once; connects (and reconnects) in the background

    async def on_shutdown(_: web.Application) -> None:
        hub.closing = True
        if hub.scheduler is not None:
            await hub.scheduler.stop()
        if hub.mqtt is not None:
            await hub.mqtt.stop()
        await hub.cameras.stop()

    async def on_cleanup(_: web.Application) -> None:
        hub.store.close()
        log.info("hub stopped")

    app.on_startup.append(on_startup)
    app.on_shutdown.append(on_shutdown)
    app.on_cleanup.append(on_cleanup)
    return app


async def serve(hub: Hub, app: web.Application) -> web.AppRunner:
    """Bind HTTPS on the LAN and, if enabled, plain HTTP on 127.0.0.1 (a secure context for local tools)."""
    from hub.tls import server_context

    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=5)
    await runner.setup()
    cfg = hub.config.server
    sites = [web.TCPSite(runner, cfg.host, cfg.https_port, ssl_context=server_context(hub.data))]
    if cfg.http_port:
        sites.append(web.TCPSite(runner, "127.0.0.1", cfg.http_port))
    for site in sites:
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise PortInUseError(site.name, exc) from None
    return runner


class PortInUseError(Exception):
    def __init__(self, site: str, exc: OSError) -> None:
        super().__init__(
            f"cannot listen on {site} ({exc.strerror}); another program (or another hub) uses the port: stop it "
            f"or change server.https_port / server.http_port in the config"
        )


async def run_until_stopped(hub: Hub, ready: asyncio.Event | None = None) -> None:
    import signal

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    app = create_app(hub)
    runner = await serve(hub, app)
    log.info("hub started", extra={"version": __version__, "data_dir": str(hub.data.root), **hub.urls()})
    _notify_systemd("READY=1")
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
    finally:
        log.info("shutting down")
        _notify_systemd("STOPPING=1")
        await runner.cleanup()


def _notify_systemd(state: str) -> None:
    """sd_notify without a dependency: one datagram to $NOTIFY_SOCKET when systemd asked for it."""
    import os
    import socket

    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return
    if path.startswith("@"):
        path = "\0" + path[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        try:
            s.connect(path)
            s.sendall(state.encode())
        except OSError:
            log.warning("could not notify systemd", extra={"state": state})
