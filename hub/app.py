"""The composition root: the one place that builds the hub's components and wires them together.

Each component gets only what it needs, typed; nothing below this module imports it. Who builds whom and who
may call whom is drawn in docs/architecture.md ("Composition"). Start-up and shutdown order is the list in
``_stages``: started top to bottom, stopped bottom to top, so open clips are finished (their post-roll cut short)
while the MQTT bridge and the web UI's sockets still listen, and the database closes last.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from dataclasses import dataclass, field

from aiohttp import web

from hub import __version__
from hub.arming import ArmState
from hub.bus import Bus
from hub.cameras import CameraManager
from hub.config import HubConfig
from hub.control import Controller
from hub.datadir import DataDir
from hub.lifecycle import Lifecycle, Stage
from hub.live import LiveRelays
from hub.notify import Notifier
from hub.pipeline import PipelineContext
from hub.recovery import recover
from hub.scheduler import HubScheduler
from hub.store import Store
from hub.tls import CertInfo, ensure_certificate, lan_address, server_context
from hub.upload.channel import CloudChannel
from hub.upload.commands import CommandRunner
from hub.upload.hub_state import StateReporter
from hub.upload.link import CloudLink, load_link
from hub.upload.starts import StartReporter
from hub.upload.uploader import Uploader
from hub.web.context import WebContext
from hub.web.guard import ConnectionLimits, ConnectionRegistry, GuardedSite
from hub.web.server import build_web_app
from hub.web.ui import close_sockets
from mqtt.bridge import MqttBridge, stable_hub_id

log = logging.getLogger(__name__)


@dataclass
class HubRuntime:
    """Everything the root built. Only the root and the entry points (``pingwatch hub run``, tests) hold it."""

    config: HubConfig
    data: DataDir
    store: Store
    bus: Bus
    cert: CertInfo
    arming: ArmState
    scheduler: HubScheduler
    cameras: CameraManager
    control: Controller
    live: LiveRelays
    mqtt: MqttBridge | None
    uploader: Uploader
    cloud: CloudChannel
    notifier: Notifier
    web: web.Application
    lifecycle: Lifecycle
    started_at: float = field(default_factory=time.time)

    def urls(self) -> dict[str, str]:
        return hub_urls(self.config)


def hub_urls(config: HubConfig) -> dict[str, str]:
    # What phones are told: the configured public name; else the one address the server binds, when it binds one
    # (a hub on 127.0.0.1 must not hand out a LAN address it does not answer on: `hub run` and `doctor` warn);
    # else this machine's LAN address.
    bind = config.server.host
    host = config.server.public_host or (lan_address() if bind in ("0.0.0.0", "::", "") else bind)
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 literal in a URL
    base = f"https://{host}:{config.server.https_port}"
    return {"base": base, "camera": f"{base}/cam/", "ui": f"{base}/"}


def build_hub(config: HubConfig) -> HubRuntime:
    """Open the data folder, the database and the certificate, and build every component (nothing runs yet:
    ``HubRuntime.web``'s start-up runs the lifecycle)."""
    import cv2

    # Every camera's detector runs on the event loop; OpenCV's own worker threads only oversubscribe the
    # Pi's cores (measured: the detector is as fast single-threaded, 0.21 vs 0.20 ms per frame).
    cv2.setNumThreads(1)
    data = DataDir(config.storage.data_dir).ensure()
    secrets = data.load_secrets(create=True)
    store = Store(data.db_path)
    cert = ensure_certificate(data, [config.server.public_host] if config.server.public_host else [])
    bus = Bus()

    arming = ArmState(store, bus)
    scheduler = HubScheduler(config.storage, config.arming, data.db_path, data.clips_dir, store, bus, arming)
    cameras = CameraManager(PipelineContext(
        config=config, store=store, bus=bus, clips_dir=data.clips_dir, scratch_dir=data.root,
        is_armed=arming.is_armed, on_disk_full=lambda: scheduler.prune_soon(emergency=True)))
    arming.add_listener(cameras.apply_armed)
    control = Controller(arming, cameras)
    live = LiveRelays(cameras)
    cameras.add_removal_listener(live.close_camera)
    uploader = Uploader(config.cloud, store, bus, data.clips_dir, data.root / "uploads", lambda: load_link(data.root))
    cloud = _cloud_channel(config, data, store, bus, control)
    notifier = Notifier(config.telegram, store, bus, control, data.clips_dir, data.root / "telegram",
                        hub_url=lambda: hub_urls(config)["ui"])
    mqtt = (MqttBridge(config.mqtt, bus, control, stable_hub_id(store), hub_urls(config)["base"],
                       uploads_pending=uploader.outbox.open_count if config.cloud.enabled else None)
            if config.mqtt.enabled else None)

    started_at = time.time()
    app = build_web_app(WebContext(
        config=config, data=data, store=store, bus=bus, cert=cert, admin_secret=secrets["admin_secret"],
        started_at=started_at, cameras=cameras, control=control, live=live, urls=lambda: hub_urls(config),
        closing=lambda: lifecycle.stopping,  # bound when called: the lifecycle is made just below
        cloud_status=lambda: uploader.status() | {"channel": cloud.status()}))
    lifecycle = Lifecycle(_stages(data, store, arming, scheduler, cameras, live, mqtt, uploader, cloud, notifier,
                                  app))

    async def on_startup(_: web.Application) -> None:
        await lifecycle.start()

    async def on_shutdown(_: web.Application) -> None:
        await lifecycle.stop()

    async def on_cleanup(_: web.Application) -> None:
        store.close()
        log.info("hub stopped")

    app.on_startup.append(on_startup)
    app.on_shutdown.append(on_shutdown)
    app.on_cleanup.append(on_cleanup)
    return HubRuntime(config=config, data=data, store=store, bus=bus, cert=cert, arming=arming, scheduler=scheduler,
                      cameras=cameras, control=control, live=live, mqtt=mqtt, uploader=uploader, cloud=cloud,
                      notifier=notifier, web=app, lifecycle=lifecycle,
                      started_at=started_at)


def _cloud_channel(config: HubConfig, data: DataDir, store: Store, bus: Bus, control: Controller) -> CloudChannel:
    """The hub channel of a linked hub (hub/upload/channel.py): event starts with their snapshot, the hub's state,
    commands from the account. Each sender reads the link at every pass, like the uploader: no restart to link."""
    def link() -> CloudLink | None:
        return load_link(data.root)

    starts = StartReporter(config.cloud, store, bus, control, link)
    state = StateReporter(config.cloud, store, bus, control, control.rearms_at, link,
                          on_reached=starts.cloud_is_back)
    commands = CommandRunner(config.cloud, store, control, link, on_reached=starts.cloud_is_back)
    return CloudChannel(starts, state, commands)


def _stages(data: DataDir, store: Store, arming: ArmState, scheduler: HubScheduler, cameras: CameraManager,
            live: LiveRelays, mqtt: MqttBridge | None, uploader: Uploader, cloud: CloudChannel, notifier: Notifier,
            app: web.Application) -> list[Stage]:
    """The start-up order (shutdown is its reverse). Consumers of the bus start before the cameras that feed it
    and stop after them, so an event that ends during shutdown still reaches MQTT and the web UI."""

    async def repair() -> None:
        repaired = await asyncio.to_thread(recover, store, data.clips_dir)
        if any(repaired.values()):
            log.warning("repaired events interrupted by a crash", extra=repaired)

    async def restore_timed_arming() -> None:
        arming.restore()

    async def stop_timers() -> None:
        arming.close()

    async def close_ui_sockets() -> None:
        await close_sockets(app)

    stages = [
        Stage("recovery", start=repair),
        Stage("arming", start=restore_timed_arming, stop=stop_timers),
        Stage("scheduler", start=scheduler.start, stop=scheduler.stop),
        Stage("web-ui-sockets", stop=close_ui_sockets),
    ]
    if mqtt is not None:
        stages.append(Stage("mqtt", start=mqtt.start, stop=mqtt.stop))  # start returns at once; connects later
    stages += [
        Stage("uploader", start=uploader.start, stop=uploader.stop),  # queues events that end while cameras stop
        Stage("cloud-channel", start=cloud.start, stop=cloud.stop),  # event starts, hub state, commands
        Stage("telegram", start=notifier.start, stop=notifier.stop),  # the same: alerts of events cut by shutdown
        Stage("live-view", stop=live.close_all),
        Stage("cameras", start=cameras.start, stop=cameras.stop),
    ]
    return stages


async def serve(hub: HubRuntime) -> web.AppRunner:
    """Bind HTTPS on the LAN and, if enabled, plain HTTP on 127.0.0.1 (a secure context for local tools)."""
    cfg = hub.config.server
    runner = web.AppRunner(hub.web, handle_signals=False, access_log=None, shutdown_timeout=5,
                           keepalive_timeout=cfg.keepalive_timeout_s)
    await runner.setup()
    limits = ConnectionLimits(header_timeout_s=cfg.header_timeout_s, tls_handshake_timeout_s=cfg.header_timeout_s,
                              max_per_client=cfg.max_connections_per_client)
    registry = ConnectionRegistry()  # a client's connections count across both ports
    sites = [GuardedSite(runner, cfg.host, cfg.https_port, limits=limits, registry=registry,
                         ssl_context=server_context(hub.data))]
    if cfg.http_port:
        sites.append(GuardedSite(runner, "127.0.0.1", cfg.http_port, limits=limits, registry=registry))
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


async def run_until_stopped(hub: HubRuntime, ready: asyncio.Event | None = None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runner = await serve(hub)
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
