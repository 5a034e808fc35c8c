"""Small helpers shared by the services' SQL: dialect-neutral "insert unless it exists" and row conversion."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Row


def insert_ignore(conn: Connection, table: sa.Table, values: dict[str, Any]) -> bool:
    """INSERT ... ON CONFLICT DO NOTHING on both engines; True when the row was inserted.

    This is how every idempotency key is honoured: a retried grant, charge, refund or event insert hits the
    UNIQUE constraint and inserts nothing, without an IntegrityError that would abort a PostgreSQL transaction.
    """
    stmt = _insert(conn.dialect.name, table).values(**values).on_conflict_do_nothing()
    # RETURNING rather than rowcount: with psycopg the rowcount of this statement is not reported (-1).
    return conn.execute(stmt.returning(sa.literal_column("1"))).first() is not None


def insert_ignore_if_statement(dialect: str, table: sa.Table, columns: Sequence[str], condition: Any) -> Any:
    """``insert_ignore`` only when ``condition`` (a SQL expression, e.g. over a scalar subquery) holds when the
    statement runs: a check and its write in one round trip (INSERT ... SELECT ... WHERE). Each column's value is
    the bind parameter ``v_<column>`` (``row_params``), so a caller on a hot path builds it once; executing it
    answers a row when it inserted."""
    # The WHERE also keeps SQLite from reading ON CONFLICT as a join's ON.
    source = sa.select(*_bind_values(table, columns).values()).where(condition)
    stmt = _insert(dialect, table).from_select(list(columns), source).on_conflict_do_nothing()
    return stmt.returning(*table.primary_key.columns)  # a named column: the statement may become a CTE


def insert_ignore_statement(dialect: str, table: sa.Table, columns: Sequence[str]) -> Any:
    """``insert_ignore`` answering the inserted row (none when the key existed), as a statement built once: each
    column's value is the bind parameter ``v_<column>`` (``row_params``)."""
    return _insert(dialect, table).values(_bind_values(table, columns)).on_conflict_do_nothing().returning(*table.c)


def row_params(values: dict[str, Any]) -> dict[str, Any]:
    """A row's values as the ``v_<column>`` bind parameters of ``insert_ignore_if_statement`` and
    ``insert_ignore_statement``."""
    return {f"v_{k}": v for k, v in values.items()}


def _bind_values(table: sa.Table, columns: Sequence[str]) -> dict[str, Any]:
    return {c: sa.bindparam(f"v_{c}", type_=table.c[c].type) for c in columns}


def _insert(dialect: str, table: sa.Table) -> Any:
    """The dialect's INSERT (both have ``on_conflict_do_nothing``)."""
    if dialect == "postgresql":
        return postgresql.insert(table)
    if dialect == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(dialect)  # pragma: no cover - only the two engines above are supported


def as_dict(row: Row[Any] | None) -> dict[str, Any] | None:
    return None if row is None else dict(row._mapping)
