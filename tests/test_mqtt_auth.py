"""The MQTT bridge against a real Mosquitto that takes only its accounts, over plain TCP and TLS (issue 15).

The brokers come from the harness (tests/harness/mosquitto.py: a password file made with ``mosquitto_passwd``, a
TLS listener whose CA and certificates ``make_pki`` generates here); the hub's side is the real one (store, arm
state, controller, camera manager from ``build_hub``). A refused log-in or TLS handshake must say so, keep
retrying, and never take the hub down.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from pydantic import ValidationError

from hub.config import HubConfig
from mqtt.bridge import MqttBridge
from tests.harness.mosquitto import Mosquitto, Pki, TlsListener, make_pki, start_mosquitto
from tests.test_mqtt import TIMEOUT, FakeHA, make_bridge, make_hub

ACCOUNTS = {"hub": "hub-secret-1", "ha": "ha-secret-2"}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def broker(pki: Pki) -> Iterator[Mosquitto]:
    """Accounts only (no anonymous clients), a plain listener and a TLS one."""
    b = start_mosquitto(passwords=ACCOUNTS, tls=TlsListener(pki))
    yield b
    b.stop()


@pytest.fixture(scope="module")
def mtls_broker(pki: Pki) -> Iterator[Mosquitto]:
    """A TLS listener that also wants a client certificate signed by the test CA."""
    b = start_mosquitto(passwords=ACCOUNTS, tls=TlsListener(pki, require_client_cert=True))
    yield b
    b.stop()


class Rig:
    def __init__(self, tmp: Path, port: int, **mqtt: Any) -> None:
        self.hub, self.control = make_hub(tmp, port, **mqtt)
        self.bridge: MqttBridge = make_bridge(self.hub, self.control)

    async def close(self) -> None:
        await self.bridge.stop()
        self.hub.store.close()


@pytest_asyncio.fixture
async def rigs(tmp_path: Path) -> AsyncIterator[list[Rig]]:
    made: list[Rig] = []
    yield made
    for rig in made:
        await rig.close()


def ha_client(broker: Mosquitto, rig: Rig, *, port: int | None = None, **tls: Any) -> FakeHA:
    t = rig.bridge.topics
    return FakeHA(broker.host, port or broker.port, [f"{t.discovery}/#", f"{t.prefix}/#"], username="ha",
                  password=ACCOUNTS["ha"], **tls)


async def assert_works_end_to_end(rig: Rig, ha: FakeHA) -> None:
    """Discovery and states reach HA; a command from HA reaches the real controller."""
    t = rig.bridge.topics
    await asyncio.wait_for(rig.bridge.connected.wait(), TIMEOUT)
    await ha.wait(t.hub_config_topic("testhub"))
    await ha.wait(t.status, "online")
    await ha.wait(t.armed_state, "armed_away")
    mark = ha.mark()
    await ha.publish(t.armed_command, "DISARM")
    await ha.wait(t.armed_state, "disarmed", after=mark)
    assert rig.control.is_armed() is False
    assert rig.bridge.status() | {"connections": 1} == {"connected": True, "connections": 1, "connect_failures": 0,
                                                       "last_error": None, "auth_refused": False}


async def next_failure(bridge: MqttBridge) -> None:
    bridge.connect_failed.clear()
    await asyncio.wait_for(bridge.connect_failed.wait(), TIMEOUT)


async def test_username_and_password(broker: Mosquitto, rigs: list[Rig], tmp_path: Path) -> None:
    rig = Rig(tmp_path, broker.port, username="hub", password=ACCOUNTS["hub"])
    rigs.append(rig)
    ha = await ha_client(broker, rig).start()
    try:
        await rig.bridge.start()
        await assert_works_end_to_end(rig, ha)
    finally:
        await ha.stop()


@pytest.mark.parametrize("account", [{"username": "hub", "password": "wrong-pw-73"}, {}], ids=["wrong-password",
                                                                                       "anonymous"])
async def test_refused_log_in_is_said_and_retried(broker: Mosquitto, rigs: list[Rig], tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture, account: dict[str, str]) -> None:
    caplog.set_level(logging.INFO, logger="mqtt.bridge")
    rig = Rig(tmp_path, broker.port, **account)
    rigs.append(rig)
    await rig.bridge.start()  # returns at once, as with a broker that is down
    await asyncio.wait_for(rig.bridge.connect_failed.wait(), TIMEOUT)
    await next_failure(rig.bridge)  # and tries again, with backoff
    await next_failure(rig.bridge)
    status = rig.bridge.status()
    assert status["connected"] is False and status["auth_refused"] is True
    assert status["connect_failures"] >= 3 and "authori" in (status["last_error"] or "").lower()
    refused = [r for r in caplog.records if r.levelno == logging.ERROR and "refused the hub's log-in" in r.message]
    assert refused, [r.message for r in caplog.records]
    assert "mqtt.password" in refused[0].message and getattr(refused[0], "username", None) == account.get("username")
    assert len(refused) == 1  # said once, not at every retry
    assert "wrong-pw-73" not in caplog.text  # the password never reaches the log
    assert not rig.bridge.connected.is_set()


async def test_tls_with_the_brokers_ca(broker: Mosquitto, pki: Pki, rigs: list[Rig], tmp_path: Path) -> None:
    assert broker.tls_port is not None
    rig = Rig(tmp_path, broker.tls_port, tls=True, ca_file=str(pki.ca), username="hub", password=ACCOUNTS["hub"])
    rigs.append(rig)
    ha = await ha_client(broker, rig, port=broker.tls_port, ca_file=pki.ca).start()
    try:
        await rig.bridge.start()
        await assert_works_end_to_end(rig, ha)
    finally:
        await ha.stop()


async def test_tls_to_a_broker_it_cannot_verify(broker: Mosquitto, pki: Pki, rigs: list[Rig], tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    """A CA that did not sign the broker's certificate: no connection (so no password sent), a clear reason,
    retries, no crash. The system's CAs (tls without ca_file) do not know the test CA either."""
    assert broker.tls_port is not None
    caplog.set_level(logging.INFO, logger="mqtt.bridge")
    for extra in ({"ca_file": str(pki.other_ca)}, {"tls": True}):
        rig = Rig(tmp_path / str(len(rigs)), broker.tls_port, username="hub", password=ACCOUNTS["hub"], **extra)
        rigs.append(rig)
        await rig.bridge.start()
        await asyncio.wait_for(rig.bridge.connect_failed.wait(), TIMEOUT)
        await next_failure(rig.bridge)
        status = rig.bridge.status()
        assert status["connected"] is False and status["auth_refused"] is False
        assert "CERTIFICATE_VERIFY_FAILED" in (status["last_error"] or ""), status
    assert [r for r in caplog.records if r.levelno == logging.ERROR and "TLS handshake failed" in r.message]


async def test_client_certificate(mtls_broker: Mosquitto, pki: Pki, rigs: list[Rig], tmp_path: Path) -> None:
    assert mtls_broker.tls_port is not None
    common = {"ca_file": str(pki.ca), "username": "hub", "password": ACCOUNTS["hub"]}
    # Without a client certificate the broker ends the handshake.
    bare = Rig(tmp_path / "bare", mtls_broker.tls_port, **common)
    rigs.append(bare)
    await bare.bridge.start()
    await asyncio.wait_for(bare.bridge.connect_failed.wait(), TIMEOUT)
    await next_failure(bare.bridge)  # retried
    assert not bare.bridge.connected.is_set()
    # The alert may be read or only the closed socket seen (timing): the same reason either way.
    assert (bare.bridge.status()["last_error"] or "").startswith("broker requires a client certificate"), \
        bare.bridge.status()

    rig = Rig(tmp_path / "cert", mtls_broker.tls_port, cert_file=str(pki.client_cert), key_file=str(pki.client_key),
              **common)
    rigs.append(rig)
    ha = await ha_client(mtls_broker, rig, port=mtls_broker.tls_port, ca_file=pki.ca, cert_file=pki.client_cert,
                         key_file=pki.client_key).start()
    try:
        await rig.bridge.start()
        await assert_works_end_to_end(rig, ha)
    finally:
        await ha.stop()


async def test_unreadable_tls_files_leave_the_hub_running(broker: Mosquitto, rigs: list[Rig], tmp_path: Path) -> None:
    rig = Rig(tmp_path, broker.port, ca_file=str(tmp_path / "missing-ca.pem"))
    rigs.append(rig)
    await rig.bridge.start()  # no exception: the hub starts without Home Assistant
    assert "TLS files" in (rig.bridge.status()["last_error"] or "")
    assert not rig.bridge.connected.is_set()


def test_key_file_needs_cert_file(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=r"key_file is set without mqtt\.cert_file"):
        HubConfig(mqtt={"key_file": str(tmp_path / "k.pem")})
    cfg = HubConfig(mqtt={"cert_file": str(tmp_path / "both.pem")})  # key inside the certificate file
    assert cfg.mqtt.cert_file == tmp_path / "both.pem" and cfg.mqtt.key_file is None
