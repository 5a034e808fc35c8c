"""Slowloris and connection floods against a real hub process (issue 10, item 3): connections that trickle their
headers or never finish the TLS handshake are closed, one address cannot hold more than its share, and a client
that behaves is served meanwhile."""

from __future__ import annotations

import asyncio
import socket
import ssl

import httpx
import pytest

from tests.hubproc import HubProcess

HEADER_TIMEOUT_S = 1.0
PER_CLIENT = 6
EOF_WAIT_S = 30.0  # a safety net only: each wait ends when the hub closes the connection


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> HubProcess:
    h = HubProcess.create(tmp_path_factory.mktemp("limits"),
                          server={"header_timeout_s": HEADER_TIMEOUT_S, "max_connections_per_client": PER_CLIENT})
    try:
        h.start()
        yield h
    finally:
        h.stop()


async def _closed_by_server(reader: asyncio.StreamReader) -> bool:
    """True once the hub closed the connection (EOF or reset), however long that takes up to the safety net."""
    try:
        while await asyncio.wait_for(reader.read(4096), EOF_WAIT_S):
            pass
    except (ConnectionResetError, BrokenPipeError):
        pass
    return True


async def test_trickled_headers_are_cut_off_on_both_ports(hub: HubProcess) -> None:
    conns = []
    for port in (hub.http_port, hub.https_port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        if port == hub.https_port:
            writer.write(b"\x16\x03\x01")  # the first bytes of a TLS ClientHello, and then nothing
        else:
            writer.write(b"GET /api/health HTTP/1.1\r\nHost: x\r\n")  # no blank line: the headers never end
        await writer.drain()
        conns.append((reader, writer))
    try:
        for reader, _ in conns:
            assert await _closed_by_server(reader)
        # A client that sends its request at once is served as before.
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"{hub.http}/api/health")).status_code == 200
    finally:
        for _, writer in conns:
            writer.close()


async def test_headers_that_arrive_in_pieces_in_time_are_served(hub: HubProcess) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", hub.http_port)
    try:
        for part in (b"GET /api/health HTTP/1.1\r\n", b"Host: 127.0.0.1\r\nConnection: close\r", b"\n\r\n"):
            writer.write(part)
            await writer.drain()
        answer = await asyncio.wait_for(reader.read(), EOF_WAIT_S)
        assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    finally:
        writer.close()


async def test_one_address_cannot_hold_more_than_its_share(hub: HubProcess) -> None:
    held = []
    for _ in range(PER_CLIENT):
        s = socket.create_connection(("127.0.0.1", hub.http_port))
        s.sendall(b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n")  # complete requests: kept alive, not slow
        s.settimeout(EOF_WAIT_S)
        assert s.recv(12).startswith(b"HTTP/1.1 200")
        held.append(s)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", hub.http_port)
        writer.write(b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        assert await _closed_by_server(reader)  # refused: no answer, closed
        writer.close()
    finally:
        for s in held:
            s.close()
    # Once they are gone the address is served again (the count follows closed connections).
    await hub_answers(hub)


async def hub_answers(hub: HubProcess) -> None:
    ctx = ssl.create_default_context(cafile=str(hub.cert_path))
    async with httpx.AsyncClient(verify=ctx) as client:
        for _ in range(50):
            try:
                if (await client.get(f"{hub.https}/api/health")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass  # still refused: the hub has not yet seen every closed socket
            # Polling another process: the closed sockets reach the hub as FINs, with nothing to await here.
            await asyncio.sleep(0.1)
    raise AssertionError("the hub did not serve the address again")


def test_the_limits_are_logged(hub: HubProcess) -> None:
    messages = [entry.get("message") or entry.get("msg") for entry in hub.logs()]
    assert any(m and "request headers too slow" in m for m in messages), messages[-20:]
