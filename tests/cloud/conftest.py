"""Fixtures for the cloud API tests: the API in-process on 127.0.0.1 (a real aiohttp site on a free port) against
the real Azurite and a real database, parametrised over SQLite and PostgreSQL.

- ``cloud_db_url`` (session, params sqlite/postgres): a migrated database; tenants are separated by accounts,
  so the tests share it.
- ``api_factory`` (function): ``await api_factory(**config_overrides)`` -> a running ``CloudApi`` with its own
  queue name (message counts are per test) and its own clock; all are stopped at teardown.
- ``api``: one default ``CloudApi``.
- ``mp4_clip`` / ``webm_clip`` (session): real short clips made with PyAV, with their MD5 and duration.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import av
import httpx
import numpy as np
import pytest
import pytest_asyncio
from aiohttp import web

from cloud.api.app import Services, build_app
from cloud.api.db import migrate
from cloud.api.db.engine import make_engine
from cloud.config import CloudConfig
from tests.harness.azurite import Azurite

PASSWORD = "correct horse battery"


# -- media ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Clip:
    data: bytes
    mime: str
    duration_s: float

    @property
    def md5(self) -> str:
        return base64.b64encode(hashlib.md5(self.data).digest()).decode()

    @property
    def md5_raw(self) -> bytes:
        return hashlib.md5(self.data).digest()


def make_clip(path: Path, fmt: str, codec: str, seconds: float, fps: int = 10,
              size: tuple[int, int] = (64, 48)) -> Clip:
    opts = {"movflags": "+faststart"} if fmt == "mp4" else {}
    w, h = size
    with av.open(str(path), "w", format=fmt, options=opts) as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for i in range(int(seconds * fps)):
            frame = av.VideoFrame.from_ndarray(np.full((h, w, 3), (i * 9) % 255, np.uint8), format="rgb24")
            frame.pts = i
            for p in stream.encode(frame):
                out.mux(p)
        for p in stream.encode():
            out.mux(p)
    with av.open(str(path)) as inp:
        duration = float(inp.duration or 0) / av.time_base
    return Clip(path.read_bytes(), "video/mp4" if fmt == "mp4" else "video/webm", duration)


@pytest.fixture(scope="session")
def mp4_clip(tmp_path_factory: pytest.TempPathFactory) -> Clip:
    return make_clip(tmp_path_factory.mktemp("clips") / "c.mp4", "mp4", "libx264", seconds=3)


@pytest.fixture(scope="session")
def long_mp4_clip(tmp_path_factory: pytest.TempPathFactory) -> Clip:
    """12 s: over a 10 s plan limit, and 2 credits."""
    return make_clip(tmp_path_factory.mktemp("clips") / "long.mp4", "mp4", "libx264", seconds=12, fps=5)


@pytest.fixture(scope="session")
def webm_clip(tmp_path_factory: pytest.TempPathFactory) -> Clip:
    return make_clip(tmp_path_factory.mktemp("clips") / "c.webm", "webm", "libvpx", seconds=2)


# -- database ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def cloud_db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('clouddb') / 'cloud.db'}"
    else:
        pg = request.getfixturevalue("postgres")
        url = pg.create_database(f"cloud_api_{uuid.uuid4().hex[:10]}")
    engine = make_engine(url)
    try:
        migrate.upgrade(engine)
    finally:
        engine.dispose()
    return url


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def cloud_config(db_url: str, azurite: Azurite, **overrides: Any) -> CloudConfig:
    """A config for tests: cheap argon2, the scheduler's jobs off (tests run them directly), a fresh queue."""
    data: dict[str, Any] = {
        "database": {"url": db_url},
        "storage": {"connection_string": azurite.connection_string, "container": "clips",
                    "queue": f"ev-{uuid.uuid4().hex[:12]}"},
        "auth": {"argon2_time_cost": 1, "argon2_memory_kib": 64},
        # Each test API's client sends its own X-Forwarded-For, so per-source log-in limits do not add up
        # across the tests that share one database.
        "server": {"trust_forwarded_for": True},
        "reconciler": {"enabled": False},
        "retention": {"enabled": False},
    }
    return CloudConfig.model_validate(_merge(data, overrides))




# -- the running API -----------------------------------------------------------------------------------------


class Clock:
    """The API's clock, movable by tests (token expiry, the month's grant). Storage keeps real time."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, **kwargs: float) -> None:
        self.offset += timedelta(**kwargs)


@dataclass
class UserSession:
    account_id: str
    email: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class HubSession:
    hub_id: str
    token: str
    user: UserSession
    cameras: dict[str, str] = field(default_factory=dict)  # hub camera id -> cloud camera id

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class CloudApi:
    services: Services
    runner: web.AppRunner
    base_url: str
    http: httpx.AsyncClient
    clock: Clock
    source: str
    _n: int = 0

    @property
    def config(self) -> CloudConfig:
        return self.services.ctx.config

    async def close(self) -> None:
        await self.http.aclose()
        await self.runner.cleanup()
        await self.services.close()

    async def account(self, plan: str | None = None) -> UserSession:
        email = f"user-{uuid.uuid4().hex[:12]}@example.com"
        account_id = await self.services.accounts.create(email, PASSWORD, plan)
        r = await self.http.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
        assert r.status_code == 200, r.text
        return UserSession(account_id, email, r.json()["token"])

    async def hub(self, user: UserSession | None = None, cameras: tuple[str, ...] = ("front",),
                  plan: str | None = None) -> HubSession:
        """A hub linked to ``user`` (a new account when None) through the real link flow, cameras mirrored."""
        user = user or await self.account(plan)
        r = await self.http.post("/api/v1/hub-links", json={"hub_name": "pi"})
        assert r.status_code == 201, r.text
        link = r.json()
        r = await self.http.post("/api/v1/hubs/link", json={"code": link["code"], "name": "Home"},
                                 headers=user.headers)
        assert r.status_code == 201, r.text
        r = await self.http.post("/api/v1/hub-links/claim", json={"poll_token": link["poll_token"]})
        assert r.status_code == 200 and r.json()["status"] == "linked", r.text
        hub = HubSession(r.json()["hub_id"], r.json()["hub_token"], user)
        r = await self.http.put("/api/v1/hub/cameras", headers=hub.headers,
                                json={"cameras": [{"id": c, "name": c.title()} for c in cameras]})
        assert r.status_code == 200, r.text
        hub.cameras = {c["hub_camera_id"]: c["id"] for c in r.json()["cameras"]}
        return hub

    def event_body(self, clip: Clip, **overrides: Any) -> dict[str, Any]:
        self._n += 1
        start = datetime(2026, 12, 1, 10, 0, tzinfo=UTC) + timedelta(minutes=self._n)
        body = {
            "event_id": f"ev-{uuid.uuid4().hex[:10]}", "camera_id": "front",
            "started_at": start.isoformat(), "ended_at": (start + timedelta(seconds=clip.duration_s)).isoformat(),
            "trigger": "motion", "mime": clip.mime, "size": len(clip.data), "md5": clip.md5,
            "duration_s": round(clip.duration_s, 3),
        }
        body.update(overrides)
        return body

    async def initiate(self, hub: HubSession, clip: Clip, **overrides: Any) -> httpx.Response:
        return await self.http.post("/api/v1/events", json=self.event_body(clip, **overrides), headers=hub.headers)

    async def uploaded_event(self, hub: HubSession, clip: Clip, **overrides: Any) -> dict[str, Any]:
        """initiate + a real upload to the SAS; returns the initiate answer (finalize is the test's)."""
        r = await self.initiate(hub, clip, **overrides)
        assert r.status_code == 201, r.text
        await upload(r.json()["upload_url"], clip.data, clip.mime)
        return r.json()

    async def finalize(self, hub: HubSession, event_id: str) -> httpx.Response:
        """Finalize, then wait for the queue message that finalize sends after answering."""
        r = await self.http.post(f"/api/v1/events/{event_id}/finalize", headers=hub.headers)
        await self.services.enqueuer.settle()
        return r


async def upload(url: str, data: bytes, mime: str, md5: bytes | None = None) -> None:
    """What a hub does: upload to the SAS URL with the SDK, create-only, with the whole file's Content-MD5."""
    from azure.storage.blob import ContentSettings
    from azure.storage.blob.aio import BlobClient

    from cloud.storage.blob import API_VERSION

    client = BlobClient.from_blob_url(url, api_version=API_VERSION)
    try:
        await client.upload_blob(
            data, overwrite=False, validate_content=True,
            content_settings=ContentSettings(content_type=mime, content_md5=md5 or hashlib.md5(data).digest()),
        )
    finally:
        await client.close()


ApiFactory = Callable[..., Awaitable[CloudApi]]


async def start_api(config: CloudConfig, **services_kwargs: Any) -> CloudApi:
    clock = services_kwargs.pop("clock", None) or Clock()
    services = Services.build(config, clock=clock, **services_kwargs)
    await services.start()
    app = build_app(services, with_jobs=False)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    base = f"http://127.0.0.1:{port}"
    source = f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250 + 1}"
    http = httpx.AsyncClient(base_url=base, timeout=30, headers={"X-Forwarded-For": source})
    return CloudApi(services, runner, base, http, clock, source)


@pytest_asyncio.fixture
async def api_factory(cloud_db_url: str, azurite: Azurite) -> AsyncIterator[ApiFactory]:
    made: list[CloudApi] = []

    async def make(**overrides: Any) -> CloudApi:
        services_kwargs = overrides.pop("services_kwargs", {})
        api = await start_api(cloud_config(cloud_db_url, azurite, **overrides), **services_kwargs)
        made.append(api)
        return api

    try:
        yield make
    finally:
        for api in made:
            await api.close()


@pytest_asyncio.fixture
async def api(api_factory: ApiFactory) -> CloudApi:
    return await api_factory()
