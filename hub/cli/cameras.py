"""`pingwatch cameras list|revoke|rename|remove`.

The listing reads the database (it works with the hub stopped); changes go through the running hub's API so
the hub drops a revoked camera's stream at once and every view updates.
"""

from __future__ import annotations

import json
import time
from typing import Any

import typer
from rich.table import Table

from hub.cli.common import ConfigOpt, JsonOpt, api_call, get_config, open_store, out

cameras_app = typer.Typer(help="List and manage cameras.", no_args_is_help=True)


@cameras_app.command("list")
def cameras_list(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """List cameras (from the running hub; from the database when it is stopped)."""
    cams: list[dict[str, Any]] = []
    # No database yet means no cameras yet: an empty list, not an error.
    with open_store(get_config(config), missing_ok=True) as store:
        if store is not None:
            cams = [{"id": c["id"], "name": c["name"], "kind": c["kind"], "online": bool(c["online"]),
                     "width": c["width"], "height": c["height"], "codec": c["codec"], "battery": c["battery"],
                     "last_seen": c["last_seen"]} for c in store.list_cameras()]
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


def _ago(ts: float | None) -> str:
    if not ts:
        return "never"
    s = time.time() - ts
    return f"{s:.0f}s ago" if s < 120 else f"{s / 60:.0f}m ago" if s < 7200 else f"{s / 3600:.1f}h ago"


@cameras_app.command("revoke")
def cameras_revoke(camera_id: str, config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Revoke a camera's token and drop its stream at once (it must pair again)."""
    body = api_call(get_config(config), "POST", f"/api/admin/cameras/{camera_id}/revoke")
    print(json.dumps(body)) if as_json else out.print(f"revoked {camera_id}")


@cameras_app.command("rename")
def cameras_rename(camera_id: str, name: str, config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Give a camera a new name."""
    body = api_call(get_config(config), "PATCH", f"/api/ui/cameras/{camera_id}", json={"name": name})
    print(json.dumps(body)) if as_json else out.print(f"{camera_id} is now '{name}'")


@cameras_app.command("remove")
def cameras_remove(camera_id: str, config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Remove a camera for good (its events stay until retention removes them)."""
    body = api_call(get_config(config), "DELETE", f"/api/admin/cameras/{camera_id}")
    print(json.dumps(body)) if as_json else out.print(f"removed {camera_id}")
