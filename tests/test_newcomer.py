"""What a newcomer meets first: `--help`, `hub run`'s banner, `doctor`, event lengths, the setup scripts (issue 14)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
from pathlib import Path

import pytest

from hub.app import hub_urls
from hub.config import HubConfig
from hub.store import Store
from hub.tls import lan_address
from tests.hubproc import HubProcess, free_port
from tests.test_cli import REPO, pw


@pytest.mark.parametrize("args", [["--help"], ["hub", "run", "--help"], ["events", "list", "--help"],
                                  ["init", "--help"], ["events", "prune", "--help"]])
def test_help_shows_no_type_for_flags(tmp_path, args):
    text = pw(*args, cwd=tmp_path, check=True).stdout
    assert "--help" in text and "<bool>" not in text, text  # a flag takes no value: no type to show


def test_urls_name_the_address_the_hub_answers_on():
    def urls(**server: object) -> dict[str, str]:
        return hub_urls(HubConfig.model_validate({"server": {"https_port": 9443, **server}}))

    assert urls(host="127.0.0.1")["camera"] == "https://127.0.0.1:9443/cam/"  # not a LAN address it never answers
    assert urls(host="192.168.5.7")["ui"] == "https://192.168.5.7:9443/"  # the one address it binds
    assert urls(host="0.0.0.0")["base"] == f"https://{lan_address()}:9443"
    assert urls(host="::1")["base"] == "https://[::1]:9443"
    assert urls(host="127.0.0.1", public_host="hub.home.arpa")["base"] == "https://hub.home.arpa:9443"


def test_hub_on_loopback_says_phones_cannot_reach_it(tmp_path):
    hub = HubProcess.create(tmp_path / "hub", server={"public_host": None}).start()
    try:
        banner = hub.wait_for_log("Phones open:")
        assert f"https://127.0.0.1:{hub.https_port}/cam/" in banner
        warning = hub.wait_for_log("warning: server.host is 127.0.0.1")
        assert "no phone can pair" in warning and "server.host: 0.0.0.0" in warning
    finally:
        hub.stop()


def _doctor(tmp_path: Path, host: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "hub.yaml").write_text(
        f"server:\n  host: {host}\n  https_port: {free_port()}\n  http_port: null\nstorage:\n  data_dir: data\n")
    pw("init", "-c", "hub.yaml", "--json", cwd=tmp_path, check=True)
    return pw("doctor", "-c", "hub.yaml", cwd=tmp_path, env={"COLUMNS": "80"})


def test_doctor_prints_the_whole_fingerprint_and_warns_on_loopback(tmp_path):
    import json

    from hub.tls import cert_info

    r = _doctor(tmp_path, "127.0.0.1")
    fingerprint = cert_info(tmp_path / "data" / "tls" / "cert.pem").fingerprint_sha256
    assert len(fingerprint) == 95
    # whole, on one line, on an 80-column terminal: the docs tell users to compare it with the browser's
    assert any(fingerprint in line for line in r.stdout.splitlines()), r.stdout
    # rich's emoji codes made ":CD:" a compact disc; `init` prints it too
    assert any(fingerprint in line for line in pw("init", "-c", "hub.yaml", cwd=tmp_path).stdout.splitlines())
    checks = {c["name"]: c for c in json.loads(pw("doctor", "-c", "hub.yaml", "--json", cwd=tmp_path).stdout)["checks"]}
    assert fingerprint in checks["certificate"]["detail"]
    reach = checks["phone access"]
    assert reach["ok"] is False and reach["required"] is False and "server.host" in reach["detail"]
    (tmp_path / "hub.yaml").write_text((tmp_path / "hub.yaml").read_text().replace("127.0.0.1", "0.0.0.0"))
    ok = {c["name"]: c for c in json.loads(pw("doctor", "-c", "hub.yaml", "--json", cwd=tmp_path).stdout)["checks"]}
    assert ok["phone access"]["ok"] is True


def test_event_length_is_end_minus_start_in_the_cli(tmp_path):
    """The CLI and the web UI (tests/test_web_ui.py) agree: length = end - start; the clip is longer (pre-roll)."""
    pw("init", "-c", "hub.yaml", "--json", cwd=tmp_path, check=True)
    store = Store(tmp_path / "data" / "hub.db")
    start = time.time() - 100
    eid = store.insert_event({"camera_id": "porch", "status": "complete", "start": start, "end": start + 8.0,
                              "clip_duration_s": 13.0, "triggers": ["motion"]})
    store.close()
    listed = pw("events", "list", "-c", "hub.yaml", cwd=tmp_path, check=True).stdout
    row = next(line for line in listed.splitlines() if eid in line)
    assert "8.0s" in row and "13.0" not in row
    shown = pw("events", "show", eid, "-c", "hub.yaml", cwd=tmp_path, check=True).stdout.splitlines()
    assert any(line.split()[:2] == ["length", "8.0s"] for line in shown), shown
    assert any(line.split()[:2] == ["clip_duration_s", "13.0"] for line in shown), shown


def _fake_repo(tmp_path: Path) -> tuple[Path, Path]:
    """scripts/_venv.sh in a repo of its own whose .venv python only records how pip was called."""
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    (repo / "scripts" / "_venv.sh").write_text((REPO / "scripts" / "_venv.sh").read_text())
    (repo / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    calls = tmp_path / "pip-calls"
    python = repo / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(f'#!/bin/sh\necho "$*" >> {calls}\n')
    python.chmod(0o755)
    return repo, calls


def _ensure(repo: Path, extras: str) -> None:
    subprocess.run(["bash", "-c", f". scripts/_venv.sh && ensure_venv {extras}"], cwd=repo, check=True,
                   capture_output=True, text=True, env={**os.environ, "PATH": "/usr/bin:/bin"})


def test_setup_scripts_run_pip_once_between_them(tmp_path):
    """scripts/test (hub,cloud,worker,dev), then scripts/run-hub (hub), then scripts/run-cloud (cloud): pip once."""
    repo, calls = _fake_repo(tmp_path)
    _ensure(repo, "hub,cloud,worker,dev")
    installs = [c for c in calls.read_text().splitlines() if "-e" in c]
    assert len(installs) == 1 and installs[0].endswith("[cloud,dev,hub,worker]"), installs
    _ensure(repo, "hub")
    _ensure(repo, "cloud")
    assert [c for c in calls.read_text().splitlines() if "-e" in c] == installs
    # run-hub first on a fresh clone, then scripts/test: one more install, keeping hub's extras
    calls.unlink()
    (repo / ".venv" / ".pingwatch-installed").unlink()
    _ensure(repo, "hub")
    _ensure(repo, "hub,cloud,worker,dev")
    _ensure(repo, "hub")
    installs = [c for c in calls.read_text().splitlines() if "-e" in c]
    assert [i.rsplit("[", 1)[1] for i in installs] == ["hub]", "cloud,dev,hub,worker]"], installs
    stamp = (repo / ".venv" / ".pingwatch-installed").read_text().split()
    assert stamp == ["cloud,dev,hub,worker", hashlib.sha256((repo / "pyproject.toml").read_bytes()).hexdigest()[:16]]
