"""`pingwatch events list|show|export|delete|prune`: the event timeline.

Listings and exports read the database directly (they work with the hub stopped); deleting one event goes
through the running hub's API so the web UI and Home Assistant update at once. `prune` applies retention on
the database itself, as the hub's own retention job does.
"""

from __future__ import annotations

import json
import shutil
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Column, Table

from hub.cli.common import ConfigOpt, JsonOpt, api_call, err, fail, get_config, open_store, out, parse_when

events_app = typer.Typer(help="The event timeline: list, show, export, delete, prune.", no_args_is_help=True)


def _fmt_time(ts: float | None) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else "-"


def _public(ev: dict[str, Any]) -> dict[str, Any]:
    return {k: ev.get(k) for k in (
        "id", "camera_id", "status", "triggers", "start", "end", "detected_at", "pre_roll_s", "post_roll_s",
        "peak_motion", "audio_peak_dbfs", "boxes", "clip_path", "clip_size", "clip_codec", "clip_duration_s",
        "snapshot_path", "thumb_path", "upload_status", "upload_reason", "labels", "summary")}


def _length(ev: dict[str, Any]) -> float | None:
    """An event's length: end - start, its first activity to its end (the web UI's "length" too)."""
    end, start = ev.get("end"), ev.get("start")
    return max(0.0, end - start) if end is not None and start is not None else None


def resolve_event_id(store: Any, given: str) -> str:
    """An event id, or a prefix of exactly one (as `events list` shows them); else what was given, unchanged."""
    if store.get_event(given) is not None or not given:
        return given
    like = given.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    found = [r[0] for r in store.db.execute(
        "SELECT id FROM events WHERE id LIKE ? ESCAPE '\\' ORDER BY start DESC LIMIT 6", [like]).fetchall()]
    if len(found) > 1:
        fail(f"'{given}' is the start of several events ({', '.join(found[:5])}{', ...' if len(found) > 5 else ''});"
             " give more of the id", 2)
    return found[0] if found else given


def _uploads(store: Any, ids: list[str]) -> dict[str, str]:
    """Upload state of the events the outbox knows (a hub never linked has none: its events show '-')."""
    from hub.upload.outbox import TABLE

    if not ids or TABLE not in store.db.table_names():
        return {}
    marks = ",".join("?" * len(ids))
    return dict(store.db.execute(f"SELECT event_id, state FROM {TABLE} WHERE event_id IN ({marks})", ids).fetchall())


@events_app.command("list")
def events_list(
    config: ConfigOpt = None,
    camera: Annotated[str | None, typer.Option(help="Only this camera id.")] = None,
    trigger: Annotated[str | None, typer.Option(help="motion or sound.")] = None,
    since: Annotated[str | None, typer.Option(help="ISO time or how long ago (e.g. 2h, 7d).")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10000)] = 50,
    as_json: JsonOpt = False,
) -> None:
    """List events, newest first.

    length: how long the event lasted, from its first activity to its end (post-roll included), as the web UI
    shows it; its clip is longer by the pre-roll ('events show' gives both)."""
    if trigger == "audio":
        trigger = "sound"  # the config section says audio, events say sound (Home Assistant's word)
    with open_store(get_config(config)) as store:
        rows = store.list_events(camera_id=camera, trigger=trigger,
                                 since=parse_when(since) if since else None, limit=limit)
        uploads = _uploads(store, [e["id"] for e in rows])
    if as_json:
        print(json.dumps([_public(e) | {"upload_status": uploads.get(e["id"])} for e in rows], indent=2))
        return
    table = Table("camera", "start", "length", "trigger", "peak", "clip", "status", "upload")
    # Ids are what other commands take: never cut (rich shortens the widest column on a narrow terminal).
    table.columns.insert(0, Column("id", no_wrap=True, min_width=max((len(e["id"]) for e in rows), default=2)))
    for e in rows:
        length = f"{_length(e):.1f}s" if e.get("end") else "…"
        clip = f"{e['clip_size'] / 1e6:.1f} MB" if e.get("clip_size") else "-"
        table.add_row(e["id"], e["camera_id"], _fmt_time(e["start"]), length, ",".join(e["triggers"]),
                      f"{(e.get('peak_motion') or 0) * 100:.1f}%", clip, e["status"], uploads.get(e["id"], "-"))
    out.print(table)
    if not rows:
        out.print("no events")


@events_app.command("show")
def events_show(event_id: str, config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Everything known about one event."""
    with open_store(get_config(config)) as store:
        ev = store.get_event(resolve_event_id(store, event_id))
    if ev is None:
        fail(f"no event '{event_id}'; list them with 'pingwatch events list'")
    if as_json:
        print(json.dumps(_public(ev), indent=2))
        return
    length = _length(ev)
    shown = f"{length:.1f}s (end - start; the clip is clip_duration_s)" if length is not None else "-"
    out.print(f"{'length':<16} {shown}")
    for k, v in _public(ev).items():
        if k in ("start", "end", "detected_at"):
            v = f"{_fmt_time(v)} ({v})" if v else "-"
        if k == "boxes" and isinstance(v, list):
            v = f"{len(v)} samples"
        out.print(f"{k:<16} {v}")


@events_app.command("export")
def events_export(
    to: Annotated[Path, typer.Option("--to", help="Folder to copy clips, snapshots and metadata into.")],
    event_ids: Annotated[list[str] | None,
                         typer.Argument(help="Event ids (default: every event matching the filters).")] = None,
    camera: Annotated[str | None, typer.Option()] = None,
    since: Annotated[str | None, typer.Option(help="ISO time or how long ago.")] = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Copy events (clip, snapshot, JSON) into a folder, with progress."""
    from hub.datadir import DataDir, contained_file
    from hub.retention import MEDIA_KEYS

    cfg = get_config(config)
    data = DataDir(cfg.storage.data_dir)
    with open_store(cfg) as store:
        if event_ids:
            found = [store.get_event(i) for i in event_ids]
            missing = [i for i, r in zip(event_ids, found, strict=False) if r is None]
            if missing:
                fail(f"no such event(s): {', '.join(missing)}")
            rows = [r for r in found if r is not None]
        else:
            rows = store.list_events(camera_id=camera, since=parse_when(since) if since else None, limit=100000)
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
            for key in MEDIA_KEYS:
                src = contained_file(data.clips_dir, ev.get(key), data.root)
                if src is None:
                    if ev.get(key):  # a missing file, or a tampered row naming tls/key.pem or /etc/shadow
                        err.print(f"[yellow]warning:[/] {ev['id']}: its {key.removesuffix('_path')} is not a "
                                  f"file inside {data.clips_dir}; not exported", highlight=False)
                    continue
                dst = to / src.name
                try:
                    shutil.copy2(src, dst)
                except OSError as exc:
                    fail(f"copying {src.name} to {dst} failed: {exc.strerror} (is {to} full?)")
                files.append(str(dst))
            (to / f"{ev['id']}.json").write_text(json.dumps(_public(ev), indent=2))
            exported.append({"id": ev["id"], "files": files})
            progress.advance(task)
    if as_json:
        print(json.dumps({"exported": exported, "bytes": total}))
    else:
        out.print(f"exported {len(exported)} events to {to}")


@events_app.command("delete")
def events_delete(event_id: str, config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Delete an event and its files (through the running hub, so every view updates)."""
    cfg = get_config(config)
    with open_store(cfg) as store:
        event_id = resolve_event_id(store, event_id)
    body = api_call(cfg, "DELETE", f"/api/ui/events/{event_id}")
    print(json.dumps(body)) if as_json else out.print(f"deleted {event_id}")


@events_app.command("prune")
def events_prune(
    config: ConfigOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only show what would be deleted.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Apply retention now: events past storage.retention_days, then the oldest beyond the disk budget."""
    from hub.datadir import DataDir
    from hub.retention import apply_prune, plan_prune

    cfg = get_config(config)
    data = DataDir(cfg.storage.data_dir)
    with open_store(cfg, writable=not dry_run) as store:
        plan = plan_prune(store, cfg.storage, data.clips_dir)
        deleted: list[dict[str, Any]] = list(plan.events) if dry_run else []
        if not dry_run:
            with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=out,
                          disable=as_json or not plan.events) as progress:
                task = progress.add_task("pruning", total=len(plan.events))

                def done(ev: dict[str, Any]) -> None:
                    deleted.append(ev)
                    progress.advance(task)

                # The hub's own pass (hub.retention.delete_event per event): an event the running hub deleted
                # meanwhile is skipped, not reported as deleted here.
                apply_prune(store, plan, on_deleted=done)
    result = {"dry_run": dry_run, "events": [{"id": e["id"], "camera_id": e["camera_id"], "start": e["start"],
                                              "reason": plan.reasons[e["id"]]} for e in deleted],
              "bytes_freed": plan.bytes_freed, "clips_bytes_before": plan.clips_bytes_before}
    if as_json:
        print(json.dumps(result, indent=2))
        return
    verb = "would delete" if dry_run else "deleted"
    out.print(f"{verb} {len(deleted)} events, {plan.bytes_freed / 1e6:.1f} MB "
              f"(clips now {(plan.clips_bytes_before - plan.bytes_freed) / 1e6:.1f} MB)")
    for e in deleted[:50]:
        out.print(f"  {e['id']}  {e['camera_id']}  {_fmt_time(e['start'])}  ({plan.reasons[e['id']]})")
