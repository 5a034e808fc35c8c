"""`pingwatch replay`: run a video file through the live triggers, to tune them on your own footage."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TextColumn

from hub.cli.common import ConfigOpt, JsonOpt, err, fail, get_config, out


def replay(
    video: Annotated[Path, typer.Argument(help="Any file PyAV opens: y4m, mp4, mkv, webm.")],
    audio: Annotated[Path | None, typer.Option(
        "--audio", help="A separate audio file (wav) for the sound trigger.")] = None,
    mask: Annotated[list[str] | None, typer.Option(
        "--mask", help='Ignored area: normalised "x,y x,y ..." (repeatable).')] = None,
    zone: Annotated[list[str] | None, typer.Option(
        "--zone", help='Only count motion here: "x,y x,y ..." (repeatable).')] = None,
    sensitivity: Annotated[str | None, typer.Option(help="low, medium or high (default: the config's).")] = None,
    clips: Annotated[Path | None, typer.Option(
        "--clips", help="Write event clips and snapshots into this folder.")] = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
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
        masks = [parse_polygon(m) for m in mask or []]
        zones = [parse_polygon(z) for z in zone or []]
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
