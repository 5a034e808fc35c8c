"""Web UI sessions in time: their lifetime, the idle timeout, and the lock on wrong guesses growing with each one.

Days pass in a moment through the clock ``Auth`` and ``GuessLimiter`` take (``clock=``, wall time by default):
nothing here sleeps. The HTTP tests run the real hub in this process (``build_hub`` + ``serve``: HTTPS, the
guard, the real routes and database) with a test clock put into its auth and guess limiter.
"""

from __future__ import annotations

import contextlib
import ssl
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from hub.app import HubRuntime, build_hub, serve
from hub.config import HubConfig
from hub.store import Store
from hub.web.auth import (
    FREE_FAILURES,
    LIMITS_KEY,
    MAX_LOCK_S,
    SESSION_IDLE_S,
    SESSION_KEY,
    SESSION_TTL_S,
    Auth,
    GuessLimiter,
)
from tests.harness.ports import HOST, free_ports

DAY = 24 * 3600.0


class Clock:
    """Wall time that moves only when the test says so."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


def _rows(store: Store) -> int:
    return int(store.db.execute("SELECT count(*) FROM ui_sessions").fetchone()[0])


@pytest.fixture
def store(tmp_path: Path):
    s = Store(tmp_path / "hub.db")
    yield s
    s.close()


# -- sessions: lifetime and idle timeout (Auth with a test clock, real SQLite) -----------------------------------


def test_a_session_in_daily_use_still_ends_at_its_lifetime(store: Store) -> None:
    clock = Clock()
    auth = Auth(store, "secret", clock=clock)
    t0 = clock.now
    sid, sess = auth.create("ua", "127.0.0.1")
    assert sess.expires_at == t0 + SESSION_TTL_S
    while clock.now + DAY < t0 + SESSION_TTL_S:  # used once a day: never idle
        clock.advance(DAY)
        assert auth.lookup(sid) is not None, f"day {(clock.now - t0) / DAY:.0f}"
    clock.now = t0 + SESSION_TTL_S - 1
    assert auth.lookup(sid) is not None  # used a moment ago, one second left
    clock.now = t0 + SESSION_TTL_S
    assert auth.lookup(sid) is None
    assert _rows(store) == 0  # the expired row is deleted, not only refused
    assert auth.lookup(sid) is None  # and stays refused


def test_a_session_left_alone_ends_after_the_idle_timeout(store: Store) -> None:
    clock = Clock()
    auth = Auth(store, "secret", clock=clock)
    t0 = clock.now
    sid, _ = auth.create("ua", "127.0.0.1")
    clock.now = t0 + SESSION_IDLE_S  # exactly the idle timeout since log-in: still in
    used = auth.lookup(sid)
    assert used is not None and used.last_seen == clock.now
    # idle time counts from that last use, not from log-in
    clock.now = t0 + 2 * SESSION_IDLE_S
    assert auth.lookup(sid) is not None
    clock.advance(SESSION_IDLE_S + 1)
    assert auth.lookup(sid) is None
    assert _rows(store) == 0


def test_idle_time_counts_from_the_last_use_after_a_restart(store: Store) -> None:
    """A page that polls every 30 s is in use: a hub restart (or another log-in's purge) must not find it idle.

    The last use reaches the database at most once a minute; it used to be compared with the last use in memory,
    so a session used more often than once a minute never reached the database at all."""
    clock = Clock()
    auth = Auth(store, "secret", clock=clock)
    t0 = clock.now
    sid, _ = auth.create("ua", "127.0.0.1")
    while clock.now < t0 + 3600:
        clock.advance(30)
        assert auth.lookup(sid) is not None
    last_use = clock.now
    clock.now = last_use + SESSION_IDLE_S - 120  # two minutes short of the idle timeout since the last use
    other, _ = Auth(store, "secret", clock=clock).create("ua", "127.0.0.1")  # a log-in purges idle sessions
    restarted = Auth(store, "secret", clock=clock)  # the hub restarted: no memory of recent uses
    assert restarted.lookup(sid) is not None, "an active session was taken for idle"
    assert restarted.lookup(other) is not None


def test_expired_and_idle_sessions_leave_the_database_at_the_nextlog_in(store: Store) -> None:
    clock = Clock()
    auth = Auth(store, "secret", clock=clock)
    t0 = clock.now
    idle, _ = auth.create("ua", "a")
    busy, _ = auth.create("ua", "b")
    for day in range(1, int(SESSION_TTL_S // DAY)):  # ``busy`` is used daily until its last day
        clock.advance(DAY)
        assert auth.lookup(busy) is not None
        if day * DAY == SESSION_IDLE_S + DAY:  # ``idle`` is long idle, far from expired: a log-in purges it
            assert _rows(store) == 2
            auth.create("ua", "c")
            assert _rows(store) == 2  # ``busy`` and the new one
    clock.now = t0 + SESSION_TTL_S
    fresh, _ = auth.create("ua", "d")
    # only the new one is left: a copy of the database holds no session that still works, or will again
    assert _rows(store) == 1
    assert auth.lookup(idle) is None and auth.lookup(busy) is None and auth.lookup(fresh) is not None


# -- the lock on wrong guesses (GuessLimiter with explicit times) -------------------------------------------------


def test_the_lock_doubles_with_each_wrong_guess_up_to_its_cap() -> None:
    limiter = GuessLimiter()
    t = 1_000_000.0
    for _ in range(FREE_FAILURES - 1):
        assert limiter.fail("a", "https", t) == 0.0
        assert limiter.wait("a", "https", t) == 0.0  # free guesses: no wait
    locks = []
    for _ in range(14):
        lock = limiter.fail("a", "https", t)
        locks.append(lock)
        assert limiter.wait("a", "https", t) == lock  # locked for exactly that long ...
        assert limiter.wait("a", "https", t + lock - 0.5) == 0.5
        t += lock  # ... and not a moment longer
        assert limiter.wait("a", "https", t) == 0.0
    assert locks == [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, MAX_LOCK_S, MAX_LOCK_S, MAX_LOCK_S, MAX_LOCK_S]
    assert limiter.wait("b", "https", t) == 0.0  # another address is not locked
    limiter.fail("a", "https", t)
    limiter.succeed("a")  # the right secret (once the lock allowed a try) clears the count
    assert limiter.wait("a", "https", t) == 0.0
    assert [limiter.fail("a", "https", t) for _ in range(FREE_FAILURES)] == [0.0] * (FREE_FAILURES - 1) + [1.0]


def test_the_count_of_wrong_guesses_is_forgotten_after_an_hour_of_quiet() -> None:
    limiter = GuessLimiter()
    t = 1_000_000.0
    for _ in range(FREE_FAILURES + 3):
        t += limiter.fail("a", "https", t)
    assert limiter.fail("a", "https", t) == 16.0
    t += 3599  # within the hour: the count stands and the next wrong guess locks for longer
    assert limiter.fail("a", "https", t) == 32.0
    t += 3601
    assert limiter.wait("a", "https", t) == 0.0
    assert [limiter.fail("a", "https", t) for _ in range(FREE_FAILURES)] == [0.0] * (FREE_FAILURES - 1) + [1.0]


# -- the same through HTTP: the real hub in this process, with a test clock --------------------------------------


@dataclass
class LiveHub:
    runtime: HubRuntime
    clock: Clock
    base: str  # the HTTPS port (web UI)
    http: str  # the loopback HTTP port (health, the CLI's admin API)
    ctx: ssl.SSLContext

    def client(self, local_address: str = "127.0.0.1", **kw: object) -> httpx.AsyncClient:
        transport = httpx.AsyncHTTPTransport(verify=self.ctx, local_address=local_address)
        return httpx.AsyncClient(base_url=self.base, transport=transport, timeout=10, **kw)  # type: ignore[arg-type]

    @property
    def secret(self) -> str:
        return self.runtime.data.load_secrets(create=False)["admin_secret"]

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret}"}


@contextlib.asynccontextmanager
async def running_hub(tmp_path: Path, seed: Callable[[HubRuntime], None] | None = None
                      ) -> AsyncIterator[LiveHub]:
    """The real hub in this process (``build_hub`` + ``serve``) on free ports, its session and lockout clocks
    the test's own; ``seed`` fills its store before it serves."""
    https_port, http_port = free_ports(2)
    cfg = HubConfig.model_validate({
        "server": {"host": HOST, "https_port": https_port, "http_port": http_port, "public_host": HOST},
        "storage": {"data_dir": str(tmp_path / "data")}})
    runtime = build_hub(cfg)
    if seed is not None:
        seed(runtime)
    clock = Clock()
    runtime.web[SESSION_KEY].clock = clock
    runtime.web[LIMITS_KEY].admin.clock = clock
    runner = await serve(runtime)
    try:
        yield LiveHub(runtime, clock, f"https://{HOST}:{https_port}", f"http://{HOST}:{http_port}",
                      ssl.create_default_context(cafile=str(runtime.data.cert_path)))
    finally:
        await runner.cleanup()


@pytest_asyncio.fixture
async def live_hub(tmp_path: Path) -> AsyncIterator[LiveHub]:
    async with running_hub(tmp_path) as hub:
        yield hub


async def log_in(c: httpx.AsyncClient, secret: str) -> dict[str, str]:
    """Log in through the API; the CSRF header the session's writes need."""
    r = await c.post("/api/ui/login", json={"secret": secret})
    assert r.status_code == 200, r.text
    return {"X-CSRF-Token": r.json()["csrf"]}


async def test_the_hub_ends_idle_and_expired_sessions(live_hub: LiveHub) -> None:
    clock = live_hub.clock
    async with live_hub.client() as idle, live_hub.client() as busy:
        t0 = clock.now
        idle_key = await log_in(idle, live_hub.secret)
        busy_key = await log_in(busy, live_hub.secret)
        info = (await busy.get("/api/ui/session", headers=busy_key)).json()
        assert info["expires_at"] == t0 + SESSION_TTL_S and info["idle_timeout_s"] == SESSION_IDLE_S

        clock.now = t0 + SESSION_IDLE_S - 1
        assert (await busy.get("/api/ui/session", headers=busy_key)).status_code == 200
        clock.now = t0 + SESSION_IDLE_S + 1
        gone = await idle.get("/api/ui/cameras", headers=idle_key)
        assert gone.status_code == 401 and "log in" in gone.json()["hint"]

        while clock.now + DAY < t0 + SESSION_TTL_S:  # the other one is used daily
            clock.advance(DAY)
            assert (await busy.get("/api/ui/cameras", headers=busy_key)).status_code == 200
        clock.now = t0 + SESSION_TTL_S
        ended = await busy.post("/api/ui/arm", json={"armed": True}, headers=busy_key)
        assert ended.status_code == 401 and "log in" in ended.json()["hint"]
        # logging in again works and gives a session with a lifetime of its own
        again = await log_in(busy, live_hub.secret)
        assert (await busy.get("/api/ui/session", headers=again)).json()["expires_at"] == clock.now + SESSION_TTL_S


async def test_the_hub_locks_out_longer_after_each_wrong_secret(live_hub: LiveHub) -> None:
    clock = live_hub.clock
    async with live_hub.client("127.0.0.5") as c:
        wrong = {"secret": "not the secret"}
        assert [(await c.post("/api/ui/login", json=wrong)).status_code for _ in range(FREE_FAILURES)] == \
            [401] * FREE_FAILURES
        waits = []
        for _ in range(5):
            locked = await c.post("/api/ui/login", json={"secret": live_hub.secret})  # even the right one waits
            assert locked.status_code == 429, locked.text
            waits.append(int(locked.headers["Retry-After"]))
            clock.advance(waits[-1] - 0.5)
            assert (await c.post("/api/ui/login", json=wrong)).status_code == 429  # not yet
            clock.advance(0.5)
            assert (await c.post("/api/ui/login", json=wrong)).status_code == 401  # a guess again, counted
        assert waits == [1, 2, 4, 8, 16]
        locked = await c.post("/api/ui/login", json={"secret": live_hub.secret})
        assert locked.status_code == 429 and locked.headers["Retry-After"] == "32"
        # a bearer token is the same secret: it waits out the same lock
        bearer = await c.get("/api/ui/cameras", headers={"Authorization": f"Bearer {live_hub.secret}"})
        assert bearer.status_code == 429
        clock.advance(32)
        await log_in(c, live_hub.secret)
        # the right secret cleared the count: five free guesses again, then a one-second lock
        assert [(await c.post("/api/ui/login", json=wrong)).status_code for _ in range(FREE_FAILURES)] == \
            [401] * FREE_FAILURES
        assert (await c.post("/api/ui/login", json=wrong)).headers["Retry-After"] == "1"
