"""`pingwatch`: set up, run and operate the hub.

Commands that make the running hub act (pairing, revoking) talk to its API on 127.0.0.1 with the admin secret;
read-only commands work on the data directory directly, so they work while the hub is stopped too.
Every listing has ``--json``; exit codes: 0 ok, 1 the thing asked for failed, 2 bad usage or configuration.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any, Optional

import typer
from rich.table import Table

from hub.cli_common import DEFAULT_CONFIG, ConfigOpt, JsonOpt, api_call, config_path, fail, get_config, out
from hub.config import HubConfig

app = typer.Typer(help="ping-watch: old phones become cameras for your home hub.", no_args_is_help=True,
                  add_completion=False, pretty_exceptions_enable=False)
hub_app = typer.Typer(help="Run the hub.", no_args_is_help=True)
config_app = typer.Typer(help="Check the configuration.", no_args_is_help=True)
cameras_app = typer.Typer(help="List and manage cameras.", no_args_is_help=True)
app.add_typer(hub_app, name="hub")
app.add_typer(config_app, name="config")
app.add_typer(cameras_app, name="cameras")

# -- init ---------------------------------------------------------------------------------------------------


@app.command()
def init(
    config: Optional[Path] = typer.Option(DEFAULT_CONFIG, "--config", "-c", help="Where to write the config."),
    data_dir: Path = typer.Option(Path("data"), help="Data folder (relative to the current directory)."),
    force: bool = typer.Option(False, help="Overwrite an existing config file."),
    as_json: bool = JsonOpt,
) -> None:
    """Write a config file, make the HTTPS certificate and the admin secret."""
    from hub.datadir import DataDir, DataDirError
    from hub.tls import ensure_certificate

    assert config is not None
    example = Path(__file__).resolve().parent.parent / "config" / "hub.example.yaml"
    if config.exists() and not force:
        existing = True
    else:
        existing = False
        config.parent.mkdir(parents=True, exist_ok=True)
        text = example.read_text() if example.exists() else ""
        # Stored relative to the config file, so the repo (config + data) can be moved as a whole.
        rel = os.path.relpath(data_dir.resolve(), config.parent.resolve())
        text = text.replace("data_dir: data ", f"data_dir: {rel} ", 1)
        config.write_text(text)
    cfg = get_config(config)
    try:
        data = DataDir(cfg.storage.data_dir).ensure()
        secrets = data.load_secrets(create=True)
    except DataDirError as exc:
        fail(str(exc), 2)
    extra = [cfg.server.public_host] if cfg.server.public_host else []
    cert = ensure_certificate(data, extra)
    result = {"config": str(config), "config_existed": existing, "data_dir": str(data.root),
              "certificate": str(cert.path), "cert_sha256": cert.fingerprint_sha256,
              "admin_secret": secrets["admin_secret"]}
    if as_json:
        print(json.dumps(result))
        return
    out.print(f"config       {config}" + ("  (kept existing)" if existing else ""))
    out.print(f"data folder  {data.root}")
    out.print(f"certificate  {cert.path}\n             SHA-256 {cert.fingerprint_sha256}")
    out.print(f"admin secret [bold]{secrets['admin_secret']}[/]  (web UI log-in; also in {data.secrets_path})")
    out.print("next: [bold]pingwatch hub run[/]")


# -- hub run ------------------------------------------------------------------------------------------------


@hub_app.command("run")
def hub_run(config: Optional[Path] = ConfigOpt,
            no_pair: bool = typer.Option(False, "--no-pair", help="Do not print a pairing code at start."),
            demo: bool = typer.Option(False, "--demo", help="Add a synthetic camera (someone walks by every minute).")
            ) -> None:
    """Start the hub (HTTPS for phones, the API, every camera) until SIGTERM or Ctrl-C."""
    run_hub(get_config(config), show_pairing=not no_pair, demo=demo)


def run_hub(cfg: HubConfig, show_pairing: bool = True, demo: bool = False) -> None:
    from hub.app import PortInUseError, open_hub, run_until_stopped
    from hub.datadir import DataDirError
    from hub.logs import setup_logging
    from hub.store import StoreError
    from hub.tls import TlsError

    setup_logging(cfg.log.level, cfg.log.format)
    if demo:
        _add_demo_camera(cfg)
    try:
        hub = open_hub(cfg)
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
    urls = hub.urls()
    lines = [f"ping-watch hub is running. Phones open: {urls['camera']}",
             f"certificate SHA-256: {hub.cert.fingerprint_sha256}"]
    if hub.config.server.http_port:
        lines.append(f"local API: http://127.0.0.1:{hub.config.server.http_port}/api/health")
    if show_pairing:
        code, _ = hub.store.new_pairing_code()
        link = f"{urls['camera']}#code={code}"
        lines.append(f"pairing code (10 min): {code}   or scan:")
        lines.append(qr_text(link))
        lines.append(link)
    print("\n".join(lines), file=sys.stderr if not sys.stdout.isatty() else sys.stdout, flush=True)


def qr_text(data: str) -> str:
    import io

    import qrcode

    qr = qrcode.QRCode(border=2, error_correction=qrcode.constants.ERROR_CORRECT_L)
    qr.add_data(data)
    buf = io.StringIO()
    qr.print_ascii(out=buf, invert=True)
    return buf.getvalue()


# -- config ---------------------------------------------------------------------------------------------------


@config_app.command("validate")
def config_validate(config: Optional[Path] = ConfigOpt, as_json: bool = JsonOpt) -> None:
    """Check the config file; print the effective configuration with --json."""
    cfg = get_config(config)
    if as_json:
        print(cfg.model_dump_json(indent=2))
    else:
        out.print(f"{config_path(config) or 'built-in defaults'}: ok")


# -- doctor ---------------------------------------------------------------------------------------------------


@app.command()
def doctor(config: Optional[Path] = ConfigOpt, as_json: bool = JsonOpt) -> None:
    """Check that this machine can run the hub: versions, ports, certificate, disk, MQTT, cloud."""
    from hub.doctor import run_checks

    checks = run_checks(config_path(config))
    healthy = all(c.ok or not c.required for c in checks)
    if as_json:
        print(json.dumps({"healthy": healthy, "checks": [c.as_dict() for c in checks]}, indent=2))
    else:
        table = Table("check", "status", "detail")
        for c in checks:
            status = "[green]ok[/]" if c.ok else ("[red]FAIL[/]" if c.required else "[yellow]warn[/]")
            table.add_row(c.name, status, c.detail)
        out.print(table)
        out.print("[green]healthy[/]" if healthy else "[red]not healthy[/]: fix the FAIL rows above")
    raise typer.Exit(0 if healthy else 1)


# -- talking to the running hub ------------------------------------------------------------------------------


@app.command()
def pair(config: Optional[Path] = ConfigOpt, as_json: bool = JsonOpt) -> None:
    """Show a one-time pairing code and QR code for a new phone camera."""
    cfg = get_config(config)
    body = api_call(cfg, "POST", "/api/admin/pairing-codes")
    if as_json:
        print(json.dumps(body))
        return
    out.print(f"On the phone open [bold]{body['url'].split('#')[0]}[/] and enter [bold]{body['code']}[/], or scan:")
    print(qr_text(body["url"]))
    out.print(f"certificate SHA-256 {body['cert_sha256']}")


@cameras_app.command("list")
def cameras_list(config: Optional[Path] = ConfigOpt, as_json: bool = JsonOpt) -> None:
    """List cameras (from the running hub; from the database when it is stopped)."""
    cfg = get_config(config)
    cams = _cameras_offline(cfg)
    if as_json:
        print(json.dumps(cams, indent=2))
        return
    table = Table("id", "name", "kind", "online", "resolution", "battery", "last seen")
    for c in cams:
        res = f"{c['width']}x{c['height']}" if c.get("width") else "-"
        batt = f"{c['battery'] * 100:.0f}%" if c.get("battery") is not None else "-"
        table.add_row(c["id"], c["name"], c["kind"], "yes" if c["online"] else "no", res, batt,
                      _ago(c.get("last_seen")))
    out.print(table)


def _cameras_offline(cfg: HubConfig) -> list[dict[str, Any]]:
    from hub.datadir import DataDir
    from hub.store import Store

    data = DataDir(cfg.storage.data_dir)
    if not data.db_path.exists():
        return []
    store = Store(data.db_path)
    try:
        return [{"id": c["id"], "name": c["name"], "kind": c["kind"], "online": bool(c["online"]),
                 "width": c["width"], "height": c["height"], "codec": c["codec"], "battery": c["battery"],
                 "last_seen": c["last_seen"]} for c in store.list_cameras()]
    finally:
        store.close()


def _ago(ts: Optional[float]) -> str:
    import time

    if not ts:
        return "never"
    s = time.time() - ts
    return f"{s:.0f}s ago" if s < 120 else f"{s / 60:.0f}m ago" if s < 7200 else f"{s / 3600:.1f}h ago"


@cameras_app.command("revoke")
def cameras_revoke(camera_id: str, config: Optional[Path] = ConfigOpt, as_json: bool = JsonOpt) -> None:
    """Revoke a camera's token and drop its stream at once (it must pair again)."""
    body = api_call(get_config(config), "POST", f"/api/admin/cameras/{camera_id}/revoke")
    print(json.dumps(body)) if as_json else out.print(f"revoked {camera_id}")


from hub.cli_events import register as _register_event_commands  # noqa: E402 - after the core commands

_register_event_commands(app, cameras_app)


def main() -> None:
    app()


def module_main() -> None:
    """`python -m hub [--config FILE]`: the same as `pingwatch hub run`."""
    sys.argv[1:1] = ["hub", "run"]
    app()


if __name__ == "__main__":
    main()
