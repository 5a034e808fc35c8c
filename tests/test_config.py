from pathlib import Path

import pytest
import yaml

from hub.config import ConfigError, HubConfig, load_config

REPO = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "hub.yaml"
    p.write_text(text)
    return p


def test_example_documents_exactly_the_defaults():
    cfg = load_config(REPO / "config" / "hub.example.yaml", environ={})
    defaults = HubConfig()
    assert cfg.model_dump(exclude={"storage"}) == defaults.model_dump(exclude={"storage"})
    assert cfg.storage.data_dir == (REPO / "config" / "data").resolve()


def test_every_schema_key_is_documented_in_the_example():
    text = (REPO / "config" / "hub.example.yaml").read_text()

    def keys(model, prefix=""):
        for name, field in model.model_fields.items():
            ann = field.annotation
            if isinstance(ann, type) and hasattr(ann, "model_fields"):
                yield from keys(ann, prefix + name + ".")
            else:
                yield prefix + name

    example = yaml.safe_load(text)

    def documented(dotted: str) -> bool:  # the key at its own place in the example, not a same-named one elsewhere
        node = example
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                return False
            node = node[part]
        return True

    missing = [k for k in keys(HubConfig) if not documented(k)]
    assert missing == []


@pytest.mark.parametrize(
    "text, expected",
    [
        ("server:\n  https_port: 99999\n", "line 2: field 'server.https_port'"),
        ("server:\n  htps_port: 1\n", "line 2: unknown key 'server.htps_port'"),
        ("server: [\n", "invalid YAML"),
        ("events:\n  pre_roll_s: lots\n", "line 2: field 'events.pre_roll_s'"),
        ("cameras:\n  - id: Bad Id\n    source: x.mp4\n", "field 'cameras[0].id'"),
        ("- just\n- a list\n", "top level must be a mapping"),
        ("motion:\n  sensitivity: extreme\n", "field 'motion.sensitivity'"),
        ("cameras:\n  - id: gate\n    source: x.mp4\n    ffmpeg_options: {-rtsp_transport: udp}\n",
         "field 'cameras[0].ffmpeg_options'"),
        ("cameras:\n  - id: gate\n    source: x.mp4\n    ffmpeg_options: [rtsp_transport]\n",
         "field 'cameras[0].ffmpeg_options'"),
    ],
)
def test_bad_files_name_the_field_and_line(tmp_path, text, expected):
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, text), environ={})
    assert expected in str(exc.value)
    assert str(tmp_path / "hub.yaml") in str(exc.value)


def test_camera_ffmpeg_options_are_text_as_ffmpeg_reads_them(tmp_path):
    text = ("cameras:\n  - id: gate\n    source: rtsp://cam/1\n"
            "    ffmpeg_options: {rtsp_transport: udp, buffer_size: 1048576, max_delay: 0.5, prefer_tcp: true}\n")
    cam = load_config(write(tmp_path, text), environ={}).cameras[0]
    assert cam.ffmpeg_options == {"rtsp_transport": "udp", "buffer_size": "1048576", "max_delay": "0.5",
                                  "prefer_tcp": "1"}
    # left empty: none
    text = "cameras:\n  - id: gate\n    source: rtsp://cam/1\n    ffmpeg_options:\n"
    assert load_config(write(tmp_path, text), environ={}).cameras[0].ffmpeg_options == {}


def test_missing_file_says_how_to_create_one(tmp_path):
    with pytest.raises(ConfigError, match="pingwatch init"):
        load_config(tmp_path / "nope.yaml", environ={})


def test_environment_overrides_file(tmp_path):
    p = write(tmp_path, "server:\n  https_port: 9000\nmqtt:\n  enabled: false\n")
    cfg = load_config(p, environ={"PINGWATCH_SERVER__HTTPS_PORT": "9443", "PINGWATCH_MQTT__ENABLED": "true",
                                  "UNRELATED": "1"})
    assert cfg.server.https_port == 9443
    assert cfg.mqtt.enabled is True


def test_the_clouds_variables_are_not_the_hubs_cloud_section(tmp_path):
    """PINGWATCH_CLOUD_SERVER__PORT configures the cloud program (one host may run both); the hub's own `cloud:`
    section is PINGWATCH_CLOUD__<KEY>."""
    cfg = load_config(None, environ={"PINGWATCH_CLOUD_SERVER__PORT": "9100", "PINGWATCH_CLOUD__UPLOAD_KBPS": "64"})
    assert cfg.cloud.upload_kbps == 64


def test_bad_environment_value_names_the_field(tmp_path):
    with pytest.raises(ConfigError, match=r"server\.https_port"):
        load_config(None, environ={"PINGWATCH_SERVER__HTTPS_PORT": "http"})


def test_relative_data_dir_is_relative_to_the_file(tmp_path):
    p = write(tmp_path, "storage:\n  data_dir: ../d\n")
    assert load_config(p, environ={}).storage.data_dir == (tmp_path.parent / "d").resolve()


def test_relative_broker_tls_files_are_relative_to_the_config_file(tmp_path: Path):
    conf = tmp_path / "etc" / "hub.yaml"
    conf.parent.mkdir()
    conf.write_text("mqtt:\n  ca_file: certs/ca.pem\n  cert_file: /abs/client.pem\n  key_file: client.key\n")
    cfg = load_config(conf, environ={})
    assert cfg.mqtt.ca_file == (tmp_path / "etc" / "certs" / "ca.pem").resolve()
    assert cfg.mqtt.cert_file == Path("/abs/client.pem")
    assert cfg.mqtt.key_file == (tmp_path / "etc" / "client.key").resolve()


def test_retired_ingest_keys_load_with_a_warning_that_says_what_to_do(tmp_path: Path,
                                                                       caplog: pytest.LogCaptureFixture):
    conf = tmp_path / "hub.yaml"
    conf.write_text("ingest:\n  record_width: 1920\n  record_fps: 30\n  detect_fps: 4\n")
    with caplog.at_level("WARNING", logger="hub.config"):
        cfg = load_config(conf, environ={})
    assert cfg.ingest.detect_fps == 4 and not hasattr(cfg.ingest, "record_width")
    warned = [r.getMessage() for r in caplog.records if r.name == "hub.config"]
    assert any("ingest.record_width is no longer used" in m and "remove it" in m for m in warned), warned
    assert any("ingest.record_fps" in m for m in warned)


def test_the_hubs_event_defaults_are_the_engines():
    """The engine's defaults (what tests and replay use) and the hub's config defaults (what a hub runs with)
    must not drift: a returning visitor is caught at once in both (no cooldown)."""
    from hub.config import EventsConfig
    from hub.triggers.engine import EngineConfig

    events, engine = EventsConfig(), EngineConfig()
    assert (events.pre_roll_s, events.post_roll_s, events.max_length_s, events.cooldown_s, events.max_per_hour) == (
        engine.pre_roll_s, engine.post_roll_s, engine.max_length_s, engine.cooldown_s, engine.max_events_per_hour)
