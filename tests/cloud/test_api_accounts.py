"""Accounts: log-in, tokens (hashed at rest, expiring, revocable), rate limits, the account view."""

from __future__ import annotations

import hashlib

import pytest
import sqlalchemy as sa

from cloud.api.db.schema import accounts, api_tokens, login_failures
from tests.cloud.conftest import PASSWORD, CloudApi


async def test_login_gives_a_token_that_is_stored_hashed(api: CloudApi):
    user = await api.account()
    r = await api.http.get("/api/v1/account", headers=user.headers)
    assert r.status_code == 200
    body = r.json()
    assert body["email"] == user.email and body["id"] == user.account_id
    assert body["plan"]["name"] == "free"
    assert body["credits"] == {"period": body["credits"]["period"], "granted": 360, "used": 0, "left": 360,
                               "seconds_per_credit": 10}
    rows = await api.services.ctx.db.tx(lambda c: c.execute(
        sa.select(api_tokens.c.token_hash).where(api_tokens.c.account_id == user.account_id)).scalars().all())
    assert rows == [hashlib.sha256(user.token.encode()).hexdigest()]  # never the token itself
    stored = await api.services.ctx.db.tx(lambda c: c.execute(
        sa.select(accounts.c.password_hash).where(accounts.c.id == user.account_id)).scalar_one())
    assert stored.startswith("$argon2id$") and PASSWORD not in stored


async def test_login_is_case_insensitive_on_email(api: CloudApi):
    user = await api.account()
    r = await api.http.post("/api/v1/auth/login", json={"email": user.email.upper(), "password": PASSWORD})
    assert r.status_code == 200


@pytest.mark.parametrize("email,password", [("nobody@example.com", PASSWORD), (None, "wrong password")])
async def test_wrong_credentials_are_401_without_telling_which(api: CloudApi, email, password):
    user = await api.account()
    r = await api.http.post("/api/v1/auth/login", json={"email": email or user.email, "password": password})
    assert r.status_code == 401
    assert r.json()["error"] == "wrong e-mail or password" and r.json()["reason"] == "bad_credentials"
    assert "token" not in r.json()


async def test_logout_revokes_the_token(api: CloudApi):
    user = await api.account()
    r = await api.http.post("/api/v1/auth/logout", headers=user.headers)
    assert r.status_code == 204
    r = await api.http.get("/api/v1/account", headers=user.headers)
    assert r.status_code == 401 and r.headers["WWW-Authenticate"] == "Bearer"
    assert r.json()["reason"] == "unauthenticated"


async def test_token_expires(api: CloudApi):
    user = await api.account()
    assert (await api.http.get("/api/v1/account", headers=user.headers)).status_code == 200
    api.clock.advance(hours=api.config.auth.token_ttl_hours, seconds=1)
    r = await api.http.get("/api/v1/account", headers=user.headers)
    assert r.status_code == 401 and "expired" in r.json()["error"]


@pytest.mark.parametrize("header", [
    None, "Bearer", "Basic dXNlcjpwYXNz", "Bearer pwu_" + "x" * 300, "Bearer pwu_not-a-real-token",
    "Bearer pwh_hub-token-on-a-user-route", "Bearer tok\u00e9n",
])
async def test_bad_tokens_are_401(api: CloudApi, header):
    headers = {"Authorization": header.encode("utf-8")} if header else {}
    r = await api.http.get("/api/v1/account", headers=headers)
    assert r.status_code == 401
    assert set(r.json()) >= {"error", "hint", "reason"}


async def test_login_rate_limit_per_account(api_factory):
    api = await api_factory(auth={"login_max_failures_per_account": 3, "login_window_s": 600})
    user = await api.account()
    for _ in range(3):
        r = await api.http.post("/api/v1/auth/login", json={"email": user.email, "password": "nope nope"})
        assert r.status_code == 401
    # Now even the right password waits: the guesser cannot learn when they hit it.
    r = await api.http.post("/api/v1/auth/login", json={"email": user.email, "password": PASSWORD})
    assert r.status_code == 429 and r.json()["reason"] == "login_rate_limited"
    retry = int(r.headers["Retry-After"])
    assert 1 <= retry <= 600 and r.json()["retry_after_s"] == retry
    # Another account from the same source is not locked by this one's failures.
    other = await api.account()
    assert other.token
    # Once the window has slid past the failures, the right password works again.
    api.clock.advance(seconds=601)
    r = await api.http.post("/api/v1/auth/login", json={"email": user.email, "password": PASSWORD})
    assert r.status_code == 200


async def test_login_rate_limit_per_source(api_factory):
    api = await api_factory(auth={"login_max_failures_per_source": 4, "login_max_failures_per_account": 100})
    for i in range(4):
        r = await api.http.post("/api/v1/auth/login", json={"email": f"guess{i}@example.com", "password": "x"})
        assert r.status_code == 401
    r = await api.http.post("/api/v1/auth/login", json={"email": "guess-next@example.com", "password": "x"})
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
    failures = await api.services.ctx.db.tx(lambda c: c.execute(
        sa.select(sa.func.count()).select_from(login_failures).where(login_failures.c.key == f"source:{api.source}")
    ).scalar_one())
    assert failures >= 4


async def test_successful_login_clears_the_account_failures(api_factory):
    api = await api_factory(auth={"login_max_failures_per_account": 2})
    user = await api.account()
    r = await api.http.post("/api/v1/auth/login", json={"email": user.email, "password": "wrong wrong"})
    assert r.status_code == 401
    assert (await api.http.post("/api/v1/auth/login",
                                json={"email": user.email, "password": PASSWORD})).status_code == 200
    r = await api.http.post("/api/v1/auth/login", json={"email": user.email, "password": "wrong wrong"})
    assert r.status_code == 401  # a fresh count: one failure, not two


async def test_disabled_account_cannot_log_in_or_use_tokens(api: CloudApi):
    user = await api.account()
    now = api.clock()
    await api.services.ctx.db.tx(lambda c: c.execute(
        sa.update(accounts).where(accounts.c.id == user.account_id).values(disabled_at=now)))
    assert (await api.http.get("/api/v1/account", headers=user.headers)).status_code == 401
    r = await api.http.post("/api/v1/auth/login", json={"email": user.email, "password": PASSWORD})
    assert r.status_code == 401
