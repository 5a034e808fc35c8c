"""The MQTT bridge against a real Mosquitto, with a paho client playing Home Assistant.

The hub is real (store, bus, arm state, controller, camera manager) but not serving HTTP; the snapshot button
decodes a real H.264 GOP buffered in a real camera pipeline, and the bridge process that the last-will test kills
builds the real controller too. Each test uses its own topic and discovery prefixes,
so retained messages of one test never reach another on the shared broker.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from hub.app import HubRuntime, build_hub
from hub.config import HubConfig
from hub.control import Controller
from hub.media.frames import VIDEO_TIME_BASE, EncodedFrame
from mqtt import discovery as d
from mqtt.bridge import MqttBridge
from tests.harness.mosquitto import find_mosquitto
from tests.harness.ports import HOST, free_port, stop_process, wait_for_port

REPO = Path(__file__).resolve().parent.parent
TIMEOUT = 5.0
BASE_URL = "https://hub.test:8443"
# A JPEG's bytes as the bridge sees them: it forwards files and controller results unchanged.
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 4 + b"\xff\xd9"

REQUIRED = {
    "binary_sensor": {"state_topic"},
    "sensor": {"state_topic"},
    "event": {"state_topic", "event_types"},
    "image": {"image_topic", "content_type"},
    "switch": {"command_topic", "state_topic"},
    "button": {"command_topic"},
    "alarm_control_panel": {"state_topic", "command_topic"},
}
TOPIC_KEYS = ("state_topic", "command_topic", "image_topic")


# -- a paho client acting as Home Assistant ----------------------------------------------------------------


@dataclass
class Received:
    topic: str
    payload: bytes
    retain: bool


@dataclass
class FakeHA:
    host: str
    port: int
    filters: list[str]
    messages: list[Received] = field(default_factory=list)
    _notifying: set[asyncio.Future[None]] = field(default_factory=set)
    # Its broker account and TLS, for brokers that ask (tests/test_mqtt_auth.py).
    username: str | None = None
    password: str | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    async def start(self) -> FakeHA:
        self._loop = asyncio.get_running_loop()
        self._cond = asyncio.Condition()
        ready = asyncio.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"fake-ha-{uuid.uuid4().hex[:8]}")
        if self.username:
            self.client.username_pw_set(self.username, self.password)
        if self.ca_file:
            self.client.tls_set(ca_certs=str(self.ca_file), certfile=str(self.cert_file) if self.cert_file else None,
                                keyfile=str(self.key_file) if self.key_file else None)

        def on_connect(client, userdata, flags, rc, props):
            client.subscribe([(f, 1) for f in self.filters])

        def on_subscribe(client, userdata, mid, rcs, props):
            self._loop.call_soon_threadsafe(ready.set)

        def on_message(client, userdata, msg):
            self._loop.call_soon_threadsafe(self._add, Received(msg.topic, bytes(msg.payload), bool(msg.retain)))

        self.client.on_connect = on_connect
        self.client.on_subscribe = on_subscribe
        self.client.on_message = on_message
        self.client.connect_async(self.host, self.port, keepalive=10)
        self.client.loop_start()
        await asyncio.wait_for(ready.wait(), TIMEOUT)
        return self

    def _add(self, msg: Received) -> None:
        self.messages.append(msg)

        async def notify() -> None:
            async with self._cond:
                self._cond.notify_all()

        task = asyncio.ensure_future(notify())
        self._notifying.add(task)  # held until done: the loop keeps only a weak reference
        task.add_done_callback(self._notifying.discard)

    def mark(self) -> int:
        return len(self.messages)

    def latest(self, topic: str) -> bytes | None:
        for m in reversed(self.messages):
            if m.topic == topic:
                return m.payload
        return None

    def topics_seen(self) -> set[str]:
        return {m.topic for m in self.messages}

    async def wait(self, topic: str, payload: bytes | str | Callable[[bytes], bool] | None = None, *,
                   after: int = 0, timeout: float = TIMEOUT) -> Received:
        """The first message on ``topic`` (matching ``payload``) received after index ``after``."""
        if isinstance(payload, str):
            payload = payload.encode()

        def find() -> Received | None:
            for m in self.messages[after:]:
                if m.topic != topic:
                    continue
                if payload is None or (m.payload == payload if isinstance(payload, bytes) else payload(m.payload)):
                    return m
            return None

        async def waiter() -> Received:
            async with self._cond:
                await self._cond.wait_for(lambda: find() is not None)
            found = find()
            assert found is not None
            return found

        try:
            return await asyncio.wait_for(waiter(), timeout)
        except TimeoutError:
            seen = [(m.topic, m.payload[:60]) for m in self.messages[after:]][-30:]
            raise AssertionError(
                f"no message on {topic!r} matching {payload!r} within {timeout}s; got {seen}") from None

    async def publish(self, topic: str, payload: bytes | str, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        await asyncio.to_thread(info.wait_for_publish, TIMEOUT)

    async def stop(self) -> None:
        self.client.disconnect()
        await asyncio.to_thread(self.client.loop_stop)


# -- the hub ----------------------------------------------------------------------------------------------


def encoded_gop(n: int = 5) -> list[EncodedFrame]:
    """A real H.264 GOP (libx264, baseline, Annex B) for a camera's ring buffer."""
    enc = av.CodecContext.create("libx264", "w")
    enc.width, enc.height, enc.pix_fmt = 320, 180, "yuv420p"
    enc.time_base = Fraction(1, 15)
    enc.options = {"profile": "baseline", "bf": "0", "g": "30"}
    frames, t0 = [], time.time()
    for i in range(n):
        img = np.full((180, 320), 40 + 30 * i, np.uint8)
        vf = av.VideoFrame.from_ndarray(img, format="gray").reformat(format="yuv420p")
        vf.pts = i
        for pkt in enc.encode(vf):
            frames.append(pkt)
    frames += list(enc.encode())
    return [EncodedFrame("video", "h264", bytes(p), int(p.pts) * 6000, VIDEO_TIME_BASE, t0 + int(p.pts) / 15,
                         keyframe=bool(p.is_keyframe), width=320, height=180) for p in frames]


@dataclass
class Setup:
    hub: HubRuntime
    control: Controller
    bridge: MqttBridge
    ha: FakeHA
    topics: d.Topics
    tmp: Path

    @property
    def front(self) -> d.CameraTopics:
        return self.topics.camera("front")

    @property
    def yard(self) -> d.CameraTopics:
        return self.topics.camera("yard")


def make_hub(tmp: Path, port: int, **mqtt_extra: Any) -> tuple[HubRuntime, Controller]:
    tag = uuid.uuid4().hex[:8]
    cfg = HubConfig(storage={"data_dir": str(tmp / "data")},
                    mqtt={"enabled": True, "host": HOST, "port": port, "topic_prefix": f"pw-{tag}",
                          "discovery_prefix": f"ha-{tag}", **mqtt_extra})
    hub = build_hub(cfg)  # built, not started: no sources, no HTTP
    hub.store.ensure_static_camera("front", "Front door", "file")
    hub.store.ensure_static_camera("yard", "Yard", "rtsp")
    hub.store.update_camera("front", battery=0.87)
    # a real pipeline with a real GOP buffered, so the snapshot button has a picture to decode
    front = hub.cameras.pipeline("front")
    for f in encoded_gop():
        front.buffer.push(f)
    front.online = True
    return hub, hub.control


def make_bridge(hub: HubRuntime, control: Controller, hub_id: str = "testhub") -> MqttBridge:
    return MqttBridge(hub.config.mqtt, hub.bus, control, hub_id, BASE_URL, reconnect_min_s=0.2, reconnect_max_s=1.0)


def fake_ha(host: str, port: int, topics: d.Topics) -> FakeHA:
    return FakeHA(host, port, [f"{topics.discovery}/#", f"{topics.prefix}/#"])


async def retained(host: str, port: int, topics: d.Topics, *wanted: str) -> dict[str, bytes]:
    """What the broker holds retained for ``wanted`` (a client that subscribes now gets these, flagged retain).

    Live messages reach existing subscribers with the retain flag cleared, so only a new subscriber can tell."""
    late = await fake_ha(host, port, topics).start()
    try:
        out = {}
        for topic in wanted:
            msg = await late.wait(topic)
            assert msg.retain, topic
            out[topic] = msg.payload
        return out
    finally:
        await late.stop()


async def not_retained(host: str, port: int, topics: d.Topics, *unwanted: str) -> bool:
    """True when the broker holds nothing retained on ``unwanted``. A marker is retained last on its own topic; a
    new client subscribed to the unwanted topics and then to the marker gets the broker's retained messages in
    subscription order, so once the marker arrives anything retained on the others would have come before it."""
    marker = f"{topics.prefix}/test-marker/{uuid.uuid4().hex[:8]}"
    pub = await FakeHA(host, port, [marker]).start()
    try:
        await pub.publish(marker, b"m", retain=True)
        await pub.wait(marker)
        late = await FakeHA(host, port, [*unwanted, marker]).start()
        try:
            await late.wait(marker)
            return not [m for m in late.messages if m.topic in unwanted and m.payload]
        finally:
            await late.stop()
    finally:
        await pub.publish(marker, b"", retain=True)
        await pub.stop()


@pytest.fixture
async def setup(mosquitto, tmp_path):
    hub, control = make_hub(tmp_path, mosquitto.port)
    bridge = make_bridge(hub, control)
    ha = await fake_ha(mosquitto.host, mosquitto.port, bridge.topics).start()
    await bridge.start()
    try:
        await asyncio.wait_for(bridge.connected.wait(), TIMEOUT)
        await ha.wait(bridge.topics.status, "online")  # the last of the initial burst
        yield Setup(hub, control, bridge, ha, bridge.topics, tmp_path)
    finally:
        await bridge.stop()
        await ha.stop()
        hub.store.close()


async def discovery_payloads(s: Setup, after: int = 0) -> dict[str, dict[str, Any]]:
    t = s.topics
    out = {}
    for topic in (t.hub_config_topic("testhub"), t.camera_config_topic("testhub", "front"),
                  t.camera_config_topic("testhub", "yard")):
        out[topic] = json.loads((await s.ha.wait(topic, after=after)).payload)
    return out


# -- discovery --------------------------------------------------------------------------------------------


async def test_discovery_payloads_are_valid_and_complete(setup: Setup) -> None:
    s = setup
    t = s.topics
    payloads = await discovery_payloads(s)
    hub_cfg = payloads[t.hub_config_topic("testhub")]
    hub_dev_id = hub_cfg["dev"]["ids"][0]

    unique_ids: list[str] = []
    referenced: set[str] = set()
    commands: set[str] = set()
    for topic, cfg in payloads.items():
        assert topic.startswith(f"{t.discovery}/device/") and topic.endswith("/config")
        assert {"dev", "o", "cmps", "availability"} <= cfg.keys()
        assert cfg["dev"]["ids"] and cfg["dev"]["name"]
        assert cfg["o"]["name"] == "ping-watch" and cfg["o"]["sw"]
        for avail in cfg["availability"]:
            assert avail["topic"].startswith(f"{t.prefix}/")
            referenced.add(avail["topic"])
        assert cfg["availability"][0]["topic"] == t.status
        for key, comp in cfg["cmps"].items():
            platform = comp["p"]
            assert platform in REQUIRED, (key, platform)
            missing = REQUIRED[platform] - comp.keys()
            assert not missing, (key, missing)
            unique_ids.append(comp["unique_id"])
            assert comp["qos"] == 1, (key, comp)  # per component: older HA ignores the device-level qos
            for k in TOPIC_KEYS:
                if k in comp:
                    assert comp[k].startswith(f"{t.prefix}/"), (key, comp[k])
                    (commands if k == "command_topic" else referenced).add(comp[k])

    # The hub's alarm; 8 entities for the file camera that reported a battery, 7 for the RTSP one that has none.
    assert len(unique_ids) == len(set(unique_ids)) == 1 + 8 + 7
    assert "battery" not in payloads[t.camera_config_topic("testhub", "yard")]["cmps"]

    alarm = hub_cfg["cmps"]["alarm"]
    assert alarm["p"] == "alarm_control_panel" and alarm["code_arm_required"] is False
    assert alarm["supported_features"] == ["arm_away"]

    front = payloads[t.camera_config_topic("testhub", "front")]
    assert front["dev"]["name"] == "Front door" and front["dev"]["via_device"] == hub_dev_id
    assert front["availability_mode"] == "all"
    assert [a["topic"] for a in front["availability"]] == [t.status, s.front.status]
    by_platform = {(c["p"], c.get("device_class")) for c in front["cmps"].values()}
    assert {("binary_sensor", "motion"), ("binary_sensor", "sound"), ("sensor", "battery"),
            ("sensor", "timestamp"), ("image", None), ("switch", None), ("button", None)} <= by_platform
    event = front["cmps"]["event"]
    assert event["p"] == "event" and set(event["event_types"]) == {"motion", "sound"}
    assert front["cmps"]["snapshot"]["content_type"] == "image/jpeg"
    assert front["cmps"]["battery"]["unit_of_measurement"] == "%"

    # Unique ids are a function of the hub id and camera id only: a new bridge (a restart) builds the same.
    again = d.camera_device(t, "testhub", {"id": "front", "name": "renamed", "battery": 0.1})
    assert [c["unique_id"] for c in again["cmps"].values()] == [c["unique_id"] for c in front["cmps"].values()]

    # The states HA subscribes to are there at once, except what only an event produces.
    await s.ha.wait(t.status, "online")
    await s.ha.wait(t.armed_state, "armed_away")
    await s.ha.wait(s.front.status, "online")
    await s.ha.wait(s.yard.status, "offline")
    await s.ha.wait(s.front.battery, "87")
    for cam in (s.front, s.yard):
        await s.ha.wait(cam.motion, "OFF")
        await s.ha.wait(cam.sound, "OFF")
        await s.ha.wait(cam.armed_state, "ON")

    (s.tmp / "snap.jpg").write_bytes(JPEG)
    for cam in ("front", "yard"):
        s.hub.bus.publish("camera.status", camera_id=cam, battery=0.5)
        s.hub.bus.publish("event.ended", event={"id": f"ev-{cam}", "camera_id": cam, "start": 1_700_000_000.0,
                                                "end": 1_700_000_020.0, "triggers": ["motion"],
                                                "snapshot_path": str(s.tmp / "snap.jpg")})
    for topic in referenced:
        await s.ha.wait(topic)
    assert referenced <= s.ha.topics_seen()
    live_only = {s.front.event, s.yard.event, s.front.image, s.yard.image}
    held = await retained(s.ha.host, s.ha.port, t, *payloads, *(referenced - live_only))
    assert held[t.status] == b"online" and held[s.front.battery] == b"50"
    assert await not_retained(s.ha.host, s.ha.port, t, s.front.image, s.yard.image)
    assert json.loads(held[t.hub_config_topic("testhub")]) == hub_cfg
    # Every command topic is one the bridge listens to (commands are exercised in the tests below).
    subs = t.command_subscriptions()
    for topic in commands:
        assert any(mqtt.topic_matches_sub(sub, topic) for sub in subs), topic


async def test_ha_birth_republishes_discovery(setup: Setup) -> None:
    s = setup
    await discovery_payloads(s)
    mark = s.ha.mark()
    await s.ha.publish(s.topics.ha_status, "online")
    payloads = await discovery_payloads(s, after=mark)
    assert len(payloads) == 3
    await s.ha.wait(s.front.motion, "OFF", after=mark)  # states follow, for entities HA just (re)created
    # HA going offline changes nothing; a retained "online" (stale) does not trigger a storm either.
    mark = s.ha.mark()
    await s.ha.publish(s.topics.ha_status, "offline")
    s.hub.bus.publish("motion", camera_id="front", active=True, score=0.2)
    await s.ha.wait(s.front.motion, "ON", after=mark)
    assert s.ha.latest(s.topics.hub_config_topic("testhub")) is not None
    assert not [m for m in s.ha.messages[mark:] if m.topic.endswith("/config")]


# -- bus → states ------------------------------------------------------------------------------------------


async def test_motion_sound_and_camera_states(setup: Setup) -> None:
    s = setup
    await s.ha.wait(s.front.motion, "OFF")
    mark = s.ha.mark()
    s.hub.bus.publish("motion", camera_id="front", active=True, score=0.4)
    await s.ha.wait(s.front.motion, "ON", after=mark)
    s.hub.bus.publish("sound", camera_id="front", active=True, level_dbfs=-20.0)
    await s.ha.wait(s.front.sound, "ON", after=mark)
    s.hub.bus.publish("motion", camera_id="front", active=False, score=0.0)
    await s.ha.wait(s.front.motion, "OFF", after=mark)
    s.hub.bus.publish("camera.status", camera_id="front", battery=0.42, charging=False)
    await s.ha.wait(s.front.battery, "42", after=mark)
    s.hub.bus.publish("camera.online", camera_id="yard")
    await s.ha.wait(s.yard.status, "online", after=mark)
    s.hub.bus.publish("camera.offline", camera_id="front")
    await s.ha.wait(s.front.status, "offline", after=mark)
    await s.ha.wait(s.front.sound, "OFF", after=mark)  # an offline camera leaves no sensor stuck ON


async def test_event_ended_publishes_event_image_and_time(setup: Setup) -> None:
    s = setup
    snap = s.tmp / "ev-1.jpg"
    snap.write_bytes(JPEG)
    mark = s.ha.mark()
    s.hub.bus.publish("event.started", event_id="ev-1", camera_id="front", start=1_700_000_000.5,
                      detected_at=1_700_000_001.0, triggers=["motion"])
    await s.ha.wait(s.front.last_event, "2023-11-14T22:13:20+00:00", after=mark)
    s.hub.bus.publish("event.ended", event={
        "id": "ev-1", "camera_id": "front", "start": 1_700_000_000.5, "end": 1_700_000_030.0,
        "triggers": ["sound", "motion"], "clip_path": "/x/ev-1.mp4", "snapshot_path": str(snap),
        "thumb_path": None, "peak_motion": 0.3, "audio_peak_dbfs": -12.0, "status": "done"})
    image = await s.ha.wait(s.front.image, after=mark)
    assert image.payload == JPEG
    ev = await s.ha.wait(s.front.event, after=mark)
    body = json.loads(ev.payload)
    assert body["event_type"] == "motion"
    assert body["clip_url"] == f"{BASE_URL}/api/ui/events/ev-1/clip"
    assert body["snapshot_url"] == f"{BASE_URL}/api/ui/events/ev-1/snapshot"

    # A sound-only event, with a snapshot file that has gone: the event still goes out, no image.
    mark = s.ha.mark()
    s.hub.bus.publish("event.ended", event={"id": "ev-2", "camera_id": "front", "start": 1_700_000_100.0,
                                            "triggers": ["sound"], "snapshot_path": str(s.tmp / "gone.jpg")})
    body = json.loads((await s.ha.wait(s.front.event, after=mark)).payload)
    assert body["event_type"] == "sound"
    assert not [m for m in s.ha.messages[mark:] if m.topic == s.front.image]

    # The time is retained; the event is not (HA would fire it again at every restart), and neither is the
    # image: a picture of the home must not wait on the broker for whoever subscribes next (issue 10, item 10).
    held = await retained(s.ha.host, s.ha.port, s.topics, s.front.last_event)
    assert held[s.front.last_event] == b"2023-11-14T22:15:00+00:00"
    assert await not_retained(s.ha.host, s.ha.port, s.topics, s.front.image, s.front.event)


# -- commands -----------------------------------------------------------------------------------------------


async def test_alarm_panel_and_camera_switch_commands(setup: Setup) -> None:
    s = setup
    t = s.topics
    await s.ha.wait(t.armed_state, "armed_away")
    mark = s.ha.mark()
    await s.ha.publish(t.armed_command, "DISARM")
    await s.ha.wait(t.armed_state, "disarmed", after=mark)
    assert s.control.is_armed() is False
    await s.ha.publish(t.armed_command, "ARM_AWAY")
    await s.ha.wait(t.armed_state, "armed_away", after=mark)
    assert s.control.is_armed() is True

    await s.ha.publish(s.yard.armed_command, "OFF")
    await s.ha.wait(s.yard.armed_state, "OFF", after=mark)
    assert s.hub.store.get_camera("yard")["armed"] == 0
    assert s.control.is_armed("yard") is False
    await s.ha.publish(s.yard.armed_command, "ON")
    await s.ha.wait(s.yard.armed_state, "ON", after=mark)
    assert s.hub.store.get_camera("yard")["armed"] == 1

    # A change made by another face (the web UI, the CLI) reaches HA through the bus.
    mark = s.ha.mark()
    s.control.set_armed(False)
    await s.ha.wait(t.armed_state, "disarmed", after=mark)
    s.control.set_armed(False, "front")
    await s.ha.wait(s.front.armed_state, "OFF", after=mark)


async def test_snapshot_button_publishes_image(setup: Setup) -> None:
    s = setup
    mark = s.ha.mark()
    await s.ha.publish(s.front.snapshot_command, "PRESS")
    msg = await s.ha.wait(s.front.image, after=mark)
    assert msg.payload[:2] == b"\xff\xd8"
    picture = cv2.imdecode(np.frombuffer(msg.payload, np.uint8), cv2.IMREAD_GRAYSCALE)
    assert picture.shape == (180, 320) and abs(int(picture.mean()) - (40 + 30 * 4)) < 12  # the newest frame
    # A live picture is never left retained on the broker for whoever subscribes next (issue 10, item 10).
    assert await not_retained(s.ha.host, s.ha.port, s.topics, s.front.image)
    # A camera with nothing buffered: no image, no crash (checked by the next command working).
    await s.ha.publish(s.yard.snapshot_command, "PRESS")
    await s.ha.publish(s.topics.armed_command, "DISARM")
    await s.ha.wait(s.topics.armed_state, "disarmed", after=mark)
    assert not [m for m in s.ha.messages[mark:] if m.topic == s.yard.image]


async def test_malformed_commands_are_ignored(setup: Setup) -> None:
    s = setup
    t = s.topics
    await s.ha.wait(t.armed_state, "armed_away")
    mark = s.ha.mark()
    bad = [
        (t.armed_command, "ARM_NIGHT"),
        (t.armed_command, b"\xff\xfe\x00"),
        (t.armed_command, '{"state": "DISARM"}'),
        (t.armed_command, ""),
        (s.front.armed_command, "maybe"),
        (s.front.snapshot_command, "NOPE"),
        (f"{t.prefix}/camera/nosuchcam/armed/set", "OFF"),
        (f"{t.prefix}/camera/nosuchcam/snapshot/take", "PRESS"),
        (f"{t.prefix}/camera/front/armed/set/extra", "OFF"),
    ]
    for topic, payload in bad:
        await s.ha.publish(topic, payload)
    # Commands from one client are delivered in order: once this one took effect, all the above were handled.
    await s.ha.publish(s.yard.armed_command, "OFF")
    await s.ha.wait(s.yard.armed_state, "OFF", after=mark)
    assert s.control.is_armed() is True
    assert s.hub.store.get_camera("front")["armed"] == 1
    assert s.bridge.commands_ignored == len(bad) - 1  # the .../extra topic matches no subscription
    assert not [m for m in s.ha.messages[mark:] if m.topic in (t.armed_state, s.front.armed_state, s.front.image)]
    assert s.bridge.connected.is_set()


async def test_retained_command_is_not_replayed_and_stop_publishes_offline(mosquitto, tmp_path) -> None:
    hub, control = make_hub(tmp_path, mosquitto.port)
    bridge = make_bridge(hub, control)
    t = bridge.topics
    ha = await fake_ha(mosquitto.host, mosquitto.port, t).start()
    try:
        # Some tool left a retained command: the broker hands it to the bridge at every (re)subscribe.
        await ha.publish(t.armed_command, "DISARM", retain=True)
        await bridge.start()
        await ha.wait(t.status, "online")
        mark = ha.mark()
        await ha.publish(t.camera("yard").armed_command, "OFF")  # delivered after the retained one
        await ha.wait(t.camera("yard").armed_state, "OFF", after=mark)
        assert control.is_armed() is True
        assert bridge.commands_ignored == 1
        await ha.publish(t.armed_command, "", retain=True)  # clear it (arrives as one more ignored command)

        mark = ha.mark()
        await bridge.stop()
        assert (await ha.wait(t.status, "offline", after=mark)).payload == b"offline"
    finally:
        await bridge.stop()
        await ha.stop()
        hub.store.close()


# -- broker outages -------------------------------------------------------------------------------------------


class OwnBroker:
    """A Mosquitto on a fixed port that the test starts and stops at will. Without ``persistence`` a restart
    forgets every retained message; with it, they survive (saved at shutdown), as on most real brokers."""

    def __init__(self, port: int, persistence: bool = False) -> None:
        self.port = port
        self.dir = Path(tempfile.mkdtemp(prefix="pw-mqtt-own-"))
        lines = [f"listener {port} {HOST}", "allow_anonymous true",
                 f"persistence {'true' if persistence else 'false'}", f"persistence_location {self.dir}/"]
        if os.geteuid() == 0:
            lines.append(f"user {getpass.getuser()}")
        (self.dir / "mosquitto.conf").write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        log = open(self.dir / "mosquitto.log", "ab")
        self.proc = subprocess.Popen([find_mosquitto(), "-c", str(self.dir / "mosquitto.conf")], stdout=log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        wait_for_port(HOST, self.port, timeout=10, proc=self.proc, log=self.dir / "mosquitto.log")

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None


async def test_broker_down_at_start_then_up_and_restarted(tmp_path) -> None:
    port = free_port()
    broker = OwnBroker(port)
    hub, control = make_hub(tmp_path, port)
    bridge = make_bridge(hub, control)
    try:
        await bridge.start()  # returns at once: the hub does not wait for the broker
        await asyncio.wait_for(bridge.connect_failed.wait(), TIMEOUT)
        assert not bridge.connected.is_set()
        s_motion = bridge.topics.camera("front").motion
        hub.bus.publish("motion", camera_id="front", active=True, score=0.5)  # while down: kept, not lost

        await asyncio.to_thread(broker.start)
        ha = await fake_ha(HOST, port, bridge.topics).start()
        try:
            await asyncio.wait_for(bridge.connected.wait(), TIMEOUT)
            await ha.wait(bridge.topics.hub_config_topic("testhub"))
            await ha.wait(bridge.topics.status, "online")
            await ha.wait(s_motion, "ON")
        finally:
            await ha.stop()

        # The broker goes away (and comes back empty): the bridge reconnects and publishes everything again.
        await asyncio.to_thread(broker.stop)
        await asyncio.wait_for(bridge.disconnected.wait(), TIMEOUT)
        hub.bus.publish("sound", camera_id="yard", active=True, level_dbfs=-10.0)
        control.set_armed(False)  # the hub keeps working meanwhile
        await asyncio.to_thread(broker.start)
        ha = await fake_ha(HOST, port, bridge.topics).start()
        try:
            await asyncio.wait_for(bridge.connected.wait(), TIMEOUT)
            await ha.wait(bridge.topics.camera_config_topic("testhub", "yard"))
            await ha.wait(bridge.topics.status, "online")
            await ha.wait(s_motion, "ON")
            await ha.wait(bridge.topics.camera("yard").sound, "ON")
            await ha.wait(bridge.topics.armed_state, "disarmed")
            assert bridge.connections == 2
        finally:
            await ha.stop()
    finally:
        await bridge.stop()
        broker.stop()
        hub.store.close()


_BRIDGE_PROCESS = """
import asyncio, sys
from pathlib import Path
from hub.arming import ArmState
from hub.bus import Bus
from hub.cameras import CameraManager
from hub.config import HubConfig, MqttConfig
from hub.control import Controller
from hub.pipeline import PipelineContext
from hub.store import Store
from mqtt.bridge import MqttBridge

async def main():
    # The real controller over a real store and arm state, built as hub/app.py builds them.
    data = Path(sys.argv[5])
    store = Store(data / "hub.db")
    bus = Bus()
    arming = ArmState(store, bus)
    cameras = CameraManager(PipelineContext(
        config=HubConfig(storage={"data_dir": str(data)}), store=store, bus=bus, clips_dir=data / "clips",
        scratch_dir=data, is_armed=arming.is_armed, on_disk_full=lambda: None))
    arming.add_listener(cameras.apply_armed)
    control = Controller(arming, cameras)
    store.ensure_static_camera("cam1", "Cam", "phone")
    store.update_camera("cam1", battery=0.5)
    cfg = MqttConfig(enabled=True, host=sys.argv[1], port=int(sys.argv[2]), topic_prefix=sys.argv[3],
                     discovery_prefix=sys.argv[4])
    bridge = MqttBridge(cfg, bus, control, "proc", "https://x", keepalive_s=5)
    await bridge.start()
    await asyncio.wait_for(bridge.connected.wait(), 10)
    print("connected", flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


async def test_last_will_offline_when_the_process_dies(mosquitto, tmp_path) -> None:
    tag = uuid.uuid4().hex[:8]
    topics = d.Topics(f"pw-{tag}", f"ha-{tag}")
    ha = await fake_ha(mosquitto.host, mosquitto.port, topics).start()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _BRIDGE_PROCESS, mosquitto.host, str(mosquitto.port), topics.prefix, topics.discovery,
        str(tmp_path), cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        async def until_connected() -> None:
            while (line := await proc.stdout.readline()) and line.strip() != b"connected":
                pass
            assert line, "the bridge process exited before connecting"

        await asyncio.wait_for(until_connected(), 15)
        await ha.wait(topics.status, "online")
        await ha.wait(topics.camera("cam1").battery, "50")
        await ha.wait(topics.armed_state, "armed_away")  # read from the real arm state in the store
        mark = ha.mark()
        proc.kill()  # no clean disconnect: only the broker's last will can say offline
        await proc.wait()
        await ha.wait(topics.status, "offline", after=mark)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await ha.stop()
    late = await fake_ha(mosquitto.host, mosquitto.port, topics).start()
    try:
        msg = await late.wait(topics.status)
        assert msg.payload == b"offline" and msg.retain
    finally:
        await late.stop()


# -- pure helpers -------------------------------------------------------------------------------------------


def test_payload_helpers() -> None:
    assert d.event_type(["sound", "motion"]) == "motion"
    assert d.event_type([{"kind": "sound"}]) == "sound"
    assert d.event_type([]) == "motion"
    assert d.battery_percent(0.873) == "87" and d.battery_percent(1.7) == "100"
    assert d.battery_percent(None) is None and d.battery_percent("x") is None
    assert d.battery_percent(float("nan")) is None
    assert d.timestamp(0) == "1970-01-01T00:00:00+00:00" and d.timestamp("soon") is None
    t = d.Topics("pw", "ha")
    assert t.camera_from_command("pw/camera/front/armed/set") == ("front", "armed")
    assert t.camera_from_command("pw/camera/front/snapshot/take") == ("front", "snapshot")
    assert t.camera_from_command("pw/camera/a/b/armed/set") is None
    assert t.camera_from_command("pw/armed/set") is None
    assert t.camera("we+ird/#id").base == "pw/camera/we_ird__id"
    assert t.camera_object_id("hub 1", "cam") == "pingwatch_hub_1_cam"


async def test_a_hub_that_uploads_announces_its_waiting_uploads(mosquitto, tmp_path):
    hub, control = make_hub(tmp_path, mosquitto.port)
    pending = [2]
    bridge = MqttBridge(hub.config.mqtt, hub.bus, control, "testhub", BASE_URL, reconnect_min_s=0.2,
                        reconnect_max_s=1.0, uploads_pending=lambda: pending[0])
    ha = await fake_ha(mosquitto.host, mosquitto.port, bridge.topics).start()
    await bridge.start()
    try:
        t = bridge.topics
        cfg = json.loads((await ha.wait(t.hub_config_topic("testhub"))).payload)
        sensor = cfg["cmps"]["uploads"]
        assert sensor["p"] == "sensor" and sensor["state_topic"] == t.upload_queue
        assert sensor["entity_category"] == "diagnostic"
        await ha.wait(t.upload_queue, "2")  # the outbox as it was at connect
        mark = ha.mark()
        hub.bus.publish("upload.state", event_id="ev-1", state="done", reason=None, pending=1)
        await ha.wait(t.upload_queue, "1", after=mark)
    finally:
        await bridge.stop()
        await ha.stop()
        hub.store.close()


async def test_disarm_needs_the_code_when_one_is_set(mosquitto, tmp_path, caplog) -> None:
    """mqtt.disarm_code (HA's code_disarm_required): anyone on the broker could disarm with a bare DISARM."""
    hub, control = make_hub(tmp_path, mosquitto.port, disarm_code="4711")
    bridge = make_bridge(hub, control)
    t = bridge.topics
    ha = await fake_ha(mosquitto.host, mosquitto.port, t).start()
    await bridge.start()
    try:
        await asyncio.wait_for(bridge.connected.wait(), TIMEOUT)
        alarm = json.loads((await ha.wait(t.hub_config_topic("testhub"))).payload)["cmps"]["alarm"]
        assert alarm["code_disarm_required"] is True and alarm["code"] == "REMOTE_CODE"
        assert alarm["command_template"] == d.COMMAND_TEMPLATE  # HA sends {"action", "code"}
        await ha.wait(t.armed_state, "armed_away")
        mark = ha.mark()
        for payload in ("DISARM", '{"action": "DISARM", "code": "0000"}', '{"action": "DISARM"}',
                        '{"action": "DISARM", "code": 4711}'):
            await ha.publish(t.armed_command, payload)
        await ha.publish(t.camera("front").armed_command, "OFF")  # a camera switch carries no code: refused
        await ha.publish(t.armed_command, '{"action": "DISARM", "code": "4711"}')  # delivered in order, last
        await ha.wait(t.armed_state, "disarmed", after=mark)
        states = [m.payload for m in ha.messages[mark:] if m.topic == t.armed_state]
        assert states[-1] == b"disarmed" and set(states[:-1]) <= {b"armed_away"}
        assert bridge.commands_ignored == 5
        assert hub.store.get_camera("front")["armed"] == 1
        await ha.publish(t.armed_command, '{"action": "ARM_AWAY", "code": ""}')  # arming needs no code
        await ha.wait(t.armed_state, "armed_away", after=mark)
        assert "4711" not in caplog.text and "0000" not in caplog.text  # codes never reach the log
    finally:
        await bridge.stop()
        await ha.stop()
        hub.store.close()
