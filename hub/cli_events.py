"""`pingwatch events ...`, `arm`, `disarm`, `status`, `cameras rename|remove`.

Listings read the database directly (they work with the hub stopped); changes that other faces must hear about
(deleting an event, arming) go through the running hub's API so the web UI and Home Assistant update at once.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from hub.cli_common import ConfigOpt, JsonOpt, api_call, err, fail, get_config, out
from hub.config import HubConfig

events_app = typer.Typer(help="The event timeline: list, show, export, delete, prune.", no_args_is_help=True)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """'90', '90s', '15m', '1h', '2d' -> seconds."""
    m = _DURATION.match(text)
    if not m:
        raise typer.BadParameter(f"'{text}' is not a duration; use e.g. 30s, 15m, 1h, 2d")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_when(text: str) -> float:
    """An ISO date/time, or a duration meaning 'that long ago'."""
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return time.time() - parse_duration(text)


def _store(cfg: HubConfig) -> Any:
    from hub.datadir import DataDir
    from hub.store import Store

    data = DataDir(cfg.storage.data_dir)
    if not data.db_path.exists():
        fail(f"no database at {data.db_path}; run 'pingwatch init' and start the hub first", 2)
    return Store(data.db_path)


def _fmt_time(ts: Optional[float]) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else "-"


def _public(ev: dict[str, Any]) -> dict[str, Any]:
    return {k: ev.get(k) for k in (
        "id", "camera_id", "status", "triggers", "start", "end", "detected_at", "pre_roll_s", "post_roll_s",
        "peak_motion", "audio_peak_dbfs", "boxes", "clip_path", "clip_size", "clip_codec", "clip_duration_s",
        "snapshot_path", "thumb_path", "upload_status", "labels", "summary")}


@events_app.command("list")
def events_list(
    config: Optional[Path] = ConfigOpt,
    camera: Optional[str] = typer.Option(None, help="Only this camera id."),
    trigger: Optional[str] = typer.Option(None, help="motion or sound."),
    since: Optional[str] = typer.Option(None, help="ISO time or how long ago (e.g. 2h, 7d)."),
    limit: int = typer.Option(50, min=1, max=10000),
    as_json: bool = JsonOpt,
) -> None:
    """List events, newest first."""
    if trigger == "audio":
        trigger = "sound"  # the config section says audio, events say sound (Home Assistant's word)
    store = _store(get_config(config))
    try:
        rows = store.list_events(camera_id=camera, trigger=trigger,
                                 since=parse_when(since) if since else None, limit=limit)
    finally:
        store.close()
    if as_json:
        print(json.dumps([_public(e) for e in rows], indent=2))
        return
    table = Table("id", "camera", "start", "length", "trigger", "peak", "clip", "status")
    for e in rows:
        length = f"{e['end'] - e['start']:.1f}s" if e.get("end") else "…"
        clip = f"{e['clip_size'] / 1e6:.1f} MB" if e.get("clip_size") else "-"
        table.add_row(e["id"], e["camera_id"], _fmt_time(e["start"]), length, ",".join(e["triggers"]),
                      f"{(e.get('peak_motion') or 0) * 100:.1f}%", clip, e["status"])
    out.print(table)
    if not rows:
        out.print("no events")


@events_app.command("show")
def events_show(event_id: str, config: Optional[Path] = ConfigOpt, as_json: bool = JsonOpt) -> None:
    """Everything known about one event."""
    store = _store(get_config(config))
    try:
        ev = store.get_event(event_id)
    finally:
        store.close()
    if ev is None:
        fail(f"no event '{event_id}'; list them with 'pingwatch events list'")
    if as_json:
        print(json.dumps(_public(ev), indent=2))
        return
    for k, v in _public(ev).items():
        if k in ("start", "end", "detected_at"):
            v = f"{_fmt_time(v)} ({v})" if v else "-"
        if k == "boxes" and isinstance(v, list):
            v = f"{len(v)} samples"
        out.print(f"{k:<16} {v}")


@events_app.command("export")
def events_export(
    event_ids: list[str] = typer.Argument(None, help="Event ids (default: every event matching the filters)."),
    to: Path = typer.Option(..., "--to", help="Folder to copy clips, snapshots and metadata into."),
    camera: Optional[str] = typer.Option(None),
    since: Optional[str] = typer.Option(None, help="ISO time or how long ago."),
    config: Optional[Path] = ConfigOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Copy events (clip, snapshot, JSON) into a folder, with progress."""
    store = _store(get_config(config))
    try:
        if event_ids:
            rows = [store.get_event(i) for i in event_ids]
            missing = [i for i, r in zip(event_ids, rows) if r is None]
            if missing:
                fail(f"no such event(s): {', '.join(missing)}")
        else:
            rows = store.list_events(camera_id=camera, since=parse_when(since) if since else None, limit=100000)
    finally:
        store.close()
    try:
        to.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        fail(f"cannot create {to}: {exc.strerror}")
    exported = []
    total = sum(int(r.get("clip_size") or 0) for r in rows) or 1
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=out, disable=as_json) as progress:
        task = progress.add_task("exporting", total=len(rows))
        for ev in rows:
            files = []
            for key in ("clip_path", "snapshot_path", "thumb_path"):
                src = ev.get(key)
                if src and Path(src).exists():
                    dst = to / Path(src).name
                    try:
                        shutil.copy2(src, dst)
                    except OSError as exc:
                        fail(f"copying {src} to {dst} failed: {exc.strerror} (is {to} full?)")
                    files.append(str(dst))
            (to / f"{ev['id']}.json").write_text(json.dumps(_public(ev), indent=2))
            exported.append({"id": ev["id"], "files": files})
            progress.advance(task)
    if as_json:
        print(json.dumps({"exported": exported, "bytes": total}))
    else:
        out.print(f"exported {len(exported)} events to {to}")


@events_app.command("delete")
def events_delete(event_id: str, config: Optional[Path] = ConfigOpt, as_json: bool = JsonOpt) -> None:
    """Delete an event and its files (through the running hub, so every view updates)."""
    body = api_call(get_config(config), "DELETE", f"/api/ui/events/{event_id}")
    print(json.dumps(body)) if as_json else out.print(f"deleted {event_id}")


@events_app.command("prune")
def events_prune(
    config: Optional[Path] = ConfigOpt,
    dry_run: bool = typer.Option(False, "--dry-run", help="Only show what would be deleted."),
    as_json: bool = JsonOpt,
) -> None:
    """Apply retention now: events past storage.retention_days, then the oldest beyond the disk budget."""
    from hub.datadir import DataDir
    from hub.retention import delete_event_files, plan_prune

    cfg = get_config(config)
    store = _store(cfg)
    try:
        plan = plan_prune(store, cfg.storage, DataDir(cfg.storage.data_dir).clips_dir)
        if not dry_run:
            with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=out,
                          disable=as_json or not plan.events) as progress:
                task = progress.add_task("pruning", total=len(plan.events))
                for ev in plan.events:
                    delete_event_files(ev)
                    store.delete_event(ev["id"])
                    progress.advance(task)
    finally:
        store.close()
    result = {"dry_run": dry_run, "events": [{"id": e["id"], "camera_id": e["camera_id"], "start": e["start"],
                                              "reason": plan.reasons[e["id"]]} for e in plan.events],
              "bytes_freed": plan.bytes_freed, "clips_bytes_before": plan.clips_bytes_before}
    if as_json:
        print(json.dumps(result, indent=2))
        return
    verb = "would delete" if dry_run else "deleted"
    out.print(f"{verb} {len(plan.events)} events, {plan.bytes_freed / 1e6:.1f} MB "
              f"(clips now {(plan.clips_bytes_before - plan.bytes_freed) / 1e6:.1f} MB)")
    for e in plan.events[:50]:
        out.print(f"  {e['id']}  {e['camera_id']}  {_fmt_time(e['start'])}  ({plan.reasons[e['id']]})")


# -- arming ----------------------------------------------------------------------------------------------------


def _arm(armed: bool, camera: Optional[str], for_: Optional[str], config: Optional[Path], as_json: bool) -> None:
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


def arm(camera: Optional[str] = typer.Option(None, "--camera", help="Only this camera."),
        for_: Optional[str] = typer.Option(None, "--for", help="Revert after this long (e.g. 1h)."),
        config: Optional[Path] = ConfigOpt, as_json: bool = JsonOpt) -> None:
    """Arm the hub (or one camera): events are recorded."""
    _arm(True, camera, for_, config, as_json)


def disarm(camera: Optional[str] = typer.Option(None, "--camera", help="Only this camera."),
           for_: Optional[str] = typer.Option(None, "--for", help="Re-arm after this long (e.g. 1h)."),
           config: Optional[Path] = ConfigOpt, as_json: bool = JsonOpt) -> None:
    """Disarm: motion is still reported (Home Assistant), nothing is recorded."""
    _arm(False, camera, for_, config, as_json)


def status(config: Optional[Path] = ConfigOpt, as_json: bool = JsonOpt) -> None:
    """Arm state and cameras of the running hub."""
    cfg = get_config(config)
    armed = api_call(cfg, "GET", "/api/ui/arm")
    cams = api_call(cfg, "GET", "/api/ui/cameras")
    if as_json:
        print(json.dumps({"arm": armed, "cameras": cams.get("cameras", cams)}, indent=2))
        return
    out.print(f"hub: {'[green]armed[/]' if armed.get('armed') else '[yellow]disarmed[/]'}")
    table = Table("camera", "name", "online", "armed", "battery")
    for c in cams.get("cameras", []):
        batt = f"{c['battery'] * 100:.0f}%" if c.get("battery") is not None else "-"
        table.add_row(c["id"], c["name"], "yes" if c.get("online") else "no", "yes" if c.get("armed") else "no", batt)
    out.print(table)


def cameras_rename(camera_id: str, name: str, config: Optional[Path] = ConfigOpt, as_json: bool = JsonOpt) -> None:
    """Give a camera a new name."""
    body = api_call(get_config(config), "PATCH", f"/api/ui/cameras/{camera_id}", json={"name": name})
    print(json.dumps(body)) if as_json else out.print(f"{camera_id} is now '{name}'")


def cameras_remove(camera_id: str, config: Optional[Path] = ConfigOpt, as_json: bool = JsonOpt) -> None:
    """Remove a camera for good (its events stay until retention removes them)."""
    body = api_call(get_config(config), "DELETE", f"/api/admin/cameras/{camera_id}")
    print(json.dumps(body)) if as_json else out.print(f"removed {camera_id}")


def replay(
    video: Path = typer.Argument(..., help="Any file PyAV opens: y4m, mp4, mkv, webm."),
    audio: Optional[Path] = typer.Option(None, "--audio", help="A separate audio file (wav) for the sound trigger."),
    mask: list[str] = typer.Option([], "--mask", help='Ignored area: normalised "x,y x,y ..." (repeatable).'),
    zone: list[str] = typer.Option([], "--zone", help='Only count motion here: "x,y x,y ..." (repeatable).'),
    sensitivity: Optional[str] = typer.Option(None, help="low, medium or high (default: the config's)."),
    clips: Optional[Path] = typer.Option(None, "--clips", help="Write event clips and snapshots into this folder."),
    config: Optional[Path] = ConfigOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Run a video through the live triggers; one line per event (tune sensitivity on your own footage)."""
    import asyncio

    from hub.pipeline import build_chain, default_camera_settings
    from hub.replay import ReplayError, ReplayEvent
    from hub.replay import replay as run_replay
    from hub.triggers.zones import ZoneError, parse_polygon

    cfg = get_config(config)
    if sensitivity is not None and sensitivity not in ("low", "medium", "high"):
        fail(f"--sensitivity must be low, medium or high (got {sensitivity!r})", 2)
    if not video.exists():
        fail(f"{video}: no such file", 2)
    try:
        masks = [parse_polygon(m) for m in mask]
        zones = [parse_polygon(z) for z in zone]
    except ZoneError as exc:
        fail(f"bad polygon: {exc}", 2)
    ev_cfg = cfg.events
    settings = default_camera_settings(cfg) | {"zones": zones, "masks": masks}
    if sensitivity:
        settings["sensitivity"] = sensitivity
    # no hourly cap: a replay reports every event the footage holds
    chain = build_chain(cfg, "replay", settings, armed=True, max_events_per_hour=10**6)

    def show(ev: ReplayEvent) -> None:
        if as_json:
            print(json.dumps(ev.as_dict()), flush=True)
        else:
            box = " box=" + ",".join(f"{v:.2f}" for v in ev.boxes[0][1:]) if ev.boxes else ""
            audio_peak = f" audio_peak={ev.audio_peak_dbfs:.1f}dBFS" if ev.audio_peak_dbfs is not None else ""
            clip = f" clip={ev.clip}" if ev.clip else ""
            progress.console.print(
                f"event start={ev.start:.2f}s detected_at={ev.detected_at:.2f}s end={ev.end:.2f}s "
                f"trigger={ev.trigger} triggers={'+'.join(ev.triggers)} peak_motion={ev.peak_motion:.3f}"
                f"{audio_peak}{box}{clip}", highlight=False)

    with Progress(TextColumn("replaying"), BarColumn(), TextColumn("{task.completed:.0f} s"),
                  console=err, disable=as_json, transient=True) as progress:
        task = progress.add_task("replay", total=None)

        def on_progress(t: float, total: float) -> None:
            progress.update(task, completed=t, total=total or None)

        if clips:
            clips.mkdir(parents=True, exist_ok=True)
        try:
            events = asyncio.run(run_replay(video, chain, audio=audio, clips_dir=clips,
                                            detect_fps=cfg.ingest.detect_fps, detect_width=cfg.ingest.detect_width,
                                            pre_roll_s=ev_cfg.pre_roll_s, post_roll_s=ev_cfg.post_roll_s,
                                            on_event=show, on_progress=on_progress))
        except ReplayError as exc:
            fail(str(exc))
    if not as_json:
        out.print(f"{len(events)} event(s)")


def register(app: typer.Typer, cameras_app: typer.Typer) -> None:
    app.command()(replay)
    app.add_typer(events_app, name="events")
    app.command()(arm)
    app.command()(disarm)
    app.command()(status)
    cameras_app.command("rename")(cameras_rename)
    cameras_app.command("remove")(cameras_remove)
