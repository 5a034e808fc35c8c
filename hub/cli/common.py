"""Shared pieces of the `pingwatch` commands: consoles, errors, config loading, and the two ways a command
reaches hub state: `api_call` (the running hub's API) and `open_store` (the data folder's database)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, NoReturn, overload

import typer
from rich.console import Console

from hub import durations
from hub.config import ConfigError, HubConfig, load_config

if TYPE_CHECKING:
    from hub.store import Store

# No emoji shortcodes: a certificate fingerprint's ":CD:" would print as a compact disc.
out = Console(emoji=False)
err = Console(stderr=True, emoji=False)

DEFAULT_CONFIG = Path("config/hub.yaml")
# The two options every command has; use as `config: ConfigOpt = None, as_json: JsonOpt = False`.
ConfigOpt = Annotated[Path | None, typer.Option(
    "--config", "-c", envvar="PINGWATCH_CONFIG",
    help="Config file (default: config/hub.yaml if it exists, else built-in defaults).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]



def fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def config_path(path: Path | None) -> Path | None:
    if path is not None:
        return path
    return DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None


def get_config(path: Path | None) -> HubConfig:
    try:
        return load_config(config_path(path))
    except ConfigError as exc:
        fail(str(exc), 2)
        raise  # unreachable; keeps type checkers happy


def parse_duration(text: str) -> float:
    """'90', '90s', '15m', '1h', '2d' -> seconds (a bare number is seconds)."""
    seconds = durations.parse_duration(text)
    if seconds is None:
        raise typer.BadParameter(f"'{text}' is not a duration; use e.g. 30s, 15m, 1h, 2d")
    return seconds


def parse_when(text: str) -> float:
    """An ISO date/time, or a duration meaning 'that long ago'."""
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return time.time() - parse_duration(text)


def api_call(cfg: HubConfig, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
    """Call the running hub's API on loopback with the admin secret; fail() with its error message otherwise."""
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


@overload
def open_store(cfg: HubConfig, *, writable: bool = False,
               missing_ok: Literal[False] = False) -> AbstractContextManager[Store]: ...


@overload
def open_store(cfg: HubConfig, *, writable: bool = False,
               missing_ok: bool) -> AbstractContextManager[Store | None]: ...


def open_store(cfg: HubConfig, *, writable: bool = False,
               missing_ok: bool = False) -> AbstractContextManager[Store | None]:
    """The data folder's database, closed on exit; works whether the hub is running or not (SQLite WAL).

    A missing data folder or database is a usage error (exit 2) that says how to get one, unless `missing_ok`:
    then it yields None (listings that show "nothing yet" rather than fail).

    hub.store.Store has no read-only mode: its constructor always sets ``journal_mode=WAL`` and runs the schema
    migration, both writes, so a ``mode=ro`` connection cannot be handed to it. It is opened normally, and unless
    `writable` the connection is then switched to ``PRAGMA query_only`` so a read-only command cannot change
    anything by mistake.
    """
    return _open_store(cfg, writable, missing_ok)


@contextmanager
def _open_store(cfg: HubConfig, writable: bool, missing_ok: bool) -> Iterator[Store | None]:
    from hub.datadir import DataDir
    from hub.store import Store, StoreError

    data = DataDir(cfg.storage.data_dir)
    if not data.db_path.exists():
        if missing_ok:
            yield None
            return
        fail(f"no database at {data.db_path}; run 'pingwatch init' and start the hub first", 2)
    try:
        store = Store(data.db_path)
    except StoreError as exc:
        fail(str(exc), 2)
    try:
        if not writable:
            store.db.execute("PRAGMA query_only=ON")
        yield store
    finally:
        store.close()
