"""The MQTT bridge: ping-watch's bus → Home Assistant states, HA commands → the hub's controller.

paho-mqtt 2.x runs its network loop in its own thread (``loop_start``); its callbacks only hand work to the asyncio
loop with ``call_soon_threadsafe``, so everything that touches the hub (the controller, the SQLite store) runs on
the hub's loop.

Connection life: ``connect_async`` + ``loop_start`` keeps retrying with paho's backoff
(``reconnect_delay_set``) when the broker is down at start or goes away; the hub never waits for the broker. On
every (re)connect the bridge subscribes again (in ``on_connect``), publishes discovery, republishes every state it
holds (read afresh from the controller for arm states and cameras), then the retained birth message ``online``.
The last will is a retained ``offline`` on the same topic; ``stop()`` publishes it itself before disconnecting.

Incoming payloads are untrusted: anything malformed is logged and ignored.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import ssl
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from hub.bus import Bus, Message, Subscription
from hub.config import MqttConfig
from hub.control_api import ControlLike
from hub.errors import HubError
from mqtt import discovery as d

log = logging.getLogger(__name__)

BUS_TOPICS = ("camera.", "motion", "sound", "event.", "armed", "upload.state")
MAX_SNAPSHOT_BYTES = 8 * 1024 * 1024  # Mosquitto's default message limit is far above; HA needs no more




class MqttBridge:
    def __init__(
        self,
        config: MqttConfig,
        bus: Bus,
        control: ControlLike,
        hub_id: str,
        base_url: str,
        *,
        client_id: str | None = None,
        reconnect_min_s: float = 1.0,
        reconnect_max_s: float = 60.0,
        keepalive_s: int = 30,
        uploads_pending: Callable[[], int] | None = None,
    ) -> None:
        self.config = config
        # The hub's upload outbox length (a diagnostic sensor); None: the hub has no uploader, no sensor.
        self.uploads_pending = uploads_pending
        self.bus = bus
        self.control = control
        self.hub_id = hub_id
        self.base_url = base_url
        self.topics = d.Topics(config.topic_prefix.strip("/") or "pingwatch", config.discovery_prefix.strip("/")
                               or "homeassistant")
        self.client_id = client_id or f"pingwatch-{d.slug(hub_id)}-{uuid.uuid4().hex[:6]}"
        self.reconnect_min_s = reconnect_min_s
        self.reconnect_max_s = reconnect_max_s
        self.keepalive_s = keepalive_s

        self.connected = asyncio.Event()  # set while connected (after discovery and states went out)
        self.disconnected = asyncio.Event()  # set while not connected
        self.disconnected.set()
        self.connect_failed = asyncio.Event()  # set at each failed attempt (for tests and health)
        self.connect_failures = 0
        self.connections = 0
        self.commands_ignored = 0

        self._client: mqtt.Client | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sub: Subscription | None = None
        self._task: asyncio.Task[None] | None = None
        self._state: dict[str, tuple[bytes | str, bool]] = {}  # topic -> (payload, retain): what we republish
        self._cameras: dict[str, str] = {}  # camera id -> topic slug, of cameras with published discovery
        self._slugs: dict[str, str] = {}  # topic slug -> camera id (for commands)
        self._snapshot_tasks: set[asyncio.Task[None]] = set()
        self._stopping = False

    # -- lifecycle -------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start connecting in the background; returns at once whether or not the broker is up."""
        self._loop = asyncio.get_running_loop()
        self._stopping = False
        self._sub = self.bus.subscribe(*BUS_TOPICS, maxsize=1024)
        self._client = self._make_client()
        self._client.connect_async(self.config.host, self.config.port, keepalive=self.keepalive_s)
        self._client.loop_start()
        self._task = asyncio.create_task(self._consume(), name="mqtt-bridge")
        log.info("mqtt bridge started", extra={"host": self.config.host, "port": self.config.port,
                                               "topic_prefix": self.topics.prefix})

    async def stop(self) -> None:
        """Publish what the bus still holds (events that ended during the hub's shutdown), say offline, leave."""
        self._stopping = True
        if self._sub is not None:
            self._sub.close()
            while not self._sub.queue.empty():
                msg = self._sub.queue.get_nowait()
                try:
                    self._on_bus(msg)
                except Exception:
                    log.exception("mqtt: could not handle a bus message", extra={"topic": msg.topic})
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        for task in list(self._snapshot_tasks):
            task.cancel()
        await asyncio.gather(*self._snapshot_tasks, return_exceptions=True)
        client, self._client = self._client, None
        if client is None:
            return
        was_connected = client.is_connected()
        await asyncio.to_thread(self._shutdown_client, client, self.topics.status if was_connected else None)
        self.connected.clear()
        self.disconnected.set()
        log.info("mqtt bridge stopped")

    @staticmethod
    def _shutdown_client(client: mqtt.Client, status_topic: str | None) -> None:
        if status_topic is not None:  # a clean disconnect sends no will: say offline ourselves
            try:
                info = client.publish(status_topic, d.OFFLINE, qos=1, retain=True)
                info.wait_for_publish(timeout=2.0)
            except (RuntimeError, ValueError, OSError):
                pass
        client.disconnect()
        client.loop_stop()

    def _make_client(self) -> mqtt.Client:
        cfg = self.config
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id, clean_session=True)
        client.will_set(self.topics.status, d.OFFLINE, qos=1, retain=True)
        if cfg.username:
            client.username_pw_set(cfg.username, cfg.password)
        if cfg.tls or cfg.ca_file:
            ctx = ssl.create_default_context(cafile=str(cfg.ca_file) if cfg.ca_file else None)
            client.tls_set_context(ctx)
        client.reconnect_delay_set(min_delay=self.reconnect_min_s, max_delay=self.reconnect_max_s)  # type: ignore[arg-type]
        client.max_queued_messages_set(1000)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    # -- paho callbacks (paho's thread: hand over to the loop, touch nothing else) ----------------------

    def _call(self, fn: Callable[..., Any], *args: Any) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(fn, *args)
            except RuntimeError:  # loop closed meanwhile
                pass

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            self._call(self._connect_refused, str(reason_code))
            return
        # Subscribing here means a reconnect (clean session) subscribes again.
        client.subscribe([(t, 1) for t in self.topics.command_subscriptions()])
        self._call(self._connected)

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        self._call(self._connect_refused, "unreachable")

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        self._call(self._disconnected, str(reason_code))

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self._call(self._handle_message, msg.topic, bytes(msg.payload), bool(msg.retain))

    # -- connection state (on the loop) ----------------------------------------------------------------

    def _connect_refused(self, why: str) -> None:
        self.connect_failures += 1
        self.connect_failed.set()
        if self.connect_failures in (1, 10) or self.connect_failures % 100 == 0:
            log.warning("mqtt broker not reachable; retrying in the background",
                        extra={"host": self.config.host, "port": self.config.port, "reason": why,
                               "failures": self.connect_failures})

    def _disconnected(self, why: str) -> None:
        if self.connected.is_set() and not self._stopping:
            log.warning("mqtt disconnected; reconnecting", extra={"reason": why})
        self.connected.clear()
        self.disconnected.set()

    def _connected(self) -> None:
        if self._client is None:
            return
        self.connections += 1
        log.info("mqtt connected", extra={"host": self.config.host, "port": self.config.port,
                                          "reconnect": self.connections > 1})
        try:
            self._refresh_from_control()
        except Exception:
            log.exception("mqtt: could not read the hub's state")
        self.publish_discovery()
        self._republish_states()
        self._publish(self.topics.status, d.ONLINE, retain=True, force=True)
        self.disconnected.clear()
        self.connected.set()

    # -- publishing ------------------------------------------------------------------------------------

    def _publish(self, topic: str, payload: bytes | str, *, retain: bool, force: bool = False) -> None:
        client = self._client
        if client is None or not (force or self.connected.is_set()) or not client.is_connected():
            return  # re-sent from self._state on the next connect
        info = client.publish(topic, payload, qos=1, retain=retain)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            log.warning("mqtt publish failed", extra={"topic": topic, "rc": info.rc})

    def _set_state(self, topic: str, payload: bytes | str | None, *, retain: bool = True, force: bool = False) -> None:
        """Remember and publish a state; unchanged states are not re-sent unless ``force``."""
        if payload is None:
            return
        old = self._state.get(topic)
        if retain:
            self._state[topic] = (payload, retain)
        if old is not None and old[0] == payload and not force:
            return
        self._publish(topic, payload, retain=retain)

    def publish_discovery(self) -> None:
        """Publish (retained) the hub's and every camera's discovery payload."""
        self._publish(self.topics.hub_config_topic(self.hub_id),
                      json.dumps(d.hub_device(self.topics, self.hub_id, self.base_url,
                                               uploads=self.uploads_pending is not None,
                                               disarm_code=bool(self.config.disarm_code))), retain=True, force=True)
        try:
            cameras = self.control.cameras()
        except Exception:
            log.exception("mqtt: could not list cameras for discovery")
            cameras = [{"id": cid} for cid in self._cameras]
        for cam in cameras:
            self._publish_camera_discovery(cam)

    def _publish_camera_discovery(self, cam: dict[str, Any]) -> None:
        cid = str(cam["id"])
        self._remember_camera(cid)
        payload = d.camera_device(self.topics, self.hub_id, cam)
        self._publish(self.topics.camera_config_topic(self.hub_id, cid), json.dumps(payload), retain=True,
                      force=True)

    def _remember_camera(self, cid: str) -> None:
        s = d.slug(cid)
        self._cameras[cid] = s
        self._slugs[s] = cid

    def _republish_states(self) -> None:
        for topic, (payload, retain) in list(self._state.items()):
            self._publish(topic, payload, retain=retain, force=True)

    def _refresh_from_control(self) -> None:
        """Read the truth the controller holds (arm states, cameras) into the state cache."""
        self._state[self.topics.armed_state] = (d.alarm_state(self.control.is_armed()), True)
        if self.uploads_pending is not None:
            self._state[self.topics.upload_queue] = (str(self.uploads_pending()), True)
        for cam in self.control.cameras():
            cid = str(cam["id"])
            self._remember_camera(cid)
            t = self.topics.camera(cid)
            self._state[t.status] = (d.ONLINE if cam.get("online") else d.OFFLINE, True)
            self._state[t.armed_state] = (d.on_off(self._camera_armed(cid, cam)), True)
            pct = d.battery_percent(cam.get("battery"))
            if pct is not None:
                self._state[t.battery] = (pct, True)
            self._state.setdefault(t.motion, (d.OFF, True))
            self._state.setdefault(t.sound, (d.OFF, True))

    def _camera_armed(self, cid: str, cam: dict[str, Any] | None = None) -> bool:
        """The camera's own arm switch (it records when the hub is armed), not the combined state."""
        if cam is not None and "camera_armed" in cam:
            return bool(cam["camera_armed"])
        store = getattr(getattr(self.control, "hub", None), "store", None)
        if store is not None:
            row = store.get_camera(cid)
            if row is not None:
                return bool(row["armed"])
        if cam is None:
            cam = next((c for c in self.control.cameras() if str(c["id"]) == cid), None)
        return bool(cam and cam.get("armed"))

    # -- bus → MQTT ------------------------------------------------------------------------------------

    async def _consume(self) -> None:
        assert self._sub is not None
        async for msg in self._sub:
            try:
                self._on_bus(msg)
            except Exception:
                log.exception("mqtt: could not handle a bus message", extra={"topic": msg.topic})

    def _on_bus(self, msg: Message) -> None:
        data = msg.data
        cid = data.get("camera_id")
        if cid is None and isinstance(data.get("event"), dict):  # event.ended carries the row as "event"
            cid = data["event"].get("camera_id")
        if msg.topic == "armed":
            if cid is None:
                self._set_state(self.topics.armed_state, d.alarm_state(bool(data.get("armed"))))
            else:
                self._set_state(self.topics.camera(cid).armed_state, d.on_off(data.get("armed")))
            return
        if msg.topic == "upload.state":
            if self.uploads_pending is None:
                return
            self._set_state(self.topics.upload_queue, str(int(data.get("pending") or 0)))
            return
        if cid is None:
            return
        cid = str(cid)
        t = self.topics.camera(cid)
        if msg.topic in ("motion", "sound"):
            self._set_state(t.motion if msg.topic == "motion" else t.sound, d.on_off(data.get("active")))
        elif msg.topic == "camera.online":
            self._ensure_camera(cid)
            self._set_state(t.status, d.ONLINE)
        elif msg.topic == "camera.offline":
            self._set_state(t.status, d.OFFLINE)
            # An offline camera detects nothing: leave no sensor stuck ON.
            self._set_state(t.motion, d.OFF)
            self._set_state(t.sound, d.OFF)
        elif msg.topic == "camera.status":
            self._set_state(t.battery, d.battery_percent(data.get("battery")))
        elif msg.topic == "camera.added":
            self._ensure_camera(cid, name=data.get("name"))
        elif msg.topic == "camera.removed":
            self._forget_camera(cid)
        elif msg.topic == "event.started":
            self._set_state(t.last_event, d.timestamp(data.get("start") or data.get("detected_at")))
        elif msg.topic == "event.ended":
            event = data.get("event") or {}
            self._set_state(t.last_event, d.timestamp(event.get("start")))
            self._set_state(t.event, json.dumps(d.event_payload(event, self.base_url)), retain=False, force=True)
            snap = event.get("snapshot_path")
            if snap:
                self._publish_image(cid, _read_jpeg(snap))

    def _ensure_camera(self, cid: str, name: str | None = None) -> None:
        if cid in self._cameras:
            return
        cam = None
        try:
            cam = next((c for c in self.control.cameras() if str(c["id"]) == cid), None)
        except Exception:
            log.exception("mqtt: could not describe a camera", extra={"camera_id": cid})
        cam = cam or {"id": cid, "name": name or cid}
        self._publish_camera_discovery(cam)
        t = self.topics.camera(cid)
        self._set_state(t.status, d.ONLINE if cam.get("online") else d.OFFLINE)
        self._set_state(t.motion, d.OFF)
        self._set_state(t.sound, d.OFF)
        try:
            self._set_state(t.armed_state, d.on_off(self._camera_armed(cid, cam)))
        except Exception:
            log.exception("mqtt: could not read a camera's arm state", extra={"camera_id": cid})

    def _forget_camera(self, cid: str) -> None:
        s = self._cameras.pop(cid, None)
        self._slugs.pop(s or d.slug(cid), None)
        t = self.topics.camera(cid)
        for topic in t.state_topics():
            if self._state.pop(topic, None) is not None:
                self._publish(topic, b"", retain=True)  # clear the retained state
        self._publish(self.topics.camera_config_topic(self.hub_id, cid), b"", retain=True)  # removes the device

    def _publish_image(self, cid: str, jpeg: bytes | None) -> None:
        # Never retained: a retained JPEG of the inside of a home would be handed to every client that ever
        # subscribes, long after the moment it showed. Home Assistant, subscribed, gets it as it goes out.
        if not jpeg:
            return
        self._publish(self.topics.camera(cid).image, jpeg, retain=False, force=True)
        # (An image an older version left retained is not cleared here: an empty message would reach Home
        # Assistant as an empty picture. docs/home-assistant.md says how to clear it once.)

    # -- MQTT → hub ------------------------------------------------------------------------------------

    def _handle_message(self, topic: str, payload: bytes, retained: bool) -> None:
        try:
            self._dispatch(topic, payload, retained)
        except Exception:
            self.commands_ignored += 1
            log.exception("mqtt: command failed", extra={"topic": topic})

    def _dispatch(self, topic: str, payload: bytes, retained: bool) -> None:
        text = _text(payload)
        if topic == self.topics.ha_status:
            # A retained "online" only says HA was up once; discovery already went out on connect.
            if text == d.ONLINE and not retained and self.connected.is_set():
                log.info("home assistant came online; publishing discovery again")
                self.publish_discovery()
                self._republish_states()
            return
        if retained:
            # A retained command (another tool's mistake) would replay at every reconnect: never act on it.
            return self._ignore(topic, payload, "retained command")
        if topic == self.topics.armed_command:
            action, code = _alarm_command(text)
            if action == d.ARM_AWAY:
                self.control.set_armed(True)
            elif action == d.DISARM:
                if not self._disarm_code_ok(code):
                    self._set_state(self.topics.armed_state, d.alarm_state(self.control.is_armed()), force=True)
                    return self._ignore(topic, b"", "disarm without the right code (mqtt.disarm_code)")
                self.control.set_armed(False)
            else:
                return self._ignore(topic, b"" if code else payload, "expected ARM_AWAY or DISARM")
            self._set_state(self.topics.armed_state, d.alarm_state(self.control.is_armed()), force=True)
            return
        parsed = self.topics.camera_from_command(topic)
        if parsed is None:
            return self._ignore(topic, payload, "unknown topic")
        s, kind = parsed
        cid = self._slugs.get(s)
        if cid is None:
            return self._ignore(topic, payload, "unknown camera")
        if kind == "armed":
            if text not in (d.ON, d.OFF):
                return self._ignore(topic, payload, "expected ON or OFF")
            if text == d.OFF and self.config.disarm_code:
                # A camera switch carries no code: with a disarm code, cameras are only disarmed with it (the hub's
                # DISARM) or from the web UI / CLI.
                self._set_state(self.topics.camera(cid).armed_state, d.on_off(self._camera_armed(cid)), force=True)
                return self._ignore(topic, payload, "camera switch-off needs the disarm code; disarm the hub instead")
            try:
                self.control.set_armed(text == d.ON, cid)
            except HubError:
                return self._ignore(topic, payload, "unknown camera")
            self._set_state(self.topics.camera(cid).armed_state, d.on_off(self._camera_armed(cid)), force=True)
        elif kind == "snapshot":
            if text != d.PRESS:
                return self._ignore(topic, payload, "expected PRESS")
            task = asyncio.ensure_future(self._take_snapshot(cid))
            self._snapshot_tasks.add(task)
            task.add_done_callback(self._snapshot_tasks.discard)

    def _disarm_code_ok(self, code: str | None) -> bool:
        want = self.config.disarm_code
        if not want:
            return True
        return code is not None and hmac.compare_digest(code.encode(), want.encode())

    def _ignore(self, topic: str, payload: bytes, why: str) -> None:
        self.commands_ignored += 1
        log.warning("mqtt: ignored a command", extra={"topic": topic, "reason": why, "payload": payload[:64]
                                                        .decode("utf-8", "replace")})

    async def _take_snapshot(self, cid: str) -> None:
        try:
            jpeg = await self.control.snapshot(cid)
        except Exception:
            log.exception("mqtt: snapshot failed", extra={"camera_id": cid})
            return
        if not jpeg:
            log.info("mqtt: no snapshot (nothing buffered)", extra={"camera_id": cid})
            return
        self._publish_image(cid, jpeg)


def _alarm_command(text: str | None) -> tuple[str | None, str | None]:
    """``ARM_AWAY`` / ``DISARM``, or HA's JSON with a code ({"action": ..., "code": ...}) -> (action, code)."""
    if text is None or not text.startswith("{"):
        return text, None
    try:
        body = json.loads(text)
    except ValueError:
        return None, None
    if not isinstance(body, dict):
        return None, None
    action, code = body.get("action"), body.get("code")
    return (action if isinstance(action, str) else None), (code if isinstance(code, str) and code else None)


def _text(payload: bytes) -> str | None:
    try:
        return payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        return None


def _read_jpeg(path: str | Path) -> bytes | None:
    try:
        p = Path(path)
        if p.stat().st_size > MAX_SNAPSHOT_BYTES:
            log.warning("mqtt: snapshot too large to publish", extra={"path": str(p)})
            return None
        return p.read_bytes()
    except OSError as exc:
        log.warning("mqtt: cannot read the snapshot", extra={"path": str(path), "error": str(exc)})
        return None


def stable_hub_id(store: Any) -> str:
    """A hub id kept in the store's meta table (created once), for unique ids that survive restarts."""
    row = store.db.execute("SELECT value FROM meta WHERE key = 'hub_id'").fetchone()
    if row is not None and row[0]:
        return str(row[0])
    hub_id = uuid.uuid4().hex[:10]
    store.db.table("meta").upsert({"key": "hub_id", "value": hub_id}, pk="key")
    return hub_id
