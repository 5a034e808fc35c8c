"""The MQTT bridge: ping-watch's bus → Home Assistant states, HA commands → the hub's controller.

paho-mqtt 2.x runs its network loop in its own thread (``loop_start``); its callbacks only hand work to the asyncio
loop with ``call_soon_threadsafe``, so everything that touches the hub (the controller, the SQLite store) runs on
the hub's loop.

Connection life: ``connect_async`` + ``loop_start`` keeps retrying with paho's backoff
(``reconnect_delay_set``) when the broker is down at start or goes away; the hub never waits for the broker. On
every (re)connect the bridge subscribes again (in ``on_connect``), publishes discovery, republishes every state it
holds (read afresh from the controller for arm states and cameras), then the retained birth message ``online``.
The last will is a retained ``offline`` on the same topic; ``stop()`` publishes it itself before disconnecting.

Incoming payloads are untrusted: anything malformed is logged and ignored; every accepted command is logged
at INFO with its topic and outcome, so the log says who disarmed the hub.

Cameras: a camera's discovery payload is published again whenever it changes (a rename, a first battery
report, a first report on its detect stream), and a removed camera's device and retained topics are cleared
(empty retained payloads; kept for the next connection when the broker is away), after which nothing more is
published for it.

Broker access: ``mqtt.username``/``password``, TLS with ``mqtt.ca_file`` and an optional client certificate
(``mqtt.cert_file``/``key_file``). A refused log-in or a failed TLS handshake is logged as such, kept in
:meth:`MqttBridge.status`, and retried with the same backoff as an unreachable broker; it never stops the hub.
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
# CONNACK reasons that say the broker does not accept the hub's account (MQTT 3.1.1 codes 4 and 5, their v5 names).
_AUTH_REFUSALS = ("not authorized", "bad user name or password", "bad username or password")


class _Client(mqtt.Client):
    """paho's client, keeping why the last connection attempt failed: paho's ``on_connect_fail`` does not say,
    and "certificate verify failed" must not read as "broker down". A broker that wants a client certificate
    ends the connection after the TLS handshake (TLS 1.3), before answering CONNECT: ``answered`` tells that
    apart from a connection lost later."""

    last_connect_error: str | None = None
    answered = False  # the broker answered this attempt's CONNECT (accepted or refused)

    def reconnect(self) -> mqtt.MQTTErrorCode:
        self.answered = False
        self.last_connect_error = None
        try:
            return super().reconnect()
        except OSError as exc:  # ssl.SSLError and refused/unreachable sockets alike
            self.last_connect_error = f"{type(exc).__name__}: {exc}"
            raise


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
        self.last_error: str | None = None  # why the last connection attempt failed; None once connected
        self.auth_refused = False  # the broker refused the hub's username/password (or client certificate)

        self._client: mqtt.Client | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sub: Subscription | None = None
        self._task: asyncio.Task[None] | None = None
        self._state: dict[str, tuple[bytes | str, bool]] = {}  # topic -> (payload, retain): what we republish
        self._cameras: dict[str, str] = {}  # camera id -> topic slug, of cameras with published discovery
        self._discovery: dict[str, str] = {}  # camera id -> the discovery payload last published for it
        self._battery: set[str] = set()  # cameras whose published discovery has the battery sensor
        self._detect: set[str] = set()  # cameras that reported on their detect stream (camera.detect)
        self._removed: set[str] = set()  # removed cameras: late bus messages for them are dropped
        self._clears: set[str] = set()  # retained topics to empty on the broker (sent when connected)
        self._slugs: dict[str, str] = {}  # topic slug -> camera id (for commands)
        self._snapshot_tasks: set[asyncio.Task[None]] = set()
        self._stopping = False

    # -- lifecycle -------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start connecting in the background; returns at once whether or not the broker is up."""
        self._loop = asyncio.get_running_loop()
        self._stopping = False
        self._sub = self.bus.subscribe(*BUS_TOPICS, maxsize=1024)
        self._task = asyncio.create_task(self._consume(), name="mqtt-bridge")
        try:
            self._client = self._make_client()
        except (OSError, ValueError) as exc:  # a CA or client certificate that cannot be read: a config error
            self.last_error = f"TLS files: {exc}"
            log.error("mqtt: cannot read the TLS files (mqtt.ca_file, mqtt.cert_file, mqtt.key_file); "
                      "the hub runs without Home Assistant", extra={"error": str(exc)})
            return
        self._client.connect_async(self.config.host, self.config.port, keepalive=self.keepalive_s)
        self._client.loop_start()
        log.info("mqtt bridge started", extra={"host": self.config.host, "port": self.config.port,
                                               "topic_prefix": self.topics.prefix, "tls": self._tls(),
                                               "username": self.config.username})

    def status(self) -> dict[str, Any]:
        """For health pages and ``doctor``: connected or not, and why the last attempt failed."""
        return {"connected": self.connected.is_set(), "connections": self.connections,
                "connect_failures": self.connect_failures, "last_error": self.last_error,
                "auth_refused": self.auth_refused}

    def _tls(self) -> bool:
        cfg = self.config
        return bool(cfg.tls or cfg.ca_file or cfg.cert_file)

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
        client = _Client(CallbackAPIVersion.VERSION2, client_id=self.client_id, clean_session=True)
        client.will_set(self.topics.status, d.OFFLINE, qos=1, retain=True)
        if cfg.username:
            client.username_pw_set(cfg.username, cfg.password)
        if self._tls():
            # Verified against ca_file (or the system's CAs), host name included: a broker that cannot prove
            # who it is gets no password and no commands.
            ctx = ssl.create_default_context(cafile=str(cfg.ca_file) if cfg.ca_file else None)
            if cfg.cert_file:
                ctx.load_cert_chain(str(cfg.cert_file), str(cfg.key_file) if cfg.key_file else None)
            client.tls_set_context(ctx)
        client.reconnect_delay_set(min_delay=self.reconnect_min_s, max_delay=self.reconnect_max_s)  # type: ignore[arg-type]
        client.max_queued_messages_set(1000)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_log = self._on_log
        return client

    # -- paho callbacks (paho's thread: hand over to the loop, touch nothing else) ----------------------

    def _call(self, fn: Callable[..., Any], *args: Any) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(fn, *args)
            except RuntimeError:  # loop closed meanwhile
                pass

    def _on_log(self, client: mqtt.Client, userdata: Any, level: int, buf: str) -> None:
        # paho reports a socket or TLS error only here ("failed to receive on socket: [SSL: ...]").
        if level == mqtt.MQTT_LOG_ERR and isinstance(client, _Client) and not client.answered:
            client.last_connect_error = buf

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if isinstance(client, _Client):
            client.answered = True
        if reason_code.is_failure:
            self._call(self._connect_refused, str(reason_code))
            return
        # Subscribing here means a reconnect (clean session) subscribes again.
        client.subscribe([(t, 1) for t in self.topics.command_subscriptions()])
        self._call(self._connected)

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        why = getattr(client, "last_connect_error", None) or "unreachable"
        self._call(self._connect_refused, self._cut_reason(why))

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if isinstance(client, _Client) and not client.answered and not self._stopping:
            # Cut before the broker answered CONNECT (a TLS alert): a failed attempt, not a lost connection.
            self._call(self._connect_refused, self._cut_reason(client.last_connect_error or str(reason_code)))
        self._call(self._disconnected, str(reason_code))

    def _cut_reason(self, raw: str) -> str:
        """Why a TLS connection ended before the broker answered CONNECT, in words that say what to do.

        A broker that wants a client certificate sends the TLS 1.3 alert CERTIFICATE_REQUIRED and closes; whether
        the client reads the alert or only the closed socket ("EOF occurred in violation of protocol") depends on
        timing, so both mean the same here when the hub has no certificate configured."""
        if not self._tls() or self.config.cert_file:
            return raw
        lowered = raw.lower()
        if "certificate_required" in lowered or "eof" in lowered:
            return ("broker requires a client certificate (TLS ended before CONNACK): set mqtt.cert_file and "
                    f"mqtt.key_file [{raw}]")
        return raw

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self._call(self._handle_message, msg.topic, bytes(msg.payload), bool(msg.retain))

    # -- connection state (on the loop) ----------------------------------------------------------------

    def _connect_refused(self, why: str) -> None:
        self.connect_failures += 1
        self.connect_failed.set()
        changed = why != self.last_error
        self.last_error = why
        self.auth_refused = why.lower() in _AUTH_REFUSALS
        if not (changed or self.connect_failures in (1, 10) or self.connect_failures % 100 == 0):
            return
        where = {"host": self.config.host, "port": self.config.port, "reason": why, "failures": self.connect_failures}
        if self.auth_refused:
            log.error("mqtt broker refused the hub's log-in: check mqtt.username and mqtt.password (or "
                      "PINGWATCH_MQTT__PASSWORD); retrying in the background", extra=where | {
                          "username": self.config.username})
        elif "SSL" in why or "certificate" in why.lower():
            log.error("mqtt TLS handshake failed: check mqtt.ca_file (the broker's CA), the broker's certificate "
                      "names (mqtt.host must be one of them) and mqtt.cert_file/key_file; retrying in the background",
                      extra=where)
        else:
            log.warning("mqtt broker not reachable; retrying in the background", extra=where)

    def _disconnected(self, why: str) -> None:
        if self.connected.is_set() and not self._stopping:
            log.warning("mqtt disconnected; reconnecting", extra={"reason": why})
        self.connected.clear()
        self.disconnected.set()

    def _connected(self) -> None:
        if self._client is None:
            return
        self.connections += 1
        self.last_error = None
        self.auth_refused = False
        log.info("mqtt connected", extra={"host": self.config.host, "port": self.config.port,
                                          "reconnect": self.connections > 1})
        self._send_clears(force=True)  # cameras removed while the broker was away
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
            self._publish_camera_discovery(cam, force=True)

    def _publish_camera_discovery(self, cam: dict[str, Any], *, force: bool = False) -> None:
        """Publish a camera's discovery payload: always with ``force`` (a connect, HA's birth), else only when it
        differs from the one last published (a rename, a first battery report)."""
        cid = str(cam["id"])
        self._remember_camera(cid)
        config_topic = self.topics.camera_config_topic(self.hub_id, cid)
        self._clears.difference_update([config_topic, *self.topics.camera(cid).retained_topics()])  # back again
        payload = json.dumps(d.camera_device(self.topics, self.hub_id, cam, detect_stream=cid in self._detect))
        if not force and self._discovery.get(cid) == payload:
            return
        self._discovery[cid] = payload
        if d.has_detect_stream(cam):
            self._detect.add(cid)
        if d.has_battery(cam):
            self._battery.add(cid)
        else:
            self._battery.discard(cid)
        self._publish(config_topic, payload, retain=True, force=True)

    def _describe(self, cid: str) -> dict[str, Any] | None:
        """The controller's description of one camera, or None when it has none (removed, revoked)."""
        try:
            return next((c for c in self.control.cameras() if str(c["id"]) == cid), None)
        except Exception:
            log.exception("mqtt: could not describe a camera", extra={"camera_id": cid})
            return None

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
            problem = d.detect_problem(cam.get("detect"))
            if problem is not None:
                self._state[t.detect] = (problem, True)
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
        if cid in self._removed:
            if msg.topic != "camera.added":
                return  # a removed camera's last frames or events: its device is gone from HA and the broker
            self._removed.discard(cid)  # paired again under the same id
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
            pct = d.battery_percent(data.get("battery"))
            if pct is not None and cid in self._discovery and cid not in self._battery:
                self._update_camera(cid)  # its first battery report: announce the sensor before its state
            self._set_state(t.battery, pct)
        elif msg.topic == "camera.detect":
            self._on_detect(cid, data)
        elif msg.topic == "camera.added":
            self._ensure_camera(cid, name=data.get("name"))
        elif msg.topic == "camera.settings":
            self._update_camera(cid)  # a rename reaches HA at once (unchanged payloads are not re-sent)
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

    def _on_detect(self, cid: str, data: dict[str, Any]) -> None:
        """A camera's detect stream went down or came back: the first report announces the Detection stream
        sensor (discovery before its state, as for the battery), later ones only change its state."""
        state = d.detect_problem(data.get("state"))
        if state is None:
            log.warning("mqtt: camera.detect with an unknown state", extra={"camera_id": cid,
                                                                             "state": str(data.get("state"))[:32]})
            return
        if cid not in self._detect:
            self._detect.add(cid)
            if cid in self._discovery:
                self._update_camera(cid)
        self._set_state(self.topics.camera(cid).detect, state)

    def _update_camera(self, cid: str) -> None:
        cam = self._describe(cid)
        if cam is not None:
            self._publish_camera_discovery(cam)

    def _ensure_camera(self, cid: str, name: str | None = None) -> None:
        if cid in self._cameras:
            return
        cam = self._describe(cid) or {"id": cid, "name": name or cid}
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
        """A removed (or revoked) camera: HA drops its device, the broker forgets its retained topics, and
        nothing more is published for it (late messages from its last frames are dropped in ``_on_bus``)."""
        s = self._cameras.pop(cid, None)
        self._slugs.pop(s or d.slug(cid), None)
        self._discovery.pop(cid, None)
        self._battery.discard(cid)
        self._detect.discard(cid)
        self._removed.add(cid)
        t = self.topics.camera(cid)
        for topic in t.state_topics():
            self._state.pop(topic, None)
        # The device first: HA removes its entities, so the emptied states below reach no entity. Every retained
        # topic is emptied, not only those this run published: a previous run may have left them.
        self._clears.add(self.topics.camera_config_topic(self.hub_id, cid))
        self._send_clears()
        self._clears.update(t.retained_topics())
        self._send_clears()

    def _send_clears(self, *, force: bool = False) -> None:
        """Empty the retained topics of removed cameras; whatever cannot go out now waits for the next connect."""
        client = self._client
        if not self._clears or client is None or not client.is_connected() or not (force or self.connected.is_set()):
            return
        for topic in sorted(self._clears, key=lambda x: not x.endswith("/config")):  # devices first
            self._publish(topic, b"", retain=True, force=True)
        self._clears.clear()

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
            state = d.alarm_state(self.control.is_armed())
            self._set_state(self.topics.armed_state, state, force=True)
            self._accepted(topic, action, f"hub {state}")  # the action only: a disarm code never reaches the log
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
            switch = d.on_off(self._camera_armed(cid))
            self._set_state(self.topics.camera(cid).armed_state, switch, force=True)
            self._accepted(topic, text, f"camera {cid} armed switch {switch}", camera_id=cid)
        elif kind == "snapshot":
            if text != d.PRESS:
                return self._ignore(topic, payload, "expected PRESS")
            self._accepted(topic, text, "taking a snapshot", camera_id=cid)
            task = asyncio.ensure_future(self._take_snapshot(cid))
            self._snapshot_tasks.add(task)
            task.add_done_callback(self._snapshot_tasks.discard)

    def _disarm_code_ok(self, code: str | None) -> bool:
        want = self.config.disarm_code
        if not want:
            return True
        return code is not None and hmac.compare_digest(code.encode(), want.encode())

    @staticmethod
    def _accepted(topic: str, command: str | None, outcome: str, **extra: Any) -> None:
        # Every command acted on is logged: the log must say that Home Assistant (or whoever holds a broker
        # account) disarmed the hub.
        log.info("mqtt command: %s -> %s", command, outcome,
                 extra={"topic": topic, "command": command, "outcome": outcome, **extra})

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
        log.info("mqtt: snapshot published", extra={"camera_id": cid, "bytes": len(jpeg)})


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
