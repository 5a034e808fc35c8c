"""``pingwatch-cloud analyse CLIP``: run the worker's analysis on a local clip and print the result.

Users check a model and a prompt on their own footage (as ``pingwatch replay`` does for triggers). The lead
mounts ``analyse`` on the ``pingwatch-cloud`` typer app; ``python -m cloud.worker.analyse_cli`` runs it alone.
Exit status: 0 analysed, 2 bad input (clip, boxes, model), with ``{"error", "hint", "reason"}`` under --json.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from cloud.worker.analysis import AnalysisConfig, AnalysisResult
from cloud.worker.analysis import analyse as run_analysis
from cloud.worker.errors import BoxesError, WorkerError


def _load_boxes(value: str | None) -> Any:
    if not value:
        return None
    text = Path(value[1:]).read_text() if value.startswith("@") else value
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise BoxesError(f"--boxes is not JSON: {exc}", "pass '[[t, x0, y0, x1, y1], ...]' or @file.json") from exc


def _print_human(result: AnalysisResult) -> None:
    typer.echo(result.summary)
    typer.echo(f"notify: {'yes' if result.notify else 'no'} ({result.reason})")
    for lab in result.labels:
        typer.echo(f"  {lab.label}: count {lab.count}, confidence {lab.max_confidence:.2f}, "
                   f"seen {lab.first_seen_s:.1f}-{lab.last_seen_s:.1f} s")
    if result.best_guess:
        typer.echo(f"  below threshold: {result.best_guess['label']} at {result.best_guess['score']:.2f}")
    if result.tags:
        typer.echo(f"tags: {', '.join(result.tags)}")
    clip = result.clip
    typer.echo(f"clip: {clip['codec']} {clip['width']}x{clip['height']}, {clip['duration_s']:.1f} s; "
               f"model {result.model} on {result.provider}; frames decoded {result.frames_decoded}, "
               f"detector images {result.detector_images}"
               f"{' (stopped early)' if result.stopped_early else ''}; {result.timings['total_s']:.2f} s")
    for w in result.warnings:
        typer.echo(f"warning: {w}")


def analyse(
    clip: Annotated[Path, typer.Argument(help="MP4 (H.264) or WebM (VP8) clip to analyse.")],
    prompt: Annotated[str | None, typer.Option(help="What to be alerted about, in your words.")] = None,
    boxes: Annotated[str | None, typer.Option(help="Motion boxes as JSON, or @file.json: a list of rows "
                                              "'t, x0, y0, x1, y1, ...' (normalised, t in s).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the full result as JSON.")] = False,
    model: Annotated[Path | None, typer.Option(help="Ultralytics YOLO ONNX model (default: the bundled "
                                               "person model or $PINGWATCH_WORKER_MODEL).")] = None,
    camera: Annotated[str, typer.Option(help="Camera name used in the summary.")] = "the camera",
    at: Annotated[str | None, typer.Option(help="Event time, ISO 8601 (default: now), for hours in rules.")] = None,
    tz: Annotated[str, typer.Option(help="Time zone of the rules' hours.")] = "UTC",
    min_confidence: Annotated[float, typer.Option(help="Report a label only at or above this score.")] = 0.6,
    snapshots: Annotated[Path | None, typer.Option(help="Write each label's best snapshot here (JPEG).")] = None,
) -> None:
    """Analyse a clip: labels, counts, times, summary, notify + reason, execution provider."""
    try:
        started = datetime.fromisoformat(at) if at else datetime.now(UTC)
        config = AnalysisConfig(model_path=str(model) if model else None, timezone=tz,
                                min_confidence=min_confidence)
        result = run_analysis(clip, _load_boxes(boxes), prompt, camera, started, config)
    except (WorkerError, ValueError, OSError) as exc:
        err = exc.to_json() if isinstance(exc, WorkerError) else {
            "error": str(exc), "hint": "check the options", "reason": "bad_input"}
        if as_json:
            typer.echo(json.dumps(err))
        else:
            typer.echo(f"error: {err['error']}" + (f"\nhint: {err['hint']}" if err["hint"] else ""), err=True)
        raise typer.Exit(2) from None
    if snapshots is not None:
        snapshots.mkdir(parents=True, exist_ok=True)
        for label, jpeg in result.snapshots.items():
            (snapshots / f"{label}.jpg").write_bytes(jpeg)
    if as_json:
        typer.echo(json.dumps(result.to_json()))
    else:
        _print_human(result)


def main() -> None:
    typer.run(analyse)


if __name__ == "__main__":
    main()
