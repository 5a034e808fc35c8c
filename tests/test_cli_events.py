"""`pingwatch events|arm|disarm|status|cameras rename/remove` against a real data dir and a real hub."""

import json
import time

import pytest
import typer

from hub.store import Store
from tests.hubproc import HubProcess
from tests.test_cli import pw


@pytest.fixture
def hub(tmp_path):
    h = HubProcess.create(tmp_path / "hub")
    h.start()
    # The hub's start-up retention pass would otherwise race the tests' 40-day-old event (and rightly delete it).
    h.wait_for_log("retention pass done")
    yield h
    h.kill()


def add_event(hub, start, cam="garage", size=1000, trigger="motion"):
    store = Store(hub.data_dir / "hub.db")
    try:
        store.ensure_static_camera(cam, cam.title(), "file")
        clip = hub.data_dir / "clips" / cam / f"c{start:.0f}.mp4"
        clip.parent.mkdir(parents=True, exist_ok=True)
        clip.write_bytes(b"x" * size)
        return store.insert_event({"camera_id": cam, "status": "complete", "start": start, "end": start + 10,
                                   "triggers": [trigger], "clip_path": str(clip), "clip_size": size})
    finally:
        store.close()


def test_list_show_export_prune(hub, tmp_path):
    now = time.time()
    old = add_event(hub, now - 40 * 86400)
    new = add_event(hub, now - 60, trigger="sound")
    cfg = str(hub.config_path)
    listed = json.loads(pw("events", "list", "-c", cfg, "--json", cwd=tmp_path, check=True).stdout)
    assert [e["id"] for e in listed] == [new, old]
    only_audio = json.loads(pw("events", "list", "-c", cfg, "--trigger", "audio", "--json", cwd=tmp_path,
                               check=True).stdout)
    assert [e["id"] for e in only_audio] == [new]
    recent = json.loads(pw("events", "list", "-c", cfg, "--since", "1d", "--json", cwd=tmp_path, check=True).stdout)
    assert [e["id"] for e in recent] == [new]
    shown = json.loads(pw("events", "show", new, "-c", cfg, "--json", cwd=tmp_path, check=True).stdout)
    assert shown["triggers"] == ["sound"]
    missing = pw("events", "show", "ev-nope", "-c", cfg, cwd=tmp_path)
    assert missing.returncode == 1 and "events list" in missing.stderr

    exported = json.loads(pw("events", "export", new, "--to", str(tmp_path / "out"), "-c", cfg, "--json",
                             cwd=tmp_path, check=True).stdout)
    assert exported["exported"][0]["id"] == new
    assert (tmp_path / "out" / f"{new}.json").exists() and len(list((tmp_path / "out").glob("*.mp4"))) == 1

    dry = json.loads(pw("events", "prune", "--dry-run", "-c", cfg, "--json", cwd=tmp_path, check=True).stdout)
    assert [(e["id"], e["reason"]) for e in dry["events"]] == [(old, "age")]
    assert Store(hub.data_dir / "hub.db").get_event(old) is not None  # dry run deleted nothing
    pw("events", "prune", "-c", cfg, cwd=tmp_path, check=True)
    remaining = json.loads(pw("events", "list", "-c", cfg, "--json", cwd=tmp_path, check=True).stdout)
    assert [e["id"] for e in remaining] == [new]

    pw("events", "delete", new, "-c", cfg, cwd=tmp_path, check=True)
    assert json.loads(pw("events", "list", "-c", cfg, "--json", cwd=tmp_path, check=True).stdout) == []


def test_arm_disarm_status_and_camera_admin(hub, tmp_path):
    cfg = str(hub.config_path)
    add_event(hub, time.time(), cam="porch")
    pw("disarm", "-c", cfg, cwd=tmp_path, check=True)
    st = json.loads(pw("status", "-c", cfg, "--json", cwd=tmp_path, check=True).stdout)
    assert st["arm"]["armed"] is False
    pw("arm", "-c", cfg, cwd=tmp_path, check=True)
    pw("disarm", "--camera", "porch", "--for", "1h", "-c", cfg, cwd=tmp_path, check=True)
    st = json.loads(pw("status", "-c", cfg, "--json", cwd=tmp_path, check=True).stdout)
    assert st["arm"]["armed"] is True
    porch = next(c for c in st["cameras"] if c["id"] == "porch")
    assert porch["armed"] is False
    bad = pw("arm", "--for", "soon", "-c", cfg, cwd=tmp_path)
    assert bad.returncode == 2 and "duration" in bad.stderr

    pw("cameras", "rename", "porch", "Front porch", "-c", cfg, cwd=tmp_path, check=True)
    cams = json.loads(pw("cameras", "list", "-c", cfg, "--json", cwd=tmp_path, check=True).stdout)
    assert [c["name"] for c in cams] == ["Front porch"]
    pw("cameras", "remove", "porch", "-c", cfg, cwd=tmp_path, check=True)
    assert json.loads(pw("cameras", "list", "-c", cfg, "--json", cwd=tmp_path, check=True).stdout) == []
    gone = pw("cameras", "remove", "porch", "-c", cfg, cwd=tmp_path)
    assert gone.returncode == 1 and "no camera" in gone.stderr


def test_ids_are_never_cut_and_a_unique_prefix_is_enough(tmp_path):
    from hub.datadir import DataDir

    data = DataDir(tmp_path / "data").ensure()
    store = Store(data.db_path)
    store.ensure_static_camera("garage", "Garage", "file")
    for eid in ("ev-8dd4aa000001", "ev-8dd4bb000002", "ev-1234cc000003"):
        store.insert_event({"id": eid, "camera_id": "garage", "status": "complete", "start": 1.7e9,
                            "end": 1.7e9 + 5, "triggers": ["motion"]})
    store.close()
    cfg = tmp_path / "hub.yaml"
    cfg.write_text(f"storage:\n  data_dir: {data.root}\n")
    listed = pw("events", "list", "-c", str(cfg), cwd=tmp_path, check=True, env={"COLUMNS": "60"})
    for eid in ("ev-8dd4aa000001", "ev-8dd4bb000002", "ev-1234cc000003"):
        assert eid in listed.stdout, listed.stdout  # whole, even at 60 columns
    shown = pw("events", "show", "ev-1234", "--json", "-c", str(cfg), cwd=tmp_path, check=True)
    assert json.loads(shown.stdout)["id"] == "ev-1234cc000003"
    both = pw("events", "show", "ev-8dd4", "-c", str(cfg), cwd=tmp_path)
    assert both.returncode == 2 and "ev-8dd4aa000001" in both.stderr and "ev-8dd4bb000002" in both.stderr
    none = pw("events", "show", "ev-nope", "-c", str(cfg), cwd=tmp_path)
    assert none.returncode == 1 and "no event 'ev-nope'" in none.stderr


def test_durations_mean_the_same_on_the_command_line_and_in_chat() -> None:
    """One parser: units agree everywhere; only a bare number differs (seconds on the CLI, minutes in chat)."""
    from hub.cli.common import parse_duration as cli_duration
    from hub.notify.messages import parse_duration as chat_duration

    for text, seconds in (("90s", 90), ("15m", 900), ("1h", 3600), ("2d", 172800), ("1.5h", 5400), (" 2H ", 7200)):
        assert cli_duration(text) == seconds and chat_duration(text) == seconds, text
    assert cli_duration("1w") == 604800 and chat_duration("1w") == 604800  # a week is the chat's longest
    assert cli_duration("45") == 45 and chat_duration("45") == 2700
    assert chat_duration("8d") is None and chat_duration("0m") is None and chat_duration("soon") is None
    with pytest.raises(typer.BadParameter, match="not a duration"):
        cli_duration("1y")
