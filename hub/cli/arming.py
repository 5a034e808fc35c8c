"""`pingwatch arm`, `disarm`, `status`: through the running hub's API, so the web UI and Home Assistant update
at once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from hub.cli.common import ConfigOpt, JsonOpt, api_call, get_config, out, parse_duration


def _arm(armed: bool, camera: str | None, for_: str | None, config: Path | None, as_json: bool) -> None:
    body: dict[str, Any] = {"armed": armed}
    if for_:
        body["for_s"] = parse_duration(for_)
    path = f"/api/ui/cameras/{camera}/arm" if camera else "/api/ui/arm"
    result = api_call(get_config(config), "POST", path, json=body)
    if as_json:
        print(json.dumps(result))
        return
    what = f"camera {camera}" if camera else "hub"
    until = f" for {for_}" if for_ else ""
    out.print(f"{what} {'armed' if armed else 'disarmed'}{until}")


CameraOpt = Annotated[str | None, typer.Option("--camera", help="Only this camera.")]


def arm(camera: CameraOpt = None,
        for_: Annotated[str | None, typer.Option("--for", help="Revert after this long (e.g. 1h).")] = None,
        config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Arm the hub (or one camera): events are recorded."""
    _arm(True, camera, for_, config, as_json)


def disarm(camera: CameraOpt = None,
           for_: Annotated[str | None, typer.Option("--for", help="Re-arm after this long (e.g. 1h).")] = None,
           config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Disarm: motion is still reported (Home Assistant), nothing is recorded."""
    _arm(False, camera, for_, config, as_json)


def status(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Arm state and cameras of the running hub."""
    cfg = get_config(config)
    armed = api_call(cfg, "GET", "/api/ui/arm")
    cams = api_call(cfg, "GET", "/api/ui/cameras")
    if as_json:
        print(json.dumps({"arm": armed, "cameras": cams.get("cameras", cams)}, indent=2))
        return
    out.print(f"hub: {'[green]armed[/]' if armed.get('armed') else '[yellow]disarmed[/]'}")
    table = Table("camera", "name", "online", "armed", "battery", "detection")
    for c in cams.get("cameras", []):
        batt = f"{c['battery'] * 100:.0f}%" if c.get("battery") is not None else "-"
        # "down": the camera's sub-stream for motion detection is not reaching the hub (it still records).
        detect = {"down": "[red]down[/]", "ok": "sub-stream"}.get(c.get("detect") or "none", "-")
        if c.get("detect") == "down" and c.get("detect_reason"):
            detect += f" ({c['detect_reason']})"
        table.add_row(c["id"], c["name"], "yes" if c.get("online") else "no", "yes" if c.get("armed") else "no", batt,
                      detect)
    out.print(table)
