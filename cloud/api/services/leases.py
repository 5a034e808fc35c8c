"""Leases: at most one holder of a named piece of work at a time, across processes (the database decides).

`acquire` takes a free or expired lease, or renews one the caller holds; it is one conditional statement, so
two processes asking at once cannot both get it. A holder that stops renewing (crashed, partitioned) loses the
lease when it expires, and the next process takes over.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cloud.api.db.schema import leases
from cloud.api.db.util import insert_ignore


def acquire(conn: Connection, name: str, holder: str, now: datetime, ttl: timedelta) -> bool:
    """True when `holder` holds `name` until now + ttl (taken, or renewed)."""
    until = now + ttl
    if insert_ignore(conn, leases, {"name": name, "holder": holder, "expires_at": until}):
        return True
    return conn.execute(
        sa.update(leases).where(leases.c.name == name,
                                sa.or_(leases.c.holder == holder, leases.c.expires_at <= now))
        .values(holder=holder, expires_at=until)
    ).rowcount == 1


def release(conn: Connection, name: str, holder: str) -> None:
    """Give the lease up at once (a clean stop), so a standby takes over without waiting for the expiry."""
    conn.execute(sa.delete(leases).where(leases.c.name == name, leases.c.holder == holder))
