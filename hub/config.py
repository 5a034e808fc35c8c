"""The hub's configuration: one YAML file, validated, with documented defaults.

`config/hub.example.yaml` documents every key; this schema is the source of truth for defaults and types.
Environment variables override the file: ``PINGWATCH_<SECTION>__<KEY>=value`` (double underscore between
levels), e.g. ``PINGWATCH_SERVER__HTTPS_PORT=9443``. Values are parsed as YAML scalars.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from hub.notify.config import TelegramConfig

# ConfigError is this program's config error too (raised by the shared loader; callers import it from here).
from pingwatch_common.configfile import ConfigError as ConfigError
from pingwatch_common.configfile import ConfigFormat, load_model

ENV_PREFIX = "PINGWATCH_"


class _Section(BaseModel):
    # Unknown keys are almost always typos; silently ignoring them would hide a misconfiguration.
    model_config = ConfigDict(extra="forbid", validate_default=True)


class ServerConfig(_Section):
    host: str = Field("0.0.0.0", description="Address the HTTPS server binds (phones on the LAN reach it).")
    https_port: int = Field(8443, ge=1, le=65535, description="HTTPS port for phones and the web UI.")
    http_port: int | None = Field(
        8080, ge=1, le=65535, description="Plain HTTP port bound to 127.0.0.1 only (CLI, local tools); null disables."
    )
    public_host: str | None = Field(
        None, description="Host name or IP that phones use; default: this machine's LAN address."
    )
    max_body_bytes: int = Field(65536, ge=1024, description="Largest accepted API request body.")
    header_timeout_s: float = Field(10.0, gt=0, le=300, description="A connection whose request headers (or TLS "
                                    "handshake) take longer than this is closed (slowloris).")
    keepalive_timeout_s: float = Field(15.0, gt=0, le=3600, description="An idle keep-alive connection is closed "
                                       "after this long.")
    max_connections_per_client: int = Field(32, ge=1, le=10_000, description="Open connections one address may "
                                            "hold; more are refused.")


class StorageConfig(_Section):
    data_dir: Path = Field(Path("data"), description="Holds the database, clips, certificate and secrets.")
    retention_days: float = Field(30, gt=0, description="Events older than this are deleted.")
    max_disk_gb: float = Field(20, gt=0, description="Clip storage budget; oldest events go first beyond it.")
    min_free_gb: float = Field(1, ge=0, description="Keep at least this much free on the disk.")
    prune_interval_min: float = Field(15, gt=0, description="How often retention runs.")


# Keys that once existed and are no longer read: a config that still has them loads, with a warning that says
# what to do (refusing it, as an unknown key would be, would stop a hub at its next restart after an upgrade).
_RETIRED_INGEST_KEYS = {
    "record_width": "phones choose their resolution on the camera page (720p15 by default)",
    "record_height": "phones choose their resolution on the camera page (720p15 by default)",
    "record_fps": "phones choose their frame rate on the camera page (720p15 by default)",
}


class IngestConfig(_Section):
    @model_validator(mode="before")
    @classmethod
    def _retired(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in [k for k in data if k in _RETIRED_INGEST_KEYS]:
                data = {k: v for k, v in data.items() if k != key}
                logging.getLogger(__name__).warning(
                    f"ingest.{key} is no longer used ({_RETIRED_INGEST_KEYS[key]}); remove it from the config")
        return data

    preroll_window_s: float = Field(15, gt=0, le=120, description="Seconds of encoded video kept per camera.")
    buffer_max_mb: float = Field(10, gt=0, description="Byte cap of each camera's buffer (MiB).")
    keyframe_interval_s: float = Field(2.0, gt=0.2, le=30, description="How often a keyframe is requested.")
    bitrate_kbps: int = Field(2500, ge=100, le=20000, description="Bitrate the hub tells phones to send.")
    detect_width: int = Field(320, ge=64)
    detect_fps: int = Field(5, ge=1, le=30)
    offline_after_s: float = Field(30, gt=0, description="A camera silent this long is reported offline.")
    connect_timeout_s: float = Field(
        30, gt=0, le=600, description="A phone's peer that has not connected this long after its offer is closed "
                                      "(its sockets freed); the phone retries with a new offer.")
    read_interval_ms: int = Field(
        60, ge=0, le=200,
        description="A streaming camera's packets are read this often in one go (0: as each arrives); less CPU.",
    )
    decode_record: bool = Field(
        False,
        description="Benchmarks only (scripts/bench ingest): aiortc's default receive path, record track decoded."
    )


class MotionSettings(_Section):
    enabled: bool = True
    sensitivity: Literal["low", "medium", "high"] = "medium"
    threshold: int | None = Field(None, ge=1, le=255, description="Raw pixel threshold; overrides the preset.")
    min_area: float | None = Field(None, gt=0, lt=1, description="Smallest moving area, fraction of the frame.")


class AudioSettings(_Section):
    enabled: bool = True
    rise_db: float = Field(18, gt=0, description="Most rise over the noise floor that triggers (an unsteady floor; a "
                                                 "steady one needs less, down to 8 dB).")
    hold_ms: int = Field(40, ge=20, description="How long the rise must last.")
    min_level_dbfs: float = Field(-45, le=0, description="Sounds quieter than this never trigger.")


class EventsConfig(_Section):
    pre_roll_s: float = Field(5, ge=0, le=60)
    post_roll_s: float = Field(5, ge=0, le=120)
    max_length_s: float = Field(120, gt=1, le=3600)
    # 0: a visitor who comes back 30 s after leaving starts a new event at once (a cooldown delayed it by seconds);
    # post-roll merges one visit's pauses and max_per_hour bounds a storm.
    cooldown_s: float = Field(0, ge=0, description="No new event for this long after one ends.")
    max_per_hour: int = Field(30, ge=1)


class ArmSchedule(_Section):
    cron: str = Field(..., description="Crontab line (minute hour day month weekday), local time.")
    armed: bool = Field(..., description="Arm (true) or disarm (false) at that time.")
    camera: str | None = Field(None, description="A camera id; omitted: the whole hub.")

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, v: str) -> str:
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger.from_crontab(v)
        except ValueError as exc:
            raise ValueError(f"not a valid crontab expression: {exc}") from None
        return v


class ArmingConfig(_Section):
    schedules: list[ArmSchedule] = Field([], description="Arm/disarm at fixed times, e.g. armed at night.")


class CameraConfig(_Section):
    id: str = Field(..., pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$", description="Stable id (lowercase, digits, - _).")
    name: str | None = None
    source: str = Field(..., description="A video file path or an rtsp:// URL.")
    detect_source: str | None = Field(None, description="Optional sub-stream for detection (RTSP).")
    loop: bool = Field(True, description="Loop a file source.")
    open_timeout_s: float = Field(
        15.0, gt=0, le=120,
        description="How long opening an RTSP (or other network) source may take: connecting, the camera's answers "
                    "to DESCRIBE/SETUP, the first packets. Some cameras need several seconds.")
    ffmpeg_options: dict[str, str] = Field(
        default_factory=dict,
        description="FFmpeg demuxer and protocol options for this camera's streams (source and detect_source), "
                    "named without the dash (`ffmpeg -h demuxer=rtsp` lists the RTSP ones), e.g. "
                    "{rtsp_transport: udp} for a camera that cannot send RTSP over TCP. They override the hub's own "
                    "(rtsp_transport: tcp; timeout, the socket timeout in µs, from open_timeout_s). FFmpeg ignores "
                    "an option it does not know, and ffmpeg's command-line flags (-hwaccel, -re) are not options "
                    "here. Quote a value to keep it as written (YAML reads 1:30 as a number).")

    @field_validator("ffmpeg_options", mode="before")
    @classmethod
    def _option_values_as_text(cls, value: Any) -> Any:
        """YAML numbers and booleans as FFmpeg reads them (``buffer_size: 1048576``, ``listen: true``)."""
        if value is None:
            return {}  # `ffmpeg_options:` left empty
        if not isinstance(value, dict):
            return value
        return {k: ("1" if v else "0") if isinstance(v, bool) else str(v) if isinstance(v, int | float) else v
                for k, v in value.items()}

    @field_validator("ffmpeg_options")
    @classmethod
    def _option_names(cls, value: dict[str, str]) -> dict[str, str]:
        bad = [k for k in value if not re.fullmatch(r"[a-z][a-z0-9_]*", k)]
        if bad:
            raise ValueError(f"not an FFmpeg option name: {bad[0]!r} (lowercase, digits and _, no leading dash)")
        return value


class MqttConfig(_Section):
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    # Anyone who may publish on the broker may arm, disarm and ask for snapshots: give the broker users
    # (mosquitto: allow_anonymous false) and, off this machine, TLS. `pingwatch doctor` warns otherwise.
    username: str | None = Field(None, description="Broker user (the hub's own account on the broker).")
    password: str | None = Field(None, description="Broker password (PINGWATCH_MQTT__PASSWORD keeps it out of files).")
    tls: bool = Field(False, description="Connect with TLS (port 8883 usually); needed when the broker is not local.")
    ca_file: Path | None = Field(None, description="CA that signed the broker's certificate (default: the system's); "
                                 "setting it turns TLS on.")
    cert_file: Path | None = Field(None, description="Client certificate (PEM) for brokers that ask for one "
                                   "(mosquitto: require_certificate true); setting it turns TLS on.")
    key_file: Path | None = Field(None, description="Private key of cert_file (PEM); null: the key is in cert_file.")
    disarm_code: str | None = Field(
        None, min_length=4, max_length=64,
        description="When set, a DISARM over MQTT must carry this code (Home Assistant asks for it: "
                    "code_disarm_required) and cameras cannot be switched off over MQTT.")
    discovery_prefix: str = "homeassistant"
    topic_prefix: str = "pingwatch"

    @model_validator(mode="after")
    def _key_needs_cert(self) -> MqttConfig:
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("mqtt.key_file is set without mqtt.cert_file (the client certificate it belongs to)")
        return self


class CloudConfig(_Section):
    enabled: bool = Field(True, description="Upload each finished event once the hub is linked to a cloud account "
                                            "('pingwatch cloud link'); without a link nothing is sent.")
    api_url: str | None = Field(None, description="The cloud API's base URL, used by 'pingwatch cloud link' "
                                                  "when --url is not given.")
    api_key: str | None = Field(None, description="Unused; kept so configs written by older versions still load. "
                                                  "The hub's token comes from 'pingwatch cloud link'.")
    upload_kbps: int = Field(0, ge=0, le=10_000_000, description="Bandwidth cap for uploads in kbit/s; 0: none.")
    retry_max_s: float = Field(600.0, gt=0, le=86_400, description="Longest wait between two tries of an upload.")
    report_starts: bool = Field(True, description="Once linked, tell the cloud the moment an event starts, with "
                                                  "the camera's snapshot (the first stage of the cloud's alert).")
    remote_control: bool = Field(True, description="Once linked, act on commands from the cloud account (arm, "
                                                   "disarm, snapshot: its page and Telegram bot).")
    heartbeat_s: float = Field(60.0, ge=5, le=3600, description="How often a linked hub reports its state (armed, "
                                                               "cameras online) when nothing changed.")
    commands_wait_s: int = Field(25, ge=1, le=25, description="How long each request for commands waits at the "
                                                              "cloud when there are none (a long poll).")


class LogConfig(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "text"] = Field("auto", description="auto: text on a terminal, JSON otherwise.")


class HubConfig(_Section):
    server: ServerConfig = ServerConfig()
    storage: StorageConfig = StorageConfig()
    ingest: IngestConfig = IngestConfig()
    motion: MotionSettings = MotionSettings()
    audio: AudioSettings = AudioSettings()
    events: EventsConfig = EventsConfig()
    arming: ArmingConfig = ArmingConfig()
    cameras: list[CameraConfig] = []
    mqtt: MqttConfig = MqttConfig()
    cloud: CloudConfig = CloudConfig()
    telegram: TelegramConfig = TelegramConfig()
    log: LogConfig = LogConfig()

    def resolve_paths(self, base: Path) -> HubConfig:
        """Relative paths in the file are relative to the file, not to wherever the hub was started."""
        if not self.storage.data_dir.is_absolute():
            self.storage.data_dir = (base / self.storage.data_dir).resolve()
        for key in ("ca_file", "cert_file", "key_file"):  # the broker's TLS files, like the data folder
            value: Path | None = getattr(self.mqtt, key)
            if value is not None and not value.expanduser().is_absolute():
                setattr(self.mqtt, key, (base / value.expanduser()).resolve())
        return self


_FORMAT = ConfigFormat(
    env_prefix=ENV_PREFIX, example="config/hub.example.yaml", missing_hint="run 'pingwatch init' to create one",
    sections="server:, storage:",
    # The cloud's own settings (PINGWATCH_CLOUD_SERVER__PORT, ...), not the hub's `cloud:` section.
    ignore_env=r"PINGWATCH_CLOUD_[A-Za-z]",
)


def load_config(path: Path | None, environ: dict[str, str] | None = None) -> HubConfig:
    """Load and validate ``path`` (None: defaults only). Raises ConfigError with one actionable line."""
    config = load_model(HubConfig, path, _FORMAT, environ)
    base = Path(path).resolve().parent if path is not None else Path.cwd()
    return config.resolve_paths(base)
