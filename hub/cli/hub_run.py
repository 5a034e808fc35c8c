"""`pingwatch hub run` (and `python -m hub`): run the hub and print its banner; `pingwatch pair`."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Annotated, Any

import typer

from hub.cli.common import ConfigOpt, JsonOpt, api_call, fail, get_config, out
from hub.config import HubConfig

hub_app = typer.Typer(help="Run the hub.", no_args_is_help=True)


@hub_app.command("run")
def hub_run(
    config: ConfigOpt = None,
    no_pair: Annotated[bool, typer.Option("--no-pair", help="Do not print a pairing code at start.")] = False,
    demo: Annotated[bool, typer.Option(
        "--demo", help="Add a synthetic camera (someone walks by every minute).")] = False,
) -> None:
    """Start the hub (HTTPS for phones, the API, every camera) until SIGTERM or Ctrl-C."""
    run_hub(get_config(config), show_pairing=not no_pair, demo=demo)


def run_hub(cfg: HubConfig, show_pairing: bool = True, demo: bool = False) -> None:
    from hub.app import PortInUseError, build_hub, run_until_stopped
    from hub.datadir import DataDirError
    from hub.logs import setup_logging
    from hub.store import StoreError
    from hub.tls import TlsError

    setup_logging(cfg.log.level, cfg.log.format)
    if demo:
        _add_demo_camera(cfg)
    try:
        hub = build_hub(cfg)
    except (DataDirError, StoreError, TlsError) as exc:
        fail(str(exc), 2)

    async def main() -> None:
        ready = asyncio.Event()
        task = asyncio.create_task(run_until_stopped(hub, ready))
        waiter = asyncio.create_task(ready.wait())
        await asyncio.wait([task, waiter], return_when=asyncio.FIRST_COMPLETED)
        if ready.is_set():
            _print_banner(hub, show_pairing)
        await task

    try:
        asyncio.run(main())
    except PortInUseError as exc:
        fail(str(exc), 2)
    except KeyboardInterrupt:
        pass


def _add_demo_camera(cfg: HubConfig) -> None:
    from hub.config import CameraConfig
    from hub.demo import DEMO_ID, make_demo_video

    if any(c.id == DEMO_ID for c in cfg.cameras):
        return
    try:
        video = make_demo_video(cfg.storage.data_dir / "demo" / "demo.mp4")
    except OSError as exc:
        fail(f"cannot write the demo video into {cfg.storage.data_dir}: {exc.strerror}", 2)
    cfg.cameras.append(CameraConfig(id=DEMO_ID, name="Demo camera", source=str(video), loop=True))


def _print_banner(hub: Any, show_pairing: bool) -> None:
    from hub.doctor import reach_checks

    urls = hub.urls()
    lines = [f"ping-watch hub is running. Phones open: {urls['camera']}",
             f"certificate SHA-256: {hub.cert.fingerprint_sha256}"]
    lines += [f"warning: {c.detail}" for c in reach_checks(hub.config) if not c.ok]
    if hub.config.server.http_port:
        lines.append(f"local API: http://127.0.0.1:{hub.config.server.http_port}/api/health")
    on_terminal = sys.stdout.isatty()
    if show_pairing and on_terminal:
        code, _ = hub.store.new_pairing_code()
        link = f"{urls['camera']}#code={code}"
        lines.append(f"pairing code (10 min): {code}   or scan:")
        lines.append(qr_text(link))
        lines.append(link)
    elif show_pairing:
        # Off a terminal this text lands in a log (systemd's journal keeps it, readable by the adm group): a live
        # code there would let whoever reads the log pair a camera. No code is made; `pingwatch pair` shows one.
        lines.append("pair a phone: run 'pingwatch pair' (pairing codes are only shown on a terminal)")
    print("\n".join(lines), file=sys.stdout if on_terminal else sys.stderr, flush=True)


def qr_text(data: str) -> str:
    import io

    import qrcode

    qr = qrcode.QRCode(border=2, error_correction=qrcode.constants.ERROR_CORRECT_L)
    qr.add_data(data)
    buf = io.StringIO()
    qr.print_ascii(out=buf, invert=True)
    return buf.getvalue()


def pair(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Show a one-time pairing code and QR code for a new phone camera."""
    cfg = get_config(config)
    body = api_call(cfg, "POST", "/api/admin/pairing-codes")
    if as_json:
        print(json.dumps(body))
        return
    out.print(f"On the phone open [bold]{body['url'].split('#')[0]}[/] and enter [bold]{body['code']}[/], or scan:")
    print(qr_text(body["url"]))
    out.print(f"certificate SHA-256 {body['cert_sha256']}")
