"""The whole hub, live: a camera source → triggers → clip + snapshot → SQLite → MQTT and the API.

Uses a file camera paced in real time (the same path IP cameras and `--demo` take), so the event happens on
the hub's own clock, exactly as with a phone.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from pathlib import Path

import av
import httpx
import paho.mqtt.client as mqtt
import pytest
import yaml

from hub.store import Store
from tests import scenes
from tests.hubproc import HubProcess
from tests.test_replay import encode_mp4


class Listener:
    """A paho client standing in for Home Assistant: records every message on the hub's topics."""

    def __init__(self, host: str, port: int, prefix: str) -> None:
        self.messages: queue.Queue[tuple[str, bytes, bool]] = queue.Queue()
        self.seen: list[tuple[str, bytes, bool]] = []
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        ready = threading.Event()
        self.client.on_connect = lambda c, u, f, rc, p: (c.subscribe([(f"{prefix}/#", 1), ("homeassistant/#", 1)]),)
        self.client.on_subscribe = lambda *a: ready.set()
        self.client.on_message = lambda c, u, m: self.messages.put((m.topic, m.payload, m.retain))
        self.client.connect(host, port)
        self.client.loop_start()
        assert ready.wait(10), "subscription not acknowledged"

    def wait_for(self, pred, timeout: float = 30.0) -> tuple[str, bytes, bool]:
        for item in self.seen:
            if pred(*item):
                return item
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                item = self.messages.get(timeout=left)
            except queue.Empty:
                break
            self.seen.append(item)
            if pred(*item):
                return item
        raise TimeoutError("no matching MQTT message; seen: " + ", ".join(t for t, _, _ in self.seen[-20:]))

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture(scope="module")
def walk_file(tmp_path_factory) -> Path:
    scene = scenes.person_near(size=(640, 360), fps=15)  # onset at 3 s, 8 s long
    return encode_mp4(tmp_path_factory.mktemp("live") / "walk.mp4", scene.frames, 15)


def wait_for_file(folder: Path, pattern: str, *, min_bytes: int, timeout: float) -> list[Path]:
    """Files matching ``pattern`` under ``folder`` once one holds ``min_bytes``; [] after ``timeout``.

    A bounded poll, on purpose: the file is written by the hub *process*, and nothing in this process is told
    when it grows."""
    deadline = time.monotonic() + timeout
    while True:
        found = sorted(folder.rglob(pattern)) if folder.is_dir() else []
        if any(_size(p) >= min_bytes for p in found):
            return found
        if time.monotonic() > deadline:
            return []
        time.sleep(0.2)  # poll interval of the bounded wait above, not a synchronisation


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:  # renamed into place by the hub between the listing and the stat
        return 0


def make_hub(root: Path, source: Path, mosquitto, prefix: str, **extra) -> HubProcess:
    cfg = {"cameras": [{"id": "yard", "name": "Yard", "source": str(source), "loop": False}],
           "mqtt": {"enabled": True, "host": mosquitto.host, "port": mosquitto.port, "topic_prefix": prefix},
           "events": {"pre_roll_s": 2, "post_roll_s": 2, "cooldown_s": 5}}
    cfg.update(extra)
    return HubProcess.create(root, **cfg)  # started by the test, inside the try that stops it


def set_cameras(hub: HubProcess, cameras: list[dict]) -> None:
    cfg = yaml.safe_load(hub.config_path.read_text())
    cfg["cameras"] = cameras
    hub.config_path.write_text(yaml.safe_dump(cfg))


def test_walk_becomes_an_event_with_clip_snapshot_and_mqtt(tmp_path, walk_file, mosquitto):
    ha = Listener(mosquitto.host, mosquitto.port, "pwlive")
    hub = make_hub(tmp_path / "hub", walk_file, mosquitto, "pwlive")
    try:
        hub.start()
        ha.wait_for(lambda t, p, r: t == "pwlive/status" and p == b"online")
        ha.wait_for(lambda t, p, r: t.startswith("homeassistant/device/") and b"yard" in p)
        ha.wait_for(lambda t, p, r: t == "pwlive/camera/yard/motion" and p == b"ON")
        ended = json.loads(hub.wait_for_log('"msg": "event ended"', timeout=40))
        event_id = ended["event_id"]
        image = ha.wait_for(lambda t, p, r: t == "pwlive/camera/yard/snapshot")
        ha.wait_for(lambda t, p, r: t == "pwlive/camera/yard/motion" and p == b"OFF")

        store = Store(hub.data_dir / "hub.db")
        ev = store.get_event(event_id)
        store.close()
        assert ev["status"] == "complete" and ev["triggers"] == ["motion"]
        assert ev["detected_at"] - ev["start"] <= 0.5
        clip = Path(ev["clip_path"])
        with av.open(str(clip)) as c:
            frames = sum(1 for _ in c.decode(video=0))
            duration = float(c.duration / av.time_base)
        assert frames > 30 and ev["clip_duration_s"] == pytest.approx(duration, abs=0.2)
        # pre-roll 2 s before the onset, post-roll 2 s after the last motion, within a GOP (1 s here)
        assert duration >= (ev["end"] - ev["start"]) + 2 - 1.1
        assert image[1] == Path(ev["snapshot_path"]).read_bytes() and image[1][:2] == b"\xff\xd8"
        assert not [p for p in (hub.data_dir / "clips").rglob(".*")], "temp files left behind"

        # the API serves the clip with range requests
        auth = {"Authorization": f"Bearer {hub.admin_secret}"}
        listed = httpx.get(f"{hub.http}/api/ui/events", headers=auth).json()
        assert event_id in json.dumps(listed)
        part = httpx.get(f"{hub.http}/api/ui/events/{event_id}/clip", headers={**auth, "Range": "bytes=0-99"})
        assert part.status_code == 206 and part.content == clip.read_bytes()[:100]
    finally:
        code = hub.stop()
        ha.close()
    assert code == 0


def test_disarmed_camera_reports_motion_but_records_nothing(tmp_path, walk_file, mosquitto):
    ha = Listener(mosquitto.host, mosquitto.port, "pwdis")
    root = tmp_path / "hub"
    hub = HubProcess.create(root, mqtt={"enabled": True, "host": mosquitto.host, "port": mosquitto.port,
                                        "topic_prefix": "pwdis"})
    try:
        hub.start()
        httpx.post(f"{hub.http}/api/ui/arm", json={"armed": False},
                   headers={"Authorization": f"Bearer {hub.admin_secret}"}).raise_for_status()
        ha.wait_for(lambda t, p, r: t == "pwdis/armed" and p == b"disarmed")
        assert hub.stop() == 0
        set_cameras(hub, [{"id": "yard", "source": str(walk_file), "loop": False}])
        hub.start()
        ha.wait_for(lambda t, p, r: t == "pwdis/camera/yard/motion" and p == b"ON")
        ha.wait_for(lambda t, p, r: t == "pwdis/camera/yard/motion" and p == b"OFF")
    finally:
        hub.stop()
        ha.close()
    assert not any("event started" in line for line in hub.lines)
    store = Store(root / "data" / "hub.db")
    assert store.list_events() == []


def test_sigkill_mid_event_leaves_a_playable_clip(tmp_path, mosquitto):
    scene = scenes.person_near(size=(640, 360), fps=15)
    # a long walk: back and forth for 20 s so the event is still open when the hub is killed
    frames = scene.frames[:15 * 3] + (scene.frames[15 * 3:] + scene.frames[15 * 3:][::-1]) * 2
    source = encode_mp4(tmp_path / "long.mp4", frames, 15)
    ha = Listener(mosquitto.host, mosquitto.port, "pwkill")
    hub = make_hub(tmp_path / "hub", source, mosquitto, "pwkill")
    try:
        hub.start()
        started = json.loads(hub.wait_for_log('"msg": "event started"', timeout=30))
        # The writer has flushed at least two whole GOPs (fragments) to disk: a file another process writes,
        # so there is no in-process event to await, only the file to poll (bounded).
        parts = wait_for_file(hub.data_dir / "clips" / "yard", ".*.part", min_bytes=150_000, timeout=20)
        assert parts, "no .part file of 150 kB while recording"
        hub.kill()
        ha.wait_for(lambda t, p, r: t == "pwkill/status" and p == b"offline")  # the broker's last will

        set_cameras(hub, [])
        hub.start()
        hub.wait_for_log("repaired events interrupted by a crash", timeout=30)
        ha.wait_for(lambda t, p, r: t == "pwkill/status" and p == b"online")
    finally:
        hub.stop()
        ha.close()
    store = Store(hub.data_dir / "hub.db")
    ev = store.get_event(started["event_id"])
    assert ev["status"] == "partial"
    with av.open(ev["clip_path"]) as c:
        assert sum(1 for _ in c.decode(video=0)) >= 15
    assert not [p for p in (hub.data_dir / "clips").rglob(".*")], "temp files left behind"


def test_demo_camera_makes_an_event_with_clip_and_entities(tmp_path, mosquitto):
    """`pingwatch hub run --demo`: a newcomer without a phone sees a camera, an event with a clip and HA entities."""
    ha = Listener(mosquitto.host, mosquitto.port, "pwdemo")
    hub = HubProcess.create(tmp_path / "hub", mqtt={"enabled": True, "host": mosquitto.host, "port": mosquitto.port,
                                                    "topic_prefix": "pwdemo"})
    try:
        # How soon the first event comes is the demo's speed (scripts/bench); here: that it comes, whole.
        hub.start(timeout=60, args=("--demo",))
        ha.wait_for(lambda t, p, r: t.startswith("homeassistant/device/") and b"demo" in p)
        ha.wait_for(lambda t, p, r: t == "pwdemo/camera/demo/status" and p == b"online")
        ended = json.loads(hub.wait_for_log('"msg": "event ended"', timeout=90))
        ha.wait_for(lambda t, p, r: t == "pwdemo/camera/demo/snapshot" and p[:2] == b"\xff\xd8")
    finally:
        code = hub.stop()
        ha.close()
    assert code == 0
    store = Store(hub.data_dir / "hub.db")
    ev = store.get_event(ended["event_id"])
    assert ev["camera_id"] == "demo" and ev["status"] == "complete"
    assert set(ev["triggers"]) == {"motion", "sound"}  # the demo's walker knocks on the way
    with av.open(ev["clip_path"]) as c:
        assert sum(1 for _ in c.decode(video=0)) > 15 * 5
