"""Home Assistant MQTT device discovery for ping-watch: topics and payloads, as pure functions.

One HA device for the hub (an alarm panel for the global arm state) and one per camera (``via_device`` the hub):
motion and sound binary sensors, an event entity for ping-watch events, an image entity with the last event
snapshot, battery and last-event sensors, a switch that arms the camera and a button that takes a snapshot; and,
once the camera has reported on its detect stream, a diagnostic "Detection stream" problem sensor.

Device-based discovery (HA 2024.11+): one retained message per device on
``<discovery_prefix>/device/<object_id>/config`` holding ``dev``, ``o`` (origin), ``cmps`` (components) and the
options shared by all components (availability, qos). An empty retained payload on that topic removes the device.

Every state and command topic lives under ``<topic_prefix>/`` (see :class:`Topics`). Unique ids derive only from
the hub id and the camera id, so they are stable across restarts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from hub import __version__

ORIGIN_NAME = "ping-watch"
MANUFACTURER = "ping-watch"

ONLINE = "online"
OFFLINE = "offline"
ON = "ON"
OFF = "OFF"
PRESS = "PRESS"
ARM_AWAY = "ARM_AWAY"
DISARM = "DISARM"
ARMED_AWAY = "armed_away"
DISARMED = "disarmed"
EVENT_TYPES = ("motion", "sound")

_UNSAFE = re.compile(r"[^a-zA-Z0-9_-]")


def slug(value: str) -> str:
    """An id safe in MQTT topics (no ``/ + #``) and as an HA object id (``[a-zA-Z0-9_-]+``)."""
    return _UNSAFE.sub("_", value) or "_"


@dataclass(frozen=True)
class CameraTopics:
    base: str

    @property
    def status(self) -> str:  # availability: online / offline (retained)
        return f"{self.base}/status"

    @property
    def motion(self) -> str:  # ON / OFF (retained)
        return f"{self.base}/motion"

    @property
    def sound(self) -> str:  # ON / OFF (retained)
        return f"{self.base}/sound"

    @property
    def battery(self) -> str:  # percent, integer (retained)
        return f"{self.base}/battery"

    @property
    def last_event(self) -> str:  # ISO 8601 with offset (retained)
        return f"{self.base}/last_event"

    @property
    def event(self) -> str:  # JSON {"event_type": ..., ...} (not retained)
        return f"{self.base}/event"

    @property
    def image(self) -> str:  # JPEG bytes (retained)
        return f"{self.base}/snapshot"

    @property
    def detect(self) -> str:  # ON: the detect stream is down (a problem), OFF: it runs (retained)
        return f"{self.base}/detect"

    @property
    def armed_state(self) -> str:  # ON / OFF (retained)
        return f"{self.base}/armed"

    @property
    def armed_command(self) -> str:  # ON / OFF from HA
        return f"{self.base}/armed/set"

    @property
    def snapshot_command(self) -> str:  # PRESS from HA
        return f"{self.base}/snapshot/take"

    def state_topics(self) -> list[str]:
        return [self.status, self.motion, self.sound, self.battery, self.last_event, self.event, self.image,
                self.armed_state, self.detect]

    def retained_topics(self) -> list[str]:
        """Every topic the broker may hold retained for this camera (the snapshot too: older versions
        retained it), i.e. what a removed camera must clear; the event topic is never retained."""
        return [t for t in self.state_topics() if t != self.event]

    def command_topics(self) -> list[str]:
        return [self.armed_command, self.snapshot_command]


@dataclass(frozen=True)
class Topics:
    """Every topic the bridge uses. ``prefix`` is ``mqtt.topic_prefix``, ``discovery`` is ``mqtt.discovery_prefix``."""

    prefix: str = "pingwatch"
    discovery: str = "homeassistant"

    @property
    def status(self) -> str:  # hub availability: online (birth) / offline (LWT), retained
        return f"{self.prefix}/status"

    @property
    def armed_state(self) -> str:  # armed_away / disarmed (retained)
        return f"{self.prefix}/armed"

    @property
    def armed_command(self) -> str:  # ARM_AWAY / DISARM from HA
        return f"{self.prefix}/armed/set"

    @property
    def upload_queue(self) -> str:  # events waiting to upload to the cloud (retained count)
        return f"{self.prefix}/uploads/pending"

    @property
    def ha_status(self) -> str:  # HA's birth/last will: online / offline
        return f"{self.discovery}/status"

    def camera(self, camera_id: str) -> CameraTopics:
        return CameraTopics(f"{self.prefix}/camera/{slug(camera_id)}")

    def camera_from_command(self, topic: str) -> tuple[str, str] | None:
        """``(camera slug, "armed" | "snapshot")`` for a camera command topic, else None."""
        head = f"{self.prefix}/camera/"
        if not topic.startswith(head):
            return None
        rest = topic[len(head):]
        for suffix, kind in (("/armed/set", "armed"), ("/snapshot/take", "snapshot")):
            if rest.endswith(suffix) and "/" not in rest[: -len(suffix)]:
                return rest[: -len(suffix)], kind
        return None

    def command_subscriptions(self) -> list[str]:
        return [self.armed_command, f"{self.prefix}/camera/+/armed/set", f"{self.prefix}/camera/+/snapshot/take",
                self.ha_status]

    def hub_object_id(self, hub_id: str) -> str:
        return f"pingwatch_{slug(hub_id)}"

    def camera_object_id(self, hub_id: str, camera_id: str) -> str:
        return f"pingwatch_{slug(hub_id)}_{slug(camera_id)}"

    def hub_config_topic(self, hub_id: str) -> str:
        return f"{self.discovery}/device/{self.hub_object_id(hub_id)}/config"

    def camera_config_topic(self, hub_id: str, camera_id: str) -> str:
        return f"{self.discovery}/device/{self.camera_object_id(hub_id, camera_id)}/config"


def origin() -> dict[str, str]:
    return {"name": ORIGIN_NAME, "sw": __version__}


def _availability(*topics: str) -> list[dict[str, str]]:
    return [{"topic": t, "payload_available": ONLINE, "payload_not_available": OFFLINE} for t in topics]


# What HA sends on the alarm command topic when the hub needs a code: {"action": "DISARM", "code": "1234"}.
COMMAND_TEMPLATE = '{"action": "{{ action }}", "code": "{{ code }}"}'


def hub_device(topics: Topics, hub_id: str, base_url: str | None = None, name: str = "ping-watch hub",
               uploads: bool = False, disarm_code: bool = False) -> dict[str, Any]:
    """The hub's discovery payload: the device, its alarm panel (arm away / disarm; with ``disarm_code`` Home
    Assistant asks for a code to disarm and sends it, checked by the hub, never stored by HA) and, when the hub
    uploads to the cloud, a diagnostic sensor with the number of events waiting to upload."""
    oid = topics.hub_object_id(hub_id)
    dev: dict[str, Any] = {"ids": [oid], "name": name, "mf": MANUFACTURER, "mdl": "ping-watch hub", "sw": __version__}
    if base_url:
        dev["cu"] = base_url  # configuration_url: the hub's web UI
    cmps: dict[str, dict[str, Any]] = {
        "alarm": {
            "p": "alarm_control_panel",
            "unique_id": f"{oid}_alarm",
            "name": "Alarm",
            "state_topic": topics.armed_state,
            "command_topic": topics.armed_command,
            "supported_features": ["arm_away"],
            "code_arm_required": False,
            "code_disarm_required": False,
            "payload_arm_away": ARM_AWAY,
            "payload_disarm": DISARM,
        },
    }
    if disarm_code:
        # REMOTE_CODE: HA shows a keypad and passes the code on; the hub, not HA, knows and checks it.
        cmps["alarm"].update({"code": "REMOTE_CODE", "code_disarm_required": True,
                              "command_template": COMMAND_TEMPLATE})
    if uploads:
        cmps["uploads"] = {
            "p": "sensor", "unique_id": f"{oid}_uploads_pending", "name": "Uploads waiting",
            "state_topic": topics.upload_queue, "state_class": "measurement", "unit_of_measurement": "events",
            "icon": "mdi:cloud-upload", "entity_category": "diagnostic",
        }
    return {"dev": dev, "o": origin(), "cmps": _with_qos(cmps), "availability": _availability(topics.status),
            "qos": 1}


def has_battery(camera: dict[str, Any]) -> bool:
    """Whether a camera has a battery to announce: phones do (they report it over the status channel), and so
    does any camera that has reported a level; a file, RTSP or demo camera never will, and a sensor announced for
    it would read ``unknown`` for ever."""
    return camera.get("kind") == "phone" or camera.get("battery") is not None


def has_detect_stream(camera: dict[str, Any]) -> bool:
    """Whether the controller says the camera detects on a stream of its own (an RTSP sub-stream): its
    ``detect`` is then ``ok`` or ``down``; ``none`` (or absent) when detection runs on the main stream."""
    return camera.get("detect") in ("ok", "down")


def camera_device(topics: Topics, hub_id: str, camera: dict[str, Any], *, detect_stream: bool = False
                  ) -> dict[str, Any]:
    """A camera's discovery payload. ``camera`` is one of ``Controller.cameras()`` (``id``, ``name``, ``kind``,
    ``battery``, ``detect``): the battery sensor is announced only when :func:`has_battery`. ``detect_stream``
    (or :func:`has_detect_stream`): the camera detects on a stream of its own, so it gets the problem sensor that
    says when that stream is down; the bridge also learns it from the first ``camera.detect`` on the bus."""
    cid = str(camera["id"])
    oid = topics.camera_object_id(hub_id, cid)
    t = topics.camera(cid)
    kind = camera.get("kind") or "camera"
    model = {"phone": "Phone camera", "rtsp": "RTSP camera", "file": "File camera"}.get(kind, f"{kind} camera")
    cmps: dict[str, dict[str, Any]] = {
        "motion": {
            "p": "binary_sensor", "unique_id": f"{oid}_motion", "name": "Motion", "device_class": "motion",
            "state_topic": t.motion, "payload_on": ON, "payload_off": OFF,
        },
        "sound": {
            "p": "binary_sensor", "unique_id": f"{oid}_sound", "name": "Sound", "device_class": "sound",
            "state_topic": t.sound, "payload_on": ON, "payload_off": OFF,
        },
        "event": {
            "p": "event", "unique_id": f"{oid}_event", "name": "Event", "device_class": "motion",
            "state_topic": t.event, "event_types": list(EVENT_TYPES),
        },
        "snapshot": {
            "p": "image", "unique_id": f"{oid}_snapshot", "name": "Snapshot", "image_topic": t.image,
            "content_type": "image/jpeg",
        },
        "last_event": {
            "p": "sensor", "unique_id": f"{oid}_last_event", "name": "Last event", "device_class": "timestamp",
            "state_topic": t.last_event,
        },
        "armed": {
            "p": "switch", "unique_id": f"{oid}_armed", "name": "Armed", "icon": "mdi:shield-home",
            "state_topic": t.armed_state, "command_topic": t.armed_command, "payload_on": ON, "payload_off": OFF,
        },
        "take_snapshot": {
            "p": "button", "unique_id": f"{oid}_take_snapshot", "name": "Take snapshot", "icon": "mdi:camera",
            "command_topic": t.snapshot_command, "payload_press": PRESS,
        },
    }
    if has_battery(camera):
        cmps["battery"] = {
            "p": "sensor", "unique_id": f"{oid}_battery", "name": "Battery", "device_class": "battery",
            "unit_of_measurement": "%", "state_class": "measurement", "entity_category": "diagnostic",
            "state_topic": t.battery,
        }
    if detect_stream or has_detect_stream(camera):
        cmps["detect_stream"] = {
            "p": "binary_sensor", "unique_id": f"{oid}_detect_stream", "name": "Detection stream",
            "device_class": "problem", "entity_category": "diagnostic", "state_topic": t.detect,
            "payload_on": ON, "payload_off": OFF,
        }
    return {
        "dev": {
            "ids": [oid], "name": camera.get("name") or cid, "mf": MANUFACTURER, "mdl": model, "sw": __version__,
            "via_device": topics.hub_object_id(hub_id),
        },
        "o": origin(),
        "cmps": _with_qos(cmps),
        "availability": _availability(topics.status, t.status),
        "availability_mode": "all",
        "qos": 1,
    }


def _with_qos(cmps: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """QoS 1 on every component too: Home Assistant releases before mid-2026 ignore the device-level ``qos``
    (HA core issue 170166) and would subscribe to states and send commands at QoS 0."""
    return {key: comp | {"qos": 1} for key, comp in cmps.items()}


# -- state payloads ------------------------------------------------------------------------------------------


def on_off(value: Any) -> str:
    return ON if value else OFF


def detect_problem(state: Any) -> str | None:
    """The Detection stream sensor's state for a ``camera.detect`` state: ``down`` is a problem (ON), ``ok`` is
    not (OFF); anything else None (not published)."""
    return {"down": ON, "ok": OFF}.get(state) if isinstance(state, str) else None


def alarm_state(armed: bool) -> str:
    return ARMED_AWAY if armed else DISARMED


def battery_percent(battery: Any) -> str | None:
    """The bus and store carry battery as 0-1; HA wants percent."""
    try:
        value = float(battery)
    except (TypeError, ValueError):
        return None
    if value != value:  # NaN
        return None
    return str(round(max(0.0, min(1.0, value)) * 100))


def timestamp(epoch: Any) -> str | None:
    """ISO 8601 with a UTC offset, as HA's timestamp sensors require."""
    from datetime import datetime

    try:
        return datetime.fromtimestamp(float(epoch), tz=UTC).isoformat(timespec="seconds")
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _trigger_names(triggers: Any) -> list[str]:
    if isinstance(triggers, str):
        triggers = [triggers]
    names = []
    for trig in triggers or []:
        if isinstance(trig, dict):
            trig = trig.get("kind") or trig.get("type") or trig.get("name")
        if trig:
            names.append(str(trig))
    return names


def event_type(triggers: Any) -> str:
    """The HA event type for an event's triggers (motion wins over sound; unknown ones read as motion)."""
    names = _trigger_names(triggers)
    for kind in EVENT_TYPES:
        if kind in names:
            return kind
    return EVENT_TYPES[0]


def event_urls(base_url: str, event_id: str) -> dict[str, str]:
    base = base_url.rstrip("/")
    # The web UI's routes: they open in a browser that is logged in to the hub (clips are never public).
    return {"clip_url": f"{base}/api/ui/events/{event_id}/clip",
            "snapshot_url": f"{base}/api/ui/events/{event_id}/snapshot"}


def event_payload(event: dict[str, Any], base_url: str) -> dict[str, Any]:
    """The event entity's payload for an ended event row: ``event_type`` plus attributes."""
    eid = str(event.get("id") or event.get("event_id") or "")
    payload: dict[str, Any] = {"event_type": event_type(event.get("triggers")), "event_id": eid,
                               "triggers": _trigger_names(event.get("triggers"))}
    if eid:
        payload.update(event_urls(base_url, eid))
    for key in ("start", "end"):
        ts = timestamp(event.get(key)) if event.get(key) is not None else None
        if ts:
            payload[key] = ts
    for key in ("peak_motion", "audio_peak_dbfs"):
        if event.get(key) is not None:
            payload[key] = event[key]
    return payload
