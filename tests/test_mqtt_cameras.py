"""Cameras as Home Assistant sees them (issue 14, Home Assistant items 2-4), against a real Mosquitto and the real
hub (store, bus, arm state, controller, camera manager; a real file camera where one runs).

- a rename reaches HA at once; a settings change that keeps the name sends nothing;
- a removed camera stops (its source too: it used to keep recording and publishing), HA loses its device, the
  broker forgets its retained topics, and late messages for it publish nothing;
- the battery sensor only for cameras that have one; the snapshot image is not sent again when HA comes back;
- every accepted command is logged.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import av
import numpy as np
import pytest

from hub.app import build_hub
from hub.config import HubConfig
from mqtt import discovery as d
from tests.harness.ports import HOST, free_port
from tests.test_mqtt import (
    JPEG,
    TIMEOUT,
    OwnBroker,
    Setup,
    fake_ha,
    make_bridge,
    make_hub,
    not_retained,
    retained,
    setup,  # noqa: F401 - the fixture, shared with tests/test_mqtt.py
)


@pytest.fixture(scope="module")
def h264_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two seconds of H.264 in MP4 (a light moving over a dark wall), as a file or IP camera would send."""
    path = tmp_path_factory.mktemp("media") / "cam.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=15)
        stream.width, stream.height, stream.pix_fmt = 320, 180, "yuv420p"
        stream.options = {"profile": "baseline", "bf": "0", "g": "15"}
        for i in range(30):
            img = np.full((180, 320), 30, np.uint8)
            img[60:120, 10 * i:10 * i + 40] = 220
            frame = av.VideoFrame.from_ndarray(img, format="gray").reformat(format="yuv420p")
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return path


async def cleared_within(host: str, port: int, topics: d.Topics, *unwanted: str) -> None:
    """Poll, under a deadline, until the broker holds nothing retained on ``unwanted``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT
    while not await not_retained(host, port, topics, *unwanted):
        assert loop.time() < deadline, f"still retained after {TIMEOUT}s: {unwanted}"


def config_of(s: Setup, cid: str) -> str:
    return s.topics.camera_config_topic("testhub", cid)


async def marker(s: Setup) -> int:
    """Send a motion change for 'front' through the bus and wait until HA has it: the bridge handles bus messages
    in order and HA receives one publisher's messages in order, so everything published before has arrived."""
    mark = s.ha.mark()
    active = s.ha.latest(s.front.motion) != d.ON.encode()
    s.hub.bus.publish("motion", camera_id="front", active=active, score=0.3)
    await s.ha.wait(s.front.motion, d.on_off(active), after=mark)
    return mark


# -- item 2: renames -----------------------------------------------------------------------------------------


async def test_a_rename_reaches_home_assistant_at_once(setup: Setup) -> None:  # noqa: F811
    s = setup
    first = json.loads((await s.ha.wait(config_of(s, "front"))).payload)
    assert first["dev"]["name"] == "Front door"
    mark = s.ha.mark()
    # What the web UI's PATCH /api/ui/cameras/{id} (and `pingwatch cameras rename`) does.
    s.hub.store.update_camera("front", name="Porch")
    s.hub.bus.publish("camera.settings", camera_id="front", name="Porch", settings={})
    renamed = json.loads((await s.ha.wait(config_of(s, "front"), after=mark)).payload)
    assert renamed["dev"]["name"] == "Porch"
    assert renamed["cmps"] == first["cmps"]  # same entities, same unique ids: HA renames, it does not re-create
    held = await retained(s.ha.host, s.ha.port, s.topics, config_of(s, "front"))
    assert json.loads(held[config_of(s, "front")])["dev"]["name"] == "Porch"  # a restarting HA sees the new name

    # A settings change that leaves the name (and so the payload) alone sends no discovery again.
    mark = s.ha.mark()
    s.hub.bus.publish("camera.settings", camera_id="front", name="Porch", settings={"pre_roll_s": 3})
    await marker(s)
    assert not [m for m in s.ha.messages[mark:] if m.topic.endswith("/config")]


# -- item 3: removal -----------------------------------------------------------------------------------------


async def test_a_removed_camera_is_cleared_and_silent(setup: Setup) -> None:  # noqa: F811
    s = setup
    yard = s.yard
    await s.ha.wait(config_of(s, "yard"))
    await s.ha.wait(yard.armed_state, "ON")
    s.hub.bus.publish("event.started", event_id="ev-y", camera_id="yard", start=1_700_000_000.0)
    await s.ha.wait(yard.last_event)
    # What a previous run (or an older version) may have left retained: a picture and a battery level.
    await s.ha.publish(yard.image, JPEG, retain=True)
    await s.ha.publish(yard.battery, "12", retain=True)
    await s.ha.wait(yard.battery, "12")

    mark = s.ha.mark()
    assert await s.hub.cameras.remove("yard")  # the real removal path (web UI, `pingwatch cameras remove`)
    await s.ha.wait(config_of(s, "yard"), b"", after=mark)  # HA deletes the device
    for topic in yard.retained_topics():
        await s.ha.wait(topic, b"", after=mark)
    cleared = s.ha.mark()
    assert await not_retained(s.ha.host, s.ha.port, s.topics, config_of(s, "yard"), *yard.retained_topics())

    # Late messages for it (frames in flight when it was removed) publish nothing; nor does HA's next birth.
    s.hub.bus.publish("camera.online", camera_id="yard")
    s.hub.bus.publish("motion", camera_id="yard", active=True, score=0.9)
    s.hub.bus.publish("camera.status", camera_id="yard", battery=0.5)
    (s.tmp / "late.jpg").write_bytes(JPEG)
    s.hub.bus.publish("event.ended", event={"id": "ev-late", "camera_id": "yard", "start": 1_700_000_100.0,
                                            "triggers": ["motion"], "snapshot_path": str(s.tmp / "late.jpg")})
    await s.ha.publish(s.topics.ha_status, "online")
    await s.ha.wait(config_of(s, "front"), after=cleared)
    await marker(s)
    yard_topics = {config_of(s, "yard"), *yard.state_topics()}
    assert not [m.topic for m in s.ha.messages[cleared:] if m.topic in yard_topics], "published for a removed camera"
    assert await not_retained(s.ha.host, s.ha.port, s.topics, config_of(s, "yard"), *yard.retained_topics())


async def test_a_camera_removed_while_the_broker_is_away_is_cleared_on_reconnect(tmp_path) -> None:
    broker = OwnBroker(free_port(), persistence=True)  # retained messages survive its restart
    await asyncio.to_thread(broker.start)
    hub, control = make_hub(tmp_path, broker.port)
    bridge = make_bridge(hub, control)
    t = bridge.topics
    yard_config = t.camera_config_topic("testhub", "yard")
    try:
        ha = await fake_ha(HOST, broker.port, t).start()
        await bridge.start()
        control_topic = f"{t.prefix}/test/kept"
        try:
            await ha.wait(yard_config)
            await ha.wait(t.status, "online")
            await ha.publish(control_topic, "kept", retain=True)
        finally:
            await ha.stop()
        await asyncio.to_thread(broker.stop)
        await asyncio.wait_for(bridge.disconnected.wait(), TIMEOUT)
        assert await hub.cameras.remove("yard")  # nothing can go out now: the clearing waits for the broker
        await asyncio.to_thread(broker.start)
        # The broker kept its retained messages over the restart (so the yard's device too, unless cleared).
        assert (await retained(HOST, broker.port, t, control_topic))[control_topic] == b"kept"
        await asyncio.wait_for(bridge.connected.wait(), TIMEOUT)  # set after the clearing went out ...
        # ... from the bridge's client: the broker may not have handled it when another client subscribes.
        await cleared_within(HOST, broker.port, t, yard_config, *t.camera("yard").retained_topics())
    finally:
        await bridge.stop()
        broker.stop()
        hub.store.close()


async def test_removing_a_file_camera_stops_it(mosquitto, h264_file, tmp_path) -> None:
    """A file (or RTSP, or demo) camera kept its source running after removal: it went on detecting, recording
    and publishing. Its source must be stopped by the time removal returns."""
    cfg = HubConfig(storage={"data_dir": str(tmp_path / "data")},
                    cameras=[{"id": "filecam", "name": "File cam", "source": str(h264_file), "loop": True}],
                    mqtt={"enabled": True, "host": HOST, "port": mosquitto.port, "topic_prefix": "pw-filecam",
                          "discovery_prefix": "ha-filecam"})
    hub = build_hub(cfg)
    bridge = make_bridge(hub, hub.control)
    t = bridge.topics
    ha = await fake_ha(mosquitto.host, mosquitto.port, t).start()
    await bridge.start()
    await hub.cameras.start()
    try:
        await ha.wait(t.camera("filecam").status, "online")  # its first frames arrived: it runs
        source = hub.cameras.sources["filecam"]
        task = next(x for x in asyncio.all_tasks() if x.get_name() == "source-filecam")
        mark = ha.mark()
        assert await hub.cameras.remove("filecam")
        assert task.done(), "the source's task still runs"
        assert not [th for th in source._threads if th.is_alive()], "the source's threads still read the file"
        assert "filecam" not in hub.cameras.sources and "filecam" not in hub.cameras.pipelines
        await ha.wait(t.camera_config_topic("testhub", "filecam"), b"", after=mark)
        assert await not_retained(HOST, mosquitto.port, t, t.camera_config_topic("testhub", "filecam"),
                                  *t.camera("filecam").retained_topics())
    finally:
        await hub.cameras.stop()
        await bridge.stop()
        await ha.stop()
        hub.store.close()


async def test_a_revoked_file_camera_stays_stopped_after_a_restart(h264_file, tmp_path) -> None:
    cfg = HubConfig(storage={"data_dir": str(tmp_path / "data")},
                    cameras=[{"id": "filecam", "source": str(h264_file)}])
    hub = build_hub(cfg)
    hub.store.ensure_static_camera("filecam", "filecam", "file")
    hub.store.revoke_camera("filecam")  # `pingwatch cameras revoke filecam` in an earlier run
    await hub.cameras.start()
    try:
        assert "filecam" not in hub.cameras.sources and "filecam" not in hub.cameras.pipelines
    finally:
        await hub.cameras.stop()
        hub.store.close()


# -- item 4: battery, image, command log ------------------------------------------------------------------------


async def test_battery_sensor_only_for_cameras_that_have_one(setup: Setup) -> None:  # noqa: F811
    s = setup
    front = json.loads((await s.ha.wait(config_of(s, "front"))).payload)
    yard = json.loads((await s.ha.wait(config_of(s, "yard"))).payload)
    assert "battery" in front["cmps"]  # it reported a level
    assert "battery" not in yard["cmps"]  # RTSP: it never will; a sensor would read "unknown" for ever

    # A phone announces one as soon as it is paired, before its first report.
    s.hub.store.ensure_static_camera("phone1", "Kitchen phone", "phone")
    mark = s.ha.mark()
    s.hub.bus.publish("camera.added", camera_id="phone1", name="Kitchen phone")
    phone = json.loads((await s.ha.wait(config_of(s, "phone1"), after=mark)).payload)
    assert phone["cmps"]["battery"]["state_topic"] == s.topics.camera("phone1").battery

    # A camera that does report a level after all gets the sensor then, announced before its state.
    mark = s.ha.mark()
    s.hub.store.update_camera("yard", battery=0.4)
    s.hub.bus.publish("camera.status", camera_id="yard", battery=0.4)
    await s.ha.wait(s.yard.battery, "40", after=mark)
    order = [m.topic for m in s.ha.messages[mark:] if m.topic in (config_of(s, "yard"), s.yard.battery)]
    assert order[:2] == [config_of(s, "yard"), s.yard.battery], order
    assert "battery" in json.loads(s.ha.latest(config_of(s, "yard")) or b"{}")["cmps"]


async def test_the_snapshot_is_not_sent_again_when_home_assistant_comes_back(setup: Setup) -> None:  # noqa: F811
    """HA's image entity changes state with every message on its topic: re-sending the last picture at each HA
    birth (or bridge reconnect) fired automations on "new snapshot" with no new snapshot."""
    s = setup
    (s.tmp / "ev.jpg").write_bytes(JPEG)
    mark = s.ha.mark()
    s.hub.bus.publish("event.ended", event={"id": "ev-1", "camera_id": "front", "start": 1_700_000_000.0,
                                            "triggers": ["motion"], "snapshot_path": str(s.tmp / "ev.jpg")})
    assert (await s.ha.wait(s.front.image, after=mark)).payload == JPEG
    mark = s.ha.mark()
    await s.ha.publish(s.topics.ha_status, "online")  # HA restarted
    await s.ha.wait(config_of(s, "front"), after=mark)  # discovery and states go out again ...
    await s.ha.wait(s.front.last_event, after=mark)
    await marker(s)
    assert not [m for m in s.ha.messages[mark:] if m.topic == s.front.image]  # ... the picture does not
    assert await not_retained(s.ha.host, s.ha.port, s.topics, s.front.image)


async def test_accepted_commands_are_logged(setup: Setup, caplog: pytest.LogCaptureFixture) -> None:  # noqa: F811
    caplog.set_level(logging.INFO, logger="mqtt.bridge")
    s = setup
    t = s.topics
    await s.ha.wait(t.armed_state, "armed_away")
    mark = s.ha.mark()
    await s.ha.publish(t.armed_command, "ARM_NIGHT")  # refused: logged as ignored, not as accepted
    await s.ha.publish(t.armed_command, "DISARM")
    await s.ha.publish(s.yard.armed_command, "OFF")
    await s.ha.publish(s.front.snapshot_command, "PRESS")
    await s.ha.wait(t.armed_state, "disarmed", after=mark)  # commands are handled in order: ARM_NIGHT was too
    await s.ha.wait(s.yard.armed_state, "OFF", after=mark)
    await s.ha.wait(s.front.image, after=mark)
    assert s.bridge.commands_ignored == 1

    accepted = [r for r in caplog.records if r.levelno == logging.INFO and r.getMessage().startswith("mqtt command:")]
    got = [(r.topic, r.command, r.outcome) for r in accepted]  # type: ignore[attr-defined]
    assert got == [(t.armed_command, "DISARM", "hub disarmed"),
                   (s.yard.armed_command, "OFF", "camera yard armed switch OFF"),
                   (s.front.snapshot_command, "PRESS", "taking a snapshot")], got
    assert "hub disarmed" in accepted[0].getMessage()  # readable in the text log too, not only in the JSON fields
    assert [r for r in caplog.records if r.getMessage() == "mqtt: snapshot published"]
    assert not [r for r in accepted if "ARM_NIGHT" in r.getMessage()]



# -- the detect stream (issue 14, RTSP item 1: a camera whose detect stream is down is reported to HA) -------------


async def test_detection_stream_sensor_is_announced_on_the_first_report(setup: Setup) -> None:  # noqa: F811
    s = setup
    yard = json.loads((await s.ha.wait(config_of(s, "yard"))).payload)
    assert "detect_stream" not in yard["cmps"]  # nothing says yet that it has a detect stream of its own

    mark = s.ha.mark()
    s.hub.bus.publish("camera.detect", camera_id="yard", state="down", reason="sub-stream: connection refused")
    await s.ha.wait(s.yard.detect, d.ON, after=mark)
    order = [m.topic for m in s.ha.messages[mark:] if m.topic in (config_of(s, "yard"), s.yard.detect)]
    assert order[:2] == [config_of(s, "yard"), s.yard.detect], order  # the entity exists before its state
    sensor = json.loads(s.ha.latest(config_of(s, "yard")) or b"{}")["cmps"]["detect_stream"]
    assert sensor == {"p": "binary_sensor", "unique_id": "pingwatch_testhub_yard_detect_stream",
                      "name": "Detection stream", "device_class": "problem", "entity_category": "diagnostic",
                      "state_topic": s.yard.detect, "payload_on": "ON", "payload_off": "OFF", "qos": 1}
    assert "detect_stream" not in json.loads(s.ha.latest(config_of(s, "front")) or b"{}")["cmps"]

    # Back up: only the state changes; an unknown state publishes nothing.
    mark = s.ha.mark()
    s.hub.bus.publish("camera.detect", camera_id="yard", state="ok", reason="")
    await s.ha.wait(s.yard.detect, d.OFF, after=mark)
    s.hub.bus.publish("camera.detect", camera_id="yard", state="sideways", reason="")
    await marker(s)
    assert [m.topic for m in s.ha.messages[mark:] if m.topic in (config_of(s, "yard"), s.yard.detect)] \
        == [s.yard.detect]

    # HA restarts: the sensor is announced again with its state, retained for a late subscriber.
    mark = s.ha.mark()
    await s.ha.publish(s.topics.ha_status, "online")
    again = json.loads((await s.ha.wait(config_of(s, "yard"), after=mark)).payload)
    assert "detect_stream" in again["cmps"]
    await s.ha.wait(s.yard.detect, d.OFF, after=mark)
    assert (await retained(s.ha.host, s.ha.port, s.topics, s.yard.detect))[s.yard.detect] == b"OFF"

    # Removed: the sensor's retained state goes with the camera.
    mark = s.ha.mark()
    assert await s.hub.cameras.remove("yard")
    await s.ha.wait(s.yard.detect, b"", after=mark)
    assert await not_retained(s.ha.host, s.ha.port, s.topics, s.yard.detect)


async def test_detection_stream_sensor_from_the_controller_at_connect(mosquitto, tmp_path) -> None:
    """After a hub restart the bridge knows of no report yet: the controller's ``detect`` (``ok``/``down`` for a
    camera with a sub-stream of its own) announces the sensor with the first discovery, with its state."""

    hub, control = make_hub(tmp_path, mosquitto.port)
    hub.cameras.pipeline("yard").expect_detect_stream()  # what the camera manager does for an RTSP sub-stream
    bridge = make_bridge(hub, control)
    t = bridge.topics
    ha = await fake_ha(mosquitto.host, mosquitto.port, t).start()
    await bridge.start()
    try:
        yard = json.loads((await ha.wait(t.camera_config_topic("testhub", "yard"))).payload)
        assert yard["cmps"]["detect_stream"]["device_class"] == "problem"
        await ha.wait(t.camera("yard").detect, d.ON)
        front = json.loads((await ha.wait(t.camera_config_topic("testhub", "front"))).payload)
        assert "detect_stream" not in front["cmps"]
    finally:
        await bridge.stop()
        await ha.stop()
        hub.store.close()
