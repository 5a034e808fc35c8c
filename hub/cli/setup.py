"""`pingwatch init`, `pingwatch config validate`, `pingwatch doctor`: set up this machine and check it."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from hub.cli.common import DEFAULT_CONFIG, ConfigOpt, JsonOpt, config_path, fail, get_config, out

config_app = typer.Typer(help="Check the configuration.", no_args_is_help=True)

# The repository root (hub/cli/setup.py -> hub/cli -> hub -> root), where config/hub.example.yaml lives.
_ROOT = Path(__file__).resolve().parent.parent.parent


def init(
    config: Annotated[Path, typer.Option("--config", "-c", help="Where to write the config.")] = DEFAULT_CONFIG,
    data_dir: Annotated[Path, typer.Option(help="Data folder (relative to the current directory).")] = Path("data"),
    force: Annotated[bool, typer.Option(help="Overwrite an existing config file.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Write a config file, make the HTTPS certificate and the admin secret."""
    from hub.datadir import DataDir, DataDirError
    from hub.tls import ensure_certificate

    example = _ROOT / "config" / "hub.example.yaml"
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


@config_app.command("validate")
def config_validate(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Check the config file; print the effective configuration with --json."""
    cfg = get_config(config)
    if as_json:
        print(cfg.model_dump_json(indent=2))
    else:
        out.print(f"{config_path(config) or 'built-in defaults'}: ok")


def doctor(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
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
