"""Shared pieces of the `pingwatch` commands: consoles, errors, config loading, calls to the running hub."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console

from hub.config import ConfigError, HubConfig, load_config

out = Console()
err = Console(stderr=True)

DEFAULT_CONFIG = Path("config/hub.yaml")
ConfigOpt = typer.Option(None, "--config", "-c", envvar="PINGWATCH_CONFIG",
                         help="Config file (default: config/hub.yaml if it exists, else built-in defaults).")
JsonOpt = typer.Option(False, "--json", help="Print JSON for scripts.")


def fail(message: str, code: int = 1) -> None:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def config_path(path: Optional[Path]) -> Optional[Path]:
    if path is not None:
        return path
    return DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None


def get_config(path: Optional[Path]) -> HubConfig:
    try:
        return load_config(config_path(path))
    except ConfigError as exc:
        fail(str(exc), 2)
        raise  # unreachable; keeps type checkers happy


def api_call(cfg: HubConfig, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
    import httpx

    from hub.datadir import DataDir, DataDirError

    try:
        secret = DataDir(cfg.storage.data_dir).load_secrets(create=False)["admin_secret"]
    except DataDirError as exc:
        fail(str(exc), 2)
    if cfg.server.http_port:
        base, verify = f"http://127.0.0.1:{cfg.server.http_port}", True
    else:
        base = f"https://127.0.0.1:{cfg.server.https_port}"
        verify = False  # our own self-signed certificate on loopback
    try:
        r = httpx.request(method, base + path, headers={"Authorization": f"Bearer {secret}"}, timeout=10,
                          verify=verify, **kwargs)
    except httpx.HTTPError:
        fail(f"the hub is not answering at {base}; start it with 'pingwatch hub run'")
    body = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
    if r.status_code >= 400:
        hint = f" ({body['hint']})" if body.get("hint") else ""
        fail(f"{body.get('error', r.text)}{hint}")
    return body


