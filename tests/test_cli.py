"""The `pingwatch` command as a user types it."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.hubproc import HubProcess, free_port

REPO = Path(__file__).resolve().parent.parent


def pw(*args: str, cwd: Path, check: bool = False,
       env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([sys.executable, "-m", "hub.cli", *args], cwd=cwd, capture_output=True, text=True,
                       timeout=60, env={"PATH": "/usr/bin:/bin", "HOME": str(cwd), "COLUMNS": "200", **(env or {})})
    if check:
        assert r.returncode == 0, r.stderr
    return r


def test_init_writes_config_certificate_and_secret(tmp_path):
    r = pw("init", "--config", "conf/hub.yaml", "--json", cwd=tmp_path, check=True)
    info = json.loads(r.stdout)
    assert (tmp_path / "conf" / "hub.yaml").exists()
    assert Path(info["data_dir"]) == (tmp_path / "data").resolve()
    assert Path(info["certificate"]).exists()
    assert len(info["admin_secret"]) >= 20
    # a second init keeps what exists: phones trust the certificate, the user knows the secret
    again = json.loads(pw("init", "--config", "conf/hub.yaml", "--json", cwd=tmp_path, check=True).stdout)
    assert again["config_existed"] is True
    assert again["admin_secret"] == info["admin_secret"] and again["cert_sha256"] == info["cert_sha256"]


def test_config_validate_reports_field_and_exit_code(tmp_path):
    (tmp_path / "hub.yaml").write_text("server:\n  https_port: nope\n")
    r = pw("config", "validate", "-c", "hub.yaml", cwd=tmp_path)
    assert r.returncode == 2
    assert "line 2" in r.stderr and "server.https_port" in r.stderr
    (tmp_path / "ok.yaml").write_text("server:\n  https_port: 9443\n")
    ok = pw("config", "validate", "-c", "ok.yaml", "--json", cwd=tmp_path, check=True)
    assert json.loads(ok.stdout)["server"]["https_port"] == 9443


def test_unwritable_data_dir_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    (tmp_path / "hub.yaml").write_text(f"storage:\n  data_dir: {blocker}/data\n")
    r = pw("init", "-c", "hub.yaml", cwd=tmp_path)
    assert r.returncode == 2
    assert "cannot create" in r.stderr and "storage.data_dir" in r.stderr


def test_doctor_table_and_json(tmp_path):
    port = free_port()
    (tmp_path / "hub.yaml").write_text(
        f"server:\n  https_port: {port}\n  http_port: null\nmqtt:\n  enabled: true\n  port: {free_port()}\n")
    r = pw("doctor", "-c", "hub.yaml", "--json", cwd=tmp_path)
    report = json.loads(r.stdout)
    names = {c["name"]: c for c in report["checks"]}
    assert {"python", "config", "aiortc", "av", "https port", "disk space", "mqtt broker"} <= names.keys()
    assert names["https port"]["ok"] is True
    # the broker is configured but nothing listens there: unhealthy, exit 1
    assert names["mqtt broker"]["ok"] is False and "unreachable" in names["mqtt broker"]["detail"]
    assert report["healthy"] is False and r.returncode == 1
    table = pw("doctor", "-c", "hub.yaml", cwd=tmp_path)
    assert "mqtt broker" in table.stdout and "FAIL" in table.stdout


def test_pair_and_revoke_talk_to_the_running_hub(tmp_path):
    hub = HubProcess.create(tmp_path / "hub").start()
    try:
        r = pw("pair", "-c", str(hub.config_path), "--json", cwd=tmp_path, check=True)
        code = json.loads(r.stdout)
        assert len(code["code"]) == 8 and code["url"].endswith(f"#code={code['code']}")
        human = pw("pair", "-c", str(hub.config_path), cwd=tmp_path, check=True)
        assert "/cam/" in human.stdout  # the page's URL
        assert "█" in human.stdout or "▀" in human.stdout or "▄" in human.stdout  # and the QR code
        missing = pw("cameras", "revoke", "cam-nope", "-c", str(hub.config_path), cwd=tmp_path)
        assert missing.returncode == 1 and "no active camera" in missing.stderr
    finally:
        hub.stop()
    down = pw("pair", "-c", str(hub.config_path), cwd=tmp_path)
    assert down.returncode == 1 and "pingwatch hub run" in down.stderr


def test_cameras_list_works_with_the_hub_stopped(tmp_path):
    from hub.store import Store

    pw("init", "-c", "hub.yaml", "--json", cwd=tmp_path, check=True)
    store = Store(tmp_path / "data" / "hub.db")
    code, _ = store.new_pairing_code()
    store.redeem_pairing_code(code, "Porch")
    store.close()
    r = pw("cameras", "list", "-c", "hub.yaml", "--json", cwd=tmp_path, check=True)
    cams = json.loads(r.stdout)
    assert [c["name"] for c in cams] == ["Porch"] and cams[0]["online"] is False


@pytest.mark.parametrize("args", [["--help"], ["hub", "run", "--help"], ["cameras", "--help"]])
def test_help_is_available(tmp_path, args):
    assert pw(*args, cwd=tmp_path, check=True).stdout.strip()
