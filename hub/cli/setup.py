"""`pingwatch init`, `pingwatch config validate`, `pingwatch doctor`: set up this machine and check it."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from hub.cli.common import DEFAULT_CONFIG, ConfigOpt, JsonOpt, config_path, fail, get_config, out
from hub.doctor import mqtt_checks

config_app = typer.Typer(help="Check the configuration.", no_args_is_help=True)

# The repository root (hub/cli/setup.py -> hub/cli -> hub -> root), where config/hub.example.yaml lives.
_ROOT = Path(__file__).resolve().parent.parent.parent


def init(
    config: Annotated[Path, typer.Option("--config", "-c", help="Where to write the config.")] = DEFAULT_CONFIG,
    data_dir: Annotated[Path, typer.Option(help="Data folder (relative to the current directory).")] = Path("data"),
    force: Annotated[bool, typer.Option(help="Overwrite an existing config file.")] = False,
    mqtt_host: Annotated[str | None, typer.Option(
        help="Publish to Home Assistant through this MQTT broker (enables mqtt).")] = None,
    mqtt_port: Annotated[int | None, typer.Option(min=1, max=65535, help="Broker port (8883 with --mqtt-tls).")] = None,
    mqtt_username: Annotated[str | None, typer.Option(help="The hub's account on the broker.")] = None,
    mqtt_password: Annotated[str | None, typer.Option(
        envvar="PINGWATCH_MQTT_PASSWORD",
        help="Its password (or PINGWATCH_MQTT_PASSWORD, kept out of history).")] = None,
    mqtt_tls: Annotated[bool, typer.Option(help="Connect to the broker with TLS.")] = False,
    mqtt_ca_file: Annotated[Path | None, typer.Option(help="CA of the broker's certificate.")] = None,
    mqtt_disarm_code: Annotated[str | None, typer.Option(
        envvar="PINGWATCH_MQTT_DISARM_CODE",
        help="Refuse DISARM over MQTT without this code (HA asks for it).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Write a config file (private: 0600), make the HTTPS certificate and the admin secret.

    With --mqtt-host the hub publishes to Home Assistant; give the broker an account for the hub
    (--mqtt-username/--mqtt-password) and TLS when it runs on another machine: whoever may publish on the broker
    may disarm the hub."""
    from hub.datadir import DataDir, DataDirError, write_private
    from hub.tls import ensure_certificate

    example = _ROOT / "config" / "hub.example.yaml"
    mqtt = {k: v for k, v in {
        "host": mqtt_host, "port": mqtt_port, "username": mqtt_username, "password": mqtt_password,
        "tls": True if mqtt_tls else None, "ca_file": str(mqtt_ca_file.resolve()) if mqtt_ca_file else None,
        "disarm_code": mqtt_disarm_code}.items() if v is not None}
    if mqtt_disarm_code is not None and len(mqtt_disarm_code) < 4:
        fail("--mqtt-disarm-code needs at least 4 characters", 2)
    if config.exists() and not force:
        existing = True
        if mqtt:
            fail(f"{config} exists: edit its mqtt section, or pass --force to write a new one", 2)
    else:
        existing = False
        config.parent.mkdir(parents=True, exist_ok=True)
        text = example.read_text() if example.exists() else ""
        # Stored relative to the config file, so the repo (config + data) can be moved as a whole.
        rel = os.path.relpath(data_dir.resolve(), config.parent.resolve())
        text = text.replace("data_dir: data ", f"data_dir: {rel} ", 1)
        if mqtt:
            text = set_section_values(text, "mqtt", {"enabled": True, **mqtt})
        # It will hold broker and cloud credentials: the user's alone, whatever the umask.
        write_private(config, text.encode())
    cfg = get_config(config)
    try:
        data = DataDir(cfg.storage.data_dir).ensure()
        secrets = data.load_secrets(create=True)
    except DataDirError as exc:
        fail(str(exc), 2)
    extra = [cfg.server.public_host] if cfg.server.public_host else []
    cert = ensure_certificate(data, extra)
    warnings = [w.detail for w in mqtt_checks(cfg) if not w.ok]
    result = {"config": str(config), "config_existed": existing, "data_dir": str(data.root),
              "certificate": str(cert.path), "cert_sha256": cert.fingerprint_sha256,
              "admin_secret": secrets["admin_secret"], "warnings": warnings}
    if as_json:
        print(json.dumps(result))
        return
    for w in warnings:
        out.print(f"[yellow]warning:[/] {w}")
    out.print(f"config       {config}" + ("  (kept existing)" if existing else ""))
    out.print(f"data folder  {data.root}")
    out.print(f"certificate  {cert.path}\n             SHA-256 {cert.fingerprint_sha256}")
    out.print(f"admin secret [bold]{secrets['admin_secret']}[/]  (web UI log-in; also in {data.secrets_path})")
    out.print("next: [bold]pingwatch hub run[/]")


def set_section_values(text: str, section: str, values: dict[str, object]) -> str:
    """Set ``key: value`` lines of one top-level section of the example config, keeping its comments."""
    import re

    import yaml

    lines = text.splitlines(keepends=True)
    start = next((i for i, ln in enumerate(lines) if ln.rstrip() == f"{section}:"), None)
    if start is None:
        lines.append(f"\n{section}:\n")
        start = len(lines) - 1
    end = next((i for i in range(start + 1, len(lines)) if re.match(r"^[a-z_]+:", lines[i])), len(lines))
    for key, value in values.items():
        rendered = yaml.safe_dump({key: value}, default_flow_style=True, width=10_000).strip()[1:-1].strip()
        pattern = re.compile(rf"^  {re.escape(key)}:\s*\S*(\s*#.*)?$")
        for i in range(start + 1, end):
            m = pattern.match(lines[i].rstrip("\n"))
            if m:
                lines[i] = f"  {rendered}{(m.group(1) or '').rstrip()}\n"
                break
        else:
            lines.insert(end, f"  {rendered}\n")
            end += 1
    return "".join(lines)


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
        fingerprint = _fingerprint(config)
        if fingerprint:
            # On a line of its own, whole: the one phones and browsers show must match it to the last byte.
            out.print(f"certificate SHA-256 {fingerprint}", soft_wrap=True, highlight=False)
        out.print("[green]healthy[/]" if healthy else "[red]not healthy[/]: fix the FAIL rows above")
    raise typer.Exit(0 if healthy else 1)


def _fingerprint(config: Path | None) -> str | None:
    """The hub certificate's SHA-256 fingerprint, if the config loads and the certificate exists."""
    from hub.config import ConfigError, load_config
    from hub.datadir import DataDir
    from hub.tls import TlsError, cert_info

    try:
        cert = DataDir(load_config(config_path(config)).storage.data_dir).cert_path
        return cert_info(cert).fingerprint_sha256 if cert.exists() else None
    except (ConfigError, TlsError):
        return None
