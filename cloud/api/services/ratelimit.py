"""Failed log-ins counted over a sliding window, per account and per client address, in the database (also
link-code requests per address: the same counter under another key).

In the database rather than in memory so that N API processes behind a load balancer share one count. Only
failures are counted: a user who logs in correctly is never slowed down by someone else's guessing of *other*
accounts, while guessing one account (or many from one address) stops at the limit until the window slides.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cloud.api.db.schema import login_failures


def retry_after(conn: Connection, key: str, limit: int, window_s: float, now: datetime) -> float | None:
    """Seconds until ``key`` may try again, or None when it is under its limit."""
    since = now - timedelta(seconds=window_s)
    rows = conn.execute(
        sa.select(login_failures.c.at)
        .where(login_failures.c.key == key, login_failures.c.at > since)
        .order_by(login_failures.c.at.desc())
        .limit(limit)
    ).scalars().all()
    if len(rows) < limit:
        return None
    # The limit-th most recent failure must leave the window before another try is allowed.
    oldest_counted: datetime = rows[-1]
    return max(1.0, (oldest_counted + timedelta(seconds=window_s) - now).total_seconds())


def record_failure(conn: Connection, keys: list[str], now: datetime) -> None:
    """Count one attempt against each key."""
    conn.execute(sa.insert(login_failures), [{"key": k, "at": now} for k in keys])


def clear(conn: Connection, key: str) -> None:
    conn.execute(sa.delete(login_failures).where(login_failures.c.key == key))


def prune(conn: Connection, window_s: float, now: datetime) -> int:
    return conn.execute(
        sa.delete(login_failures).where(login_failures.c.at <= now - timedelta(seconds=window_s))
    ).rowcount
