"""Pairing codes live exactly their lifetime: accepted until the ``expires_at`` the hub hands out, refused after.

The real hub runs in this process (``build_hub`` + ``serve``: HTTPS, real routes and database); minutes pass in
a moment through the store's clock (``hub.store._now``, the one function every row's time comes from).
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

import hub.store
from hub.app import HubRuntime, build_hub, serve
from hub.config import HubConfig
from hub.store import PAIRING_CODE_TTL_S
from tests.harness.ports import HOST, free_ports
from tests.test_web_sessions import Clock


@pytest_asyncio.fixture
async def live(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[HubRuntime, Clock]]:
    clock = Clock()
    monkeypatch.setattr(hub.store, "_now", clock)
    https_port, http_port = free_ports(2)
    runtime = build_hub(HubConfig.model_validate({
        "server": {"host": HOST, "https_port": https_port, "http_port": http_port, "public_host": HOST},
        "storage": {"data_dir": str(tmp_path / "data")}}))
    runner = await serve(runtime)
    try:
        yield runtime, clock
    finally:
        await runner.cleanup()


def _client(runtime: HubRuntime) -> httpx.AsyncClient:
    port = runtime.config.server.https_port
    ctx = ssl.create_default_context(cafile=str(runtime.data.cert_path))
    secret = runtime.data.load_secrets(create=False)["admin_secret"]
    return httpx.AsyncClient(base_url=f"https://{HOST}:{port}", verify=ctx, timeout=10,
                             headers={"Authorization": f"Bearer {secret}"})


# Both ways to make a code: the CLI's admin route and the web UI's (both answer {"code", "expires_at", ...}).
MAKERS = ["/api/admin/pairing-codes", "/api/ui/pairing"]


@pytest.mark.parametrize("maker", MAKERS)
async def test_a_code_works_until_its_expiry_and_not_a_second_after(live, maker: str) -> None:
    runtime, clock = live
    assert PAIRING_CODE_TTL_S == 600  # what the start-up banner promises: "pairing code (10 min)"
    async with _client(runtime) as c:
        made = []
        for _ in range(2):
            r = await c.post(maker)
            assert r.status_code in (200, 201), r.text
            made.append(r.json())
        t0 = clock.now
        assert [m["expires_at"] for m in made] == [t0 + PAIRING_CODE_TTL_S] * 2

        clock.now = made[0]["expires_at"] - 1  # a second left: the phone pairs
        paired = await c.post("/api/pair", json={"code": made[0]["code"], "name": "Late but in time"})
        assert paired.status_code == 201, paired.text
        me = await c.get("/api/camera", headers={"Authorization": f"Bearer {paired.json()['token']}"})
        assert me.status_code == 200 and me.json()["name"] == "Late but in time"

        clock.now = made[1]["expires_at"] + 1  # a second too late: refused, and no camera is made
        before = (await c.get("/api/admin/cameras")).json()["cameras"]
        late = await c.post("/api/pair", json={"code": made[1]["code"], "name": "Too late"})
        assert late.status_code == 403 and "expired" in late.json()["error"], late.text
        assert (await c.get("/api/admin/cameras")).json()["cameras"] == before


async def test_a_code_made_later_gets_a_lifetime_of_its_own(live) -> None:
    """The lifetime counts from when each code is made, not from the hub's start or the first code."""
    runtime, clock = live
    async with _client(runtime) as c:
        first = (await c.post(MAKERS[0])).json()
        clock.advance(PAIRING_CODE_TTL_S * 3)
        second = (await c.post(MAKERS[0])).json()
        assert second["expires_at"] == clock.now + PAIRING_CODE_TTL_S
        clock.advance(PAIRING_CODE_TTL_S - 1)
        assert (await c.post("/api/pair", json={"code": first["code"], "name": "old"})).status_code == 403
        assert (await c.post("/api/pair", json={"code": second["code"], "name": "new"})).status_code == 201
