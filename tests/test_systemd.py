import configparser
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
UNIT = REPO / "systemd" / "pingwatch-hub.service"


def test_unit_has_hardening_and_restart():
    cp = configparser.ConfigParser(strict=False, interpolation=None)
    cp.optionxform = str
    cp.read(UNIT)
    svc = cp["Service"]
    assert svc["Restart"] == "on-failure"
    assert svc["User"] == "pingwatch"
    assert svc["ProtectSystem"] == "strict" and svc["NoNewPrivileges"] == "yes" and svc["PrivateTmp"] == "yes"
    assert svc["ReadWritePaths"] == "@DATA@"
    assert "-m hub --config" in svc["ExecStart"]
    assert "mosquitto.service" in cp["Unit"]["After"]


def test_systemd_analyze_accepts_the_installed_form(tmp_path):
    analyze = shutil.which("systemd-analyze")
    assert analyze is not None, "systemd-analyze not found; scripts/install-test-deps installs it (Debian: systemd)"
    text = UNIT.read_text().replace("@REPO@", str(REPO)).replace("@CONFIG@", str(tmp_path / "hub.yaml"))
    text = text.replace("@DATA@", str(tmp_path))
    text = text.replace("User=pingwatch", "User=root").replace("Group=pingwatch", "Group=root")
    assert "@" not in text.replace("@.service", ""), "a placeholder was left unreplaced"
    unit = tmp_path / "pingwatch-hub.service"
    unit.write_text(text)
    r = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    problems = [ln for ln in r.stderr.splitlines() if str(unit.name) in ln or "pingwatch" in ln]
    assert not problems, r.stderr
