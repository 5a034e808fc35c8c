"""Credits: 1 credit = 10 seconds analysed, rounded up per event, from a monthly allowance set by the plan.

The ledger holds signed rows (grant +, charge -, refund +), each with a UNIQUE idempotency key, and the balance
is derived with SUM over the current month's rows, so:
- a retried grant, charge or refund inserts nothing (``insert_ignore``);
- the allowance is per calendar month (UTC): unused credits do not roll over, and a charge counts against the
  month it was made in; a refund goes back to the month of its charge.
These are plain functions over an open connection, so a caller composes them into its own transaction.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cloud.api.db.schema import credit_ledger
from cloud.api.db.util import insert_ignore, insert_ignore_if_statement, row_params
from cloud.config import PlanConfig

SECONDS_PER_CREDIT = 10


def credits_for(duration_s: float) -> int:
    """Credits for a clip: ceil(seconds / 10), at least 1. The tiny epsilon keeps 20.000000001 s at 2 credits."""
    return max(1, math.ceil(duration_s / SECONDS_PER_CREDIT - 1e-9))


def period_of(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m")


def next_period_start(when: datetime) -> datetime:
    w = when.astimezone(UTC)
    return datetime(w.year + (w.month == 12), w.month % 12 + 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Balance:
    period: str
    granted: int
    used: int
    left: int


def ensure_grant(conn: Connection, account_id: str, plan: PlanConfig, now: datetime) -> None:
    """This month's allowance, granted at most once (keyed by account and month)."""
    period = period_of(now)
    insert_ignore(conn, credit_ledger, {
        "account_id": account_id, "kind": "grant", "amount": plan.monthly_credits, "period": period,
        "idempotency_key": f"grant:{account_id}:{period}", "event_id": None, "created_at": now,
    })


def balance(conn: Connection, account_id: str, now: datetime) -> Balance:
    return _balance(conn, account_id, now)[0]


def _balance(conn: Connection, account_id: str, now: datetime) -> tuple[Balance, bool]:
    period = period_of(now)
    rows = conn.execute(
        sa.select(credit_ledger.c.kind, sa.func.coalesce(sa.func.sum(credit_ledger.c.amount), 0))
        .where(credit_ledger.c.account_id == account_id, credit_ledger.c.period == period)
        .group_by(credit_ledger.c.kind)
    ).all()
    by_kind = {kind: int(total) for kind, total in rows}
    granted = by_kind.get("grant", 0)
    used = -(by_kind.get("charge", 0) + by_kind.get("refund", 0))
    return Balance(period=period, granted=granted, used=used, left=granted - used), "grant" in by_kind


def balance_columns(account_id: Any, period: Any) -> tuple[Any, Any]:
    """The month's grant and the sum of its charges and refunds as two scalar subqueries, for a caller that reads
    them in the same statement as other checks (upload initiate); `balance_from` turns them into a Balance.
    The arguments are values (the period: `period_of`) or bind parameters (for a statement built once)."""
    mine = (credit_ledger.c.account_id == account_id, credit_ledger.c.period == period)
    granted = (sa.select(sa.func.sum(credit_ledger.c.amount)).where(*mine, credit_ledger.c.kind == "grant")
               .scalar_subquery().label("granted"))
    spent = (sa.select(sa.func.coalesce(sa.func.sum(credit_ledger.c.amount), 0))
             .where(*mine, credit_ledger.c.kind != "grant").scalar_subquery().label("spent"))
    return granted, spent


def balance_from(now: datetime, granted: int | None, spent: int) -> Balance | None:
    """The Balance from `balance_columns`' values; None when the month's grant is not there yet."""
    if granted is None:
        return None
    used = -int(spent)
    return Balance(period=period_of(now), granted=int(granted), used=used, left=int(granted) - used)


def granted_balance(conn: Connection, account_id: str, plan: PlanConfig, now: datetime) -> Balance:
    """``ensure_grant`` then ``balance``, in one round trip once the month's grant exists (the usual case): the
    balance query shows whether the grant row is there, and only its absence costs the insert and a re-read."""
    bal, has_grant = _balance(conn, account_id, now)
    if has_grant:
        return bal
    ensure_grant(conn, account_id, plan, now)
    return balance(conn, account_id, now)


CHARGE_COLUMNS = ("account_id", "kind", "amount", "period", "idempotency_key", "event_id", "created_at")


def _charge_row(account_id: str, event_id: str, amount: int, now: datetime) -> dict[str, Any]:
    return {"account_id": account_id, "kind": "charge", "amount": -amount, "period": period_of(now),
            "idempotency_key": f"charge:{event_id}", "event_id": event_id, "created_at": now}


def charge(conn: Connection, account_id: str, event_id: str, amount: int, now: datetime) -> bool:
    """Charge an event once; False when it was already charged (a retried finalize)."""
    return insert_ignore(conn, credit_ledger, _charge_row(account_id, event_id, amount, now))


def charge_if_covered(dialect: str, account_id: str, event_id: str, amount: int,
                      now: datetime) -> tuple[Any, dict[str, Any]]:
    """A statement (built once per dialect) and its parameters that charge an event when the month's balance
    (grant included) covers it, returning a row when it charged; none when it is not covered, when the grant is
    not there yet or when it was charged already: the caller then takes the long way (`granted_balance`, its
    error, `charge`). The caller holds the account's lock, so the balance read by it cannot change before the
    insert commits. The caller runs it, alone or inside a statement of its own (``changes.execute_recorded``)."""
    return _charge_if_covered(dialect), row_params(_charge_row(account_id, event_id, amount, now)) | {"need": amount}


@functools.cache
def _charge_if_covered(dialect: str) -> Any:
    # Built once (upload finalize runs it on its request path; building it costs about what running it does).
    balance_now = (sa.select(sa.func.coalesce(sa.func.sum(credit_ledger.c.amount), 0))
                   .where(credit_ledger.c.account_id == sa.bindparam("v_account_id"),
                          credit_ledger.c.period == sa.bindparam("v_period"))
                   .scalar_subquery())
    return insert_ignore_if_statement(dialect, credit_ledger, CHARGE_COLUMNS,
                                      balance_now >= sa.bindparam("need", type_=sa.Integer))


def refund(conn: Connection, event_id: str, now: datetime) -> int:
    """Give back an event's charge (the worker failed it), once; returns the credits refunded (0: none)."""
    row = conn.execute(
        sa.select(credit_ledger.c.account_id, credit_ledger.c.amount, credit_ledger.c.period)
        .where(credit_ledger.c.idempotency_key == f"charge:{event_id}")
    ).first()
    if row is None:
        return 0
    inserted = insert_ignore(conn, credit_ledger, {
        "account_id": row.account_id, "kind": "refund", "amount": -row.amount, "period": row.period,
        "idempotency_key": f"refund:{event_id}", "event_id": event_id, "created_at": now,
    })
    return -row.amount if inserted else 0
