"""The hub against a real, unmodified Home Assistant (issue 14): HA 2025.4.4 from PyPI in its own venv
(tests/harness/homeassistant.py), only its MQTT integration, set up through its config flow against the test
Mosquitto; the real hub process with two file cameras. Everything is asserted through HA's own REST and WebSocket
APIs: its device and entity registries, its state machine, its service calls, and its MQTT debug info.

One HA and one hub for the module (HA takes a while to start); the tests run in file order and the last one
stops the hub.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import av
import httpx
import numpy as np
import paho.mqtt.client as mqtt
import pytest
import pytest_asyncio
from paho.mqtt.enums import CallbackAPIVersion

from tests.harness.homeassistant import HAClient, HomeAssistant, start_home_assistant
from tests.harness.mosquitto import Mosquitto
from tests.harness.ports import ServiceStartError
from tests.hubproc import HubProcess

# The first run on a machine without .tools/homeassistant installs HA (minutes) inside the first test's setup.
pytestmark = pytest.mark.timeout(900)

PREFIX = f"pwha-{uuid.uuid4().hex[:6]}"  # the hub's topic prefix; discovery goes to HA's own "homeassistant/"
DISARM_CODE = "4711"


@pytest.fixture(scope="module")
def moving_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six seconds of H.264 (looped by the hub): a bright block crosses a dark wall for 1.5 s, then 4.5 s of still
    picture, so motion starts and ends (and an event is recorded) every loop."""
    path = tmp_path_factory.mktemp("ha-media") / "walk.mp4"
    fps = 10
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 320, 180, "yuv420p"
        stream.options = {"profile": "baseline", "bf": "0", "g": str(fps)}
        for i in range(6 * fps):
            img = np.full((180, 320), 30, np.uint8)
            if i < 15:
                img[40:140, 20 * i:20 * i + 60] = 230
            frame = av.VideoFrame.from_ndarray(img, format="gray").reformat(format="yuv420p")
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return path


@pytest.fixture(scope="module")
def home_assistant(mosquitto: Mosquitto) -> Iterator[HomeAssistant]:
    try:
        ha = start_home_assistant(mosquitto.host, mosquitto.port)
    except ServiceStartError as exc:
        pytest.fail(f"[harness] homeassistant could not start: {exc}", pytrace=False)
    try:
        yield ha
    finally:
        ha.stop()


@pytest.fixture(scope="module")
def hub(home_assistant: HomeAssistant, mosquitto: Mosquitto, moving_file: Path,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    h = HubProcess.create(
        tmp_path_factory.mktemp("ha-hub"),
        mqtt={"enabled": True, "host": mosquitto.host, "port": mosquitto.port, "topic_prefix": PREFIX,
              "discovery_prefix": "homeassistant", "disarm_code": DISARM_CODE},
        cameras=[{"id": "front", "name": "Front door", "source": str(moving_file), "loop": True},
                 {"id": "yard", "name": "Yard", "source": str(moving_file), "loop": True}],
        events={"pre_roll_s": 1, "post_roll_s": 1, "cooldown_s": 1, "max_length_s": 20},
    )
    try:
        h.start()
        h.wait_for_log("mqtt connected")
        yield h
    finally:
        h.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def ha(home_assistant: HomeAssistant, hub: HubProcess) -> AsyncIterator[HAClient]:
    async with HAClient(home_assistant) as client:
        await client.subscribe_states()
        yield client


def admin(hub: HubProcess) -> dict[str, str]:
    return {"Authorization": f"Bearer {hub.admin_secret}"}


# -- what HA holds -----------------------------------------------------------------------------------------


async def devices(ha: HAClient) -> dict[str, dict[str, Any]]:
    """HA's devices of this hub, by the identifier the hub gave them (``pingwatch_<hub>[_<camera>]``)."""
    out = {}
    for dev in await ha.ws("config/device_registry/list"):
        for domain, ident in dev["identifiers"]:
            if domain == "mqtt" and str(ident).startswith("pingwatch_"):
                out[str(ident)] = dev
    return out


def hub_id(hub: HubProcess) -> str:
    """The id the hub's discovery is built on (kept in its database, made at first start)."""
    with sqlite3.connect(f"file:{hub.data_dir / 'hub.db'}?mode=ro", uri=True) as db:
        return str(db.execute("SELECT value FROM meta WHERE key = 'hub_id'").fetchone()[0])


async def device_ids(ha: HAClient, hub: HubProcess) -> dict[str, str]:
    """``{"hub": <HA device id>, "front": ..., "yard": ...}``: this hub's devices as HA has them now."""
    ident = f"pingwatch_{hub_id(hub)}"
    out = {}
    for key, dev in (await devices(ha)).items():
        if key == ident:
            out["hub"] = dev["id"]
        elif key.startswith(f"{ident}_"):
            out[key[len(ident) + 1:]] = dev["id"]
    return out


_SUFFIXES = ("alarm", "uploads_pending", "motion", "sound", "event", "snapshot", "last_event", "armed",
             "take_snapshot", "battery", "detect_stream")


async def entities(ha: HAClient, device_id: str) -> dict[str, dict[str, Any]]:
    """A device's entities in HA's entity registry, by what their unique id ends with (``motion``, ...)."""
    out = {}
    for ent in await ha.ws("config/entity_registry/list"):
        if ent["device_id"] == device_id:
            uid = ent["unique_id"]
            out[max((x for x in _SUFFIXES if uid.endswith(f"_{x}")), key=len, default=uid)] = ent
    return out


async def entities_with(ha: HAClient, device_id: str, keys: set[str]) -> dict[str, dict[str, Any]]:
    """The device's entities once ``keys`` are among them (HA sets up each platform's entities in turn)."""
    async def check() -> dict[str, dict[str, Any]] | None:
        ents = await entities(ha, device_id)
        return ents if keys <= ents.keys() else None

    return await ha.until(check, f"entities {sorted(keys)} of device {device_id}")  # type: ignore[no-any-return]


async def entity_ids(ha: HAClient, device_id: str) -> dict[str, str]:
    return {key: ent["entity_id"] for key, ent in (await entities(ha, device_id)).items()}


async def hub_devices_in_ha(ha: HAClient, hub: HubProcess) -> dict[str, str] | None:
    ids = await device_ids(ha, hub)
    return ids if {"hub", "front", "yard"} <= ids.keys() else None


async def arm_from_the_hub(ha: HAClient, hub: HubProcess, api: httpx.AsyncClient, alarm: str, armed: bool) -> None:
    """Arm or disarm through the hub's web API and wait until HA's alarm shows it (whatever it showed before)."""
    r = await api.post("/api/ui/arm", json={"armed": armed}, headers=admin(hub))
    assert r.status_code == 200, r.text
    want = "armed_away" if armed else "disarmed"

    async def shown() -> bool:
        return ((await ha.state(alarm)) or {}).get("state") == want

    await ha.until(shown, f"HA's alarm {want}")


def hub_log(hub: HubProcess, message: str, start: int = 0) -> list[dict[str, Any]]:
    return [rec for rec in hub.logs()[start:] if str(rec.get("message", rec.get("msg", ""))).startswith(message)]


# -- devices and entities ------------------------------------------------------------------------------------

CAMERA_ENTITIES = {  # unique id suffix: (domain, name, device class)
    "motion": ("binary_sensor", "Motion", "motion"),
    "sound": ("binary_sensor", "Sound", "sound"),
    "event": ("event", "Event", "motion"),
    "snapshot": ("image", "Snapshot", None),
    "last_event": ("sensor", "Last event", "timestamp"),
    "armed": ("switch", "Armed", None),
    "take_snapshot": ("button", "Take snapshot", None),
}


async def test_devices_and_entities_as_home_assistant_has_them(ha: HAClient, hub: HubProcess) -> None:
    ids = await ha.until(lambda: hub_devices_in_ha(ha, hub), "the hub's and both cameras' devices")
    devs = {dev["id"]: dev for dev in await ha.ws("config/device_registry/list")}
    hub_dev = devs[ids["hub"]]
    assert (hub_dev["name"], hub_dev["manufacturer"], hub_dev["model"]) == ("ping-watch hub", "ping-watch",
                                                                          "ping-watch hub")
    assert hub_dev["configuration_url"].startswith("https://127.0.0.1:")
    hub_ents = await entities_with(ha, ids["hub"], {"alarm", "uploads_pending"})
    assert set(hub_ents) == {"alarm", "uploads_pending"}  # cloud.enabled (the default): the upload outbox
    uploads = await ha.ws("config/entity_registry/get", entity_id=hub_ents["uploads_pending"]["entity_id"])
    assert (uploads["entity_id"].split(".")[0], uploads["original_name"], uploads["entity_category"]) == \
        ("sensor", "Uploads waiting", "diagnostic"), uploads
    waiting = await ha.until(lambda: _available(ha, uploads["entity_id"]), "the outbox sensor's state")
    assert waiting["state"] == "0" and waiting["attributes"]["unit_of_measurement"] == "events", waiting
    alarm = await ha.until(lambda: ha.state(hub_ents["alarm"]["entity_id"]), "the alarm's state")
    assert alarm["entity_id"].startswith("alarm_control_panel.")
    assert alarm["attributes"]["code_format"] == "number"  # mqtt.disarm_code: HA shows a keypad ...
    assert alarm["attributes"]["code_arm_required"] is False  # ... to disarm only

    for cid, name in (("front", "Front door"), ("yard", "Yard")):
        dev = devs[ids[cid]]
        assert (dev["name"], dev["model"], dev["via_device_id"]) == (name, "File camera", ids["hub"])
        ents = await entities_with(ha, ids[cid], set(CAMERA_ENTITIES))
        # No battery sensor (a file camera has none: it would read "unknown" for ever) and no Detection stream
        # (no detect stream of its own).
        assert set(ents) == set(CAMERA_ENTITIES), sorted(ents)
        for key, (domain, ent_name, device_class) in CAMERA_ENTITIES.items():
            entry = await ha.ws("config/entity_registry/get", entity_id=ents[key]["entity_id"])
            assert entry["entity_id"].split(".")[0] == domain, entry
            assert entry["original_name"] == ent_name, entry
            assert entry["original_device_class"] == device_class, entry
            assert entry["entity_category"] is None, entry
        motion = await ha.until(lambda e=ents["motion"]["entity_id"]: _available(ha, e), f"{name} Motion available")
        assert motion["attributes"]["device_class"] == "motion"
        assert motion["attributes"]["friendly_name"] == f"{name} Motion"


async def _available(ha: HAClient, entity_id: str) -> dict[str, Any] | None:
    st = await ha.state(entity_id)
    return st if st and st["state"] not in ("unavailable", "unknown") else None


async def test_home_assistant_receives_states_at_qos_1(ha: HAClient, hub: HubProcess) -> None:
    """HA subscribes with the QoS of each component (2025.4 ignores the device-level qos): what it received
    from the hub, as its MQTT debug info records, arrived at QoS 1 (a QoS 0 subscription would downgrade it)."""
    ids = await ha.until(lambda: hub_devices_in_ha(ha, hub), "the hub's devices")
    for key in ("hub", "front"):
        info = await ha.ws("mqtt/device/debug_info", device_id=ids[key])
        received = [(sub["topic"], m["qos"]) for ent in info["entities"] for sub in ent["subscriptions"]
                    for m in sub["messages"]]
        assert received, info
        assert {qos for _, qos in received} == {1}, received


# -- states follow the hub -----------------------------------------------------------------------------------


async def test_motion_and_an_event_reach_home_assistant(ha: HAClient, hub: HubProcess, api: httpx.AsyncClient
                                                        ) -> None:
    ids = await ha.until(lambda: hub_devices_in_ha(ha, hub), "the hub's devices")
    front = await entity_ids(ha, ids["front"])
    alarm = (await entity_ids(ha, ids["hub"]))["alarm"]
    await arm_from_the_hub(ha, hub, api, alarm, True)
    # The file's moving block: motion on, then off; the event recorded meanwhile ends and fires HA's event
    # entity with its type, sets Last event, and brings the snapshot.
    mark = ha.mark()
    await ha.wait_state(front["motion"], "on", after=mark, timeout=60)
    await ha.wait_state(front["motion"], "off", after=mark, timeout=60)
    fired = await ha.wait_state(front["event"], after=mark, timeout=60)
    assert fired["attributes"]["event_type"] == "motion", fired
    assert fired["attributes"]["clip_url"].startswith("https://127.0.0.1:"), fired
    await ha.wait_state(front["last_event"], after=mark, timeout=60)
    await ha.wait_state(front["snapshot"], after=mark, timeout=60)
    jpeg = await ha.get_bytes(f"/api/image_proxy/{front['snapshot']}")  # the picture, as HA serves it
    assert jpeg[:2] == b"\xff\xd8" and jpeg[-2:] == b"\xff\xd9", jpeg[:16]


async def test_the_alarm_follows_the_hub_and_home_assistant_commands_it(
        ha: HAClient, hub: HubProcess, api: httpx.AsyncClient, mosquitto: Mosquitto) -> None:
    ids = await ha.until(lambda: hub_devices_in_ha(ha, hub), "the hub's devices")
    alarm = (await entity_ids(ha, ids["hub"]))["alarm"]
    commands = CommandWatch(mosquitto, f"{PREFIX}/armed/set")
    await asyncio.to_thread(commands.start)
    try:
        # The hub's own arm state (web UI here) reaches HA.
        await arm_from_the_hub(ha, hub, api, alarm, False)
        await arm_from_the_hub(ha, hub, api, alarm, True)

        # HA disarms with a wrong code: the hub refuses, stays armed, and logs it without the code.
        start = len(hub.lines)
        await ha.post("/api/services/alarm_control_panel/alarm_disarm", {"entity_id": alarm, "code": "1234"})
        await asyncio.to_thread(hub.wait_for_log, "ignored a command", 30.0, start)
        assert (await api.get("/api/ui/arm", headers=admin(hub))).json()["armed"] is True
        assert (await ha.state(alarm) or {})["state"] == "armed_away"

        # With the code: the hub is disarmed, HA shows it, and the hub's log says who did it.
        mark, start = ha.mark(), len(hub.lines)
        await ha.post("/api/services/alarm_control_panel/alarm_disarm", {"entity_id": alarm, "code": DISARM_CODE})
        await ha.wait_state(alarm, "disarmed", after=mark)
        assert (await api.get("/api/ui/arm", headers=admin(hub))).json()["armed"] is False
        line = await asyncio.to_thread(hub.wait_for_log, "mqtt command: DISARM -> hub disarmed", 30.0, start)
        assert DISARM_CODE not in "\n".join(hub.lines), "the disarm code reached the hub's log"
        assert json.loads(line)["topic"] == f"{PREFIX}/armed/set"

        # Arm away from HA: no code needed.
        mark, start = ha.mark(), len(hub.lines)
        await ha.post("/api/services/alarm_control_panel/alarm_arm_away", {"entity_id": alarm})
        await ha.wait_state(alarm, "armed_away", after=mark)
        assert (await api.get("/api/ui/arm", headers=admin(hub))).json()["armed"] is True
        await asyncio.to_thread(hub.wait_for_log, "mqtt command: ARM_AWAY -> hub armed_away", 30.0, start)

        # HA sent every command at QoS 1 (component qos; the broker hands a QoS 1 subscriber what was sent).
        got = await asyncio.to_thread(commands.wait_for, 3)
        assert [qos for _, qos in got] == [1, 1, 1], got
        assert json.loads(got[1][0]) == {"action": "DISARM", "code": DISARM_CODE}
    finally:
        await asyncio.to_thread(commands.stop)


class CommandWatch:
    """A plain MQTT client subscribed at QoS 1 to a command topic: what HA sent, with the QoS it sent it at."""

    def __init__(self, broker: Mosquitto, topic: str) -> None:
        import threading

        self.broker, self.topic = broker, topic
        self.got: list[tuple[str, int]] = []
        self._cond = threading.Condition()

    def start(self) -> None:
        import threading

        subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"watch-{uuid.uuid4().hex[:6]}")
        self.client.on_connect = lambda c, *a: c.subscribe(self.topic, qos=1)
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(self.broker.host, self.broker.port)
        self.client.loop_start()
        if not subscribed.wait(10):
            raise AssertionError("the command watcher could not subscribe")

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._cond:
            self.got.append((msg.payload.decode(), msg.qos))
            self._cond.notify_all()

    def wait_for(self, n: int, timeout: float = 30.0) -> list[tuple[str, int]]:
        with self._cond:
            self._cond.wait_for(lambda: len(self.got) >= n, timeout)
            return list(self.got)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# -- cameras change ------------------------------------------------------------------------------------------


async def test_a_rename_reaches_home_assistant_without_a_reconnect(ha: HAClient, hub: HubProcess,
                                                                  api: httpx.AsyncClient) -> None:
    ids = await ha.until(lambda: hub_devices_in_ha(ha, hub), "the hub's devices")
    before = await entity_ids(ha, ids["front"])
    connects, births = len(hub_log(hub, "mqtt connected")), len(hub_log(hub, "home assistant came online"))
    r = await api.patch("/api/ui/cameras/front", json={"name": "Porch"}, headers=admin(hub))
    assert r.status_code == 200, r.text

    async def renamed() -> bool:
        devs = {dev["id"]: dev for dev in await ha.ws("config/device_registry/list")}
        return devs[ids["front"]]["name"] == "Porch"

    await ha.until(renamed, "the camera's device renamed to Porch")
    assert await entity_ids(ha, ids["front"]) == before  # same entities: renamed, not re-created
    assert len(hub_log(hub, "mqtt connected")) == connects == 1  # no reconnect of the hub's bridge ...
    assert len(hub_log(hub, "home assistant came online")) == births  # ... and no HA restart carried it


async def test_the_snapshot_image_does_not_change_when_home_assistant_reconnects(
        ha: HAClient, hub: HubProcess, api: httpx.AsyncClient, home_assistant: HomeAssistant) -> None:
    """HA's image entity changes state with every message on its topic: the hub re-sending the last picture when
    HA comes back made automations on "new snapshot" fire with no new snapshot."""
    ids = await ha.until(lambda: hub_devices_in_ha(ha, hub), "the hub's devices")
    front = await entity_ids(ha, ids["front"])
    alarm = (await entity_ids(ha, ids["hub"]))["alarm"]
    mark = ha.mark()
    await ha.post("/api/services/button/press", {"entity_id": front["take_snapshot"]})  # a new picture: it changes
    shown = await ha.wait_state(front["snapshot"], after=mark)
    # Motion makes events (and so pictures) on its own: disarm so that none is recorded from here on, and let
    # one in progress end (its picture reaches HA before the marker that follows it).
    await arm_from_the_hub(ha, hub, api, alarm, False)
    await ha.until(lambda: _no_event_running(api, hub), "no event in progress")
    await settled(ha, hub, api, front["armed"])
    shown = await ha.state(front["snapshot"]) or shown

    # HA's MQTT client reconnects (the entry reloaded, as after a broker restart): it sends its birth, the hub
    # publishes discovery and every state again.
    mark, start = ha.mark(), len(hub.lines)
    await ha.post(f"/api/config/config_entries/entry/{home_assistant.mqtt_entry_id}/reload")
    await asyncio.to_thread(hub.wait_for_log, "home assistant came online", 60.0, start)
    await settled(ha, hub, api, front["armed"])
    pictures = [ch["new_state"]["state"] for ch in ha.changes[mark:] if ch["entity_id"] == front["snapshot"]
                and ch.get("new_state") and ch["new_state"]["state"] not in ("unavailable", "unknown")]
    assert not [p for p in pictures if p != shown["state"]], (shown["state"], pictures)


async def settled(ha: HAClient, hub: HubProcess, api: httpx.AsyncClient, switch: str) -> None:
    """A change made after everything the hub published so far, through the same MQTT connection (the front
    camera's Armed switch off and on again): once HA shows it, HA has handled all that came before."""
    for armed, state in ((False, "off"), (True, "on")):
        mark = ha.mark()
        r = await api.post("/api/ui/cameras/front/arm", json={"armed": armed}, headers=admin(hub))
        assert r.status_code == 200, r.text
        await ha.wait_state(switch, state, after=mark)


async def _no_event_running(api: httpx.AsyncClient, hub: HubProcess) -> bool:
    r = await api.get("/api/ui/events", headers=admin(hub))
    r.raise_for_status()
    body = r.json()
    return not [e for e in body.get("events", []) if e.get("end") is None]


async def test_a_removed_camera_leaves_home_assistant(ha: HAClient, hub: HubProcess, api: httpx.AsyncClient
                                                      ) -> None:
    ids = await ha.until(lambda: hub_devices_in_ha(ha, hub), "the hub's devices")
    yard = await entity_ids(ha, ids["yard"])
    r = await api.delete("/api/admin/cameras/yard", headers=admin(hub))
    assert r.status_code == 200, r.text

    async def gone() -> bool:
        return "yard" not in await device_ids(ha, hub)

    await ha.until(gone, "the removed camera's device gone from HA")
    registry = {ent["entity_id"] for ent in await ha.ws("config/entity_registry/list")}
    assert not set(yard.values()) & registry, "entities of the removed camera are still registered"
    assert {"hub", "front"} <= (await device_ids(ha, hub)).keys()
    for entity_id in yard.values():
        assert await ha.state(entity_id) is None, entity_id


async def test_home_assistant_takes_the_detection_stream_sensor(ha: HAClient, mosquitto: Mosquitto,
                                                                tmp_path: Path) -> None:
    """The Detection stream problem sensor, announced on a camera's first ``camera.detect`` report, as HA makes
    it: an in-process hub (store, bus, controller, bridge; its RTSP source is not what is under test here)
    publishing to HA's discovery prefix."""
    from tests.test_mqtt import make_bridge, make_hub

    inproc, control = make_hub(tmp_path, mosquitto.port, discovery_prefix="homeassistant")
    bridge = make_bridge(inproc, control, hub_id=f"detect{uuid.uuid4().hex[:6]}")
    await bridge.start()
    ident = f"pingwatch_{bridge.hub_id}_front"  # online: its pipeline has frames
    try:
        async def camera_device() -> str | None:
            dev = (await devices(ha)).get(ident)
            return dev["id"] if dev else None

        dev_id = await ha.until(camera_device, "the in-process hub's front camera")
        assert "detect_stream" not in await entities(ha, dev_id)
        mark = ha.mark()
        inproc.bus.publish("camera.detect", camera_id="front", state="down", reason="sub-stream: connection refused")

        async def sensor() -> dict[str, Any] | None:
            return (await entities(ha, dev_id)).get("detect_stream")

        entity_id = (await ha.until(sensor, "the Detection stream entity"))["entity_id"]
        entry = await ha.ws("config/entity_registry/get", entity_id=entity_id)
        assert (entry["original_name"], entry["original_device_class"], entry["entity_category"]) == \
            ("Detection stream", "problem", "diagnostic"), entry
        await ha.wait_state(entity_id, "on", after=mark)  # down: a problem
        mark = ha.mark()
        inproc.bus.publish("camera.detect", camera_id="front", state="ok", reason="")
        await ha.wait_state(entity_id, "off", after=mark)
    finally:
        # Leave nothing of it on the shared broker or in HA: its cameras removed, its hub device emptied.
        for cid in ("front", "yard"):
            await inproc.cameras.remove(cid)
        bridge._publish(bridge.topics.hub_config_topic(bridge.hub_id), b"", retain=True, force=True)
        await bridge.stop()
        inproc.store.close()


# -- availability (last: it stops the hub) ---------------------------------------------------------------------


async def test_everything_is_unavailable_when_the_hub_stops(ha: HAClient, hub: HubProcess) -> None:
    ids = await ha.until(lambda: device_ids(ha, hub), "the hub's devices")
    alarm = (await entity_ids(ha, ids["hub"]))["alarm"]
    front = await entity_ids(ha, ids["front"])
    assert (await ha.state(front["motion"]) or {}).get("state") in ("on", "off")
    mark = ha.mark()
    assert await asyncio.to_thread(hub.stop) == 0
    await ha.wait_state(alarm, "unavailable", after=mark)
    for key in ("motion", "sound", "armed", "snapshot"):
        await ha.until(lambda e=front[key]: _is_unavailable(ha, e), f"{front[key]} unavailable")


async def _is_unavailable(ha: HAClient, entity_id: str) -> bool:
    return ((await ha.state(entity_id)) or {}).get("state") == "unavailable"
