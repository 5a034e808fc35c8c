"""``analyse`` as a command: what `pingwatch-cloud analyse` prints, and its errors."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from typer.testing import CliRunner

from cloud.worker.analyse_cli import analyse
from tests.worker.scene import ClipTruth

app = typer.Typer()
app.command()(analyse)
runner = CliRunner()


def test_json_result(walk_clip: ClipTruth, tmp_path: Path) -> None:
    res = runner.invoke(app, [str(walk_clip.path), "--prompt", "people at night", "--boxes",
                              json.dumps(walk_clip.boxes), "--json", "--camera", "Front door",
                              "--at", "2026-03-02T23:00:00+00:00", "--snapshots", str(tmp_path / "snaps")])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["labels"][0]["label"] == "person" and data["notify"] is True
    assert data["provider"] == "CPUExecutionProvider" and "Front door" in data["summary"]
    assert (tmp_path / "snaps" / "person.jpg").read_bytes()[:2] == b"\xff\xd8"


def test_human_output_and_boxes_from_file(walk_clip: ClipTruth, tmp_path: Path) -> None:
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps(walk_clip.boxes))
    res = runner.invoke(app, [str(walk_clip.path), "--boxes", f"@{boxes}", "--at", "2026-03-02T12:00:00+00:00",
                              "--prompt", "ignore people"])
    assert res.exit_code == 0, res.output
    assert "notify: no (only ignored objects: person)" in res.output
    assert "on CPUExecutionProvider" in res.output


def test_errors_exit_2_with_error_json(tmp_path: Path, walk_clip: ClipTruth) -> None:
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    res = runner.invoke(app, [str(empty), "--json"])
    assert res.exit_code == 2
    assert json.loads(res.output) == {"error": "the clip is empty (0 bytes)",
                                      "hint": "the upload did not complete; the hub will retry",
                                      "reason": "clip_unreadable"}
    res = runner.invoke(app, [str(walk_clip.path), "--boxes", "[[1, 2", "--json"])
    assert res.exit_code == 2 and json.loads(res.output)["reason"] == "bad_motion_boxes"
    res = runner.invoke(app, [str(walk_clip.path), "--model", str(tmp_path / "none.onnx")])
    assert res.exit_code == 2 and "model file not found" in res.output
