"""The hub as users run it: a real process, HTTPS with its own certificate, clean SIGTERM."""

import ssl
import stat

import httpx
import pytest

from tests.hubproc import HubProcess


@pytest.fixture
def hub(tmp_path):
    h = HubProcess.create(tmp_path / "hub").start()
    yield h
    h.kill()


def test_health_over_https_with_its_own_certificate(hub):
    ctx = ssl.create_default_context(cafile=str(hub.cert_path))
    r = httpx.get(f"{hub.https}/api/health", verify=ctx)
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok" and body["db"] == "ok"
    assert "cameras" not in body  # not for anyone on the LAN (issue 10, item 9); the admin token gets it
    admin = {"Authorization": f"Bearer {hub.admin_secret}"}
    health = httpx.get(f"{hub.https}/api/health", verify=ctx, headers=admin).json()
    assert health["cameras"] == {"total": 0, "online": 0}
    # plain HTTP is for loopback only, and is served there
    assert httpx.get(f"{hub.http}/api/health").json()["status"] == "ok"


def test_untrusted_clients_are_refused_tls(hub):
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{hub.https}/api/health")


def test_secrets_and_key_are_private(hub):
    for p in (hub.data_dir / "secrets.json", hub.data_dir / "tls" / "key.pem"):
        assert stat.S_IMODE(p.stat().st_mode) == 0o600


def test_sigterm_shuts_down_cleanly_and_logs_json(hub):
    assert hub.stop() == 0
    logs = hub.logs()
    assert logs, "the hub logs JSON lines when not on a terminal"
    msgs = [entry["msg"] for entry in logs]
    assert "hub started" in msgs and "shutting down" in msgs and msgs[-1] == "hub stopped"
    assert all({"ts", "level", "logger", "msg"} <= entry.keys() for entry in logs)


def test_second_hub_on_the_same_port_fails_with_a_clear_message(hub, tmp_path):
    other = HubProcess.create(tmp_path / "other", server={"https_port": hub.https_port})
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "hub", "--config", str(other.config_path), "--no-pair"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "cannot listen on" in r.stderr and "server.https_port" in r.stderr
