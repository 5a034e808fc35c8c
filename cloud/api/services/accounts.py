"""Accounts: creation (admin command), log-in with rate limits, bearer tokens, log-out, the account view."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cloud.api import errors
from cloud.api.context import Context
from cloud.api.db.schema import accounts, api_tokens
from cloud.api.db.util import insert_ignore
from cloud.api.principals import User
from cloud.api.security import USER_TOKEN_PREFIX, new_id, new_token, token_hash
from cloud.api.services import credits, ratelimit

log = logging.getLogger(__name__)

MIN_PASSWORD_LENGTH = 10


@dataclass(frozen=True)
class LoginResult:
    token: str
    expires_at: datetime
    account_id: str


@dataclass(frozen=True)
class AccountView:
    id: str
    email: str
    plan: str
    balance: credits.Balance


class Accounts:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    # -- admin -------------------------------------------------------------------------------------------------

    def create_sync(self, email: str, password: str, plan: str | None = None) -> str:
        """Create an account (the `accounts create` command; runs without an event loop). Returns its id."""
        email = email.strip().lower()
        plan = plan or self.ctx.config.default_plan
        if plan not in self.ctx.config.plans:
            raise errors.InvalidInput(f"unknown plan '{plan}'", f"one of: {', '.join(self.ctx.config.plans)}")
        if len(password) < MIN_PASSWORD_LENGTH:
            raise errors.InvalidInput(f"password too short (at least {MIN_PASSWORD_LENGTH} characters)")
        pw_hash = self.ctx.passwords.hash(password)
        account_id = new_id()

        def work(conn: Connection) -> bool:
            return insert_ignore(conn, accounts, {
                "id": account_id, "email": email, "password_hash": pw_hash, "plan": plan,
                "created_at": self.ctx.clock(), "disabled_at": None,
            })

        if not self.ctx.db.tx_sync(work):
            raise errors.Conflict(f"an account for {email} exists already", reason="account_exists")
        return account_id

    async def create(self, email: str, password: str, plan: str | None = None) -> str:
        return await asyncio.to_thread(self.create_sync, email, password, plan)

    # -- log-in ------------------------------------------------------------------------------------------------

    async def login(self, email: str, password: str, source: str) -> LoginResult:
        cfg = self.ctx.config.auth
        email = email.strip().lower()
        keys = [(f"account:{email}", cfg.login_max_failures_per_account),
                (f"source:{source}", cfg.login_max_failures_per_source)]
        now = self.ctx.clock()

        def check(conn: Connection) -> tuple[float | None, str | None, str | None]:
            # Checked before the password, so a locked-out guesser costs no argon2 work.
            waits = [w for k, lim in keys if (w := ratelimit.retry_after(conn, k, lim, cfg.login_window_s, now))]
            row = conn.execute(
                sa.select(accounts.c.id, accounts.c.password_hash)
                .where(accounts.c.email == email, accounts.c.disabled_at.is_(None))
            ).first()
            return (max(waits) if waits else None, row.id if row else None, row.password_hash if row else None)

        wait, account_id, pw_hash = await self.ctx.db.tx(check)
        if wait is not None:
            raise errors.RateLimited("too many failed log-ins", "wait and try again", reason="login_rate_limited",
                                     retry_after_s=wait)
        # argon2 is deliberately slow CPU work: off the event loop and off the (single, on SQLite) DB thread.
        ok = await asyncio.to_thread(self.ctx.passwords.verify, pw_hash, password)
        if not ok or account_id is None:
            await self.ctx.db.tx(lambda conn: ratelimit.record_failure(conn, [k for k, _ in keys], now))
            raise errors.Unauthenticated("wrong e-mail or password", reason="bad_credentials")
        token = new_token(USER_TOKEN_PREFIX)
        expires = now + timedelta(hours=cfg.token_ttl_hours)

        def issue(conn: Connection) -> None:
            ratelimit.clear(conn, keys[0][0])
            conn.execute(sa.insert(api_tokens).values(
                id=new_id(), account_id=account_id, token_hash=token_hash(token), created_at=now,
                expires_at=expires, revoked_at=None,
            ))

        await self.ctx.db.tx(issue)
        log.info("login", extra={"account_id": account_id})
        return LoginResult(token=token, expires_at=expires, account_id=account_id)

    async def authenticate(self, token: str) -> User:
        now = self.ctx.clock()

        def work(conn: Connection) -> User | None:
            row = conn.execute(
                sa.select(api_tokens.c.id, accounts.c.id.label("account_id"), accounts.c.email, accounts.c.plan)
                .join(accounts, accounts.c.id == api_tokens.c.account_id)
                .where(api_tokens.c.token_hash == token_hash(token), api_tokens.c.revoked_at.is_(None),
                       api_tokens.c.expires_at > now, accounts.c.disabled_at.is_(None))
            ).first()
            return None if row is None else User(row.account_id, row.email, row.plan, row.id)

        user = await self.ctx.db.read(work) if token.startswith(USER_TOKEN_PREFIX) else None  # one lookup
        if user is None:
            raise errors.Unauthenticated("unknown, expired or revoked token", "log in again")
        return user

    async def logout(self, user: User) -> None:
        now = self.ctx.clock()
        await self.ctx.db.tx(lambda conn: conn.execute(
            sa.update(api_tokens).where(api_tokens.c.id == user.token_id, api_tokens.c.revoked_at.is_(None))
            .values(revoked_at=now)
        ))

    # -- the account view --------------------------------------------------------------------------------------

    async def view(self, user: User) -> AccountView:
        now = self.ctx.clock()
        plan = self.ctx.config.plan(user.plan)

        def work(conn: Connection) -> credits.Balance:
            return credits.granted_balance(conn, user.account_id, plan, now)

        return AccountView(user.account_id, user.email, user.plan, await self.ctx.db.tx(work))
