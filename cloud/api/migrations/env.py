"""Alembic environment for the cloud database, run programmatically (cloud/api/db/migrate.py).

The caller hands over an open connection in ``config.attributes["connection"]``; there is no alembic.ini and
no offline (SQL script) mode: migrations always run against the database they change, on SQLite and PostgreSQL.
"""

from __future__ import annotations

from alembic import context

from cloud.api.db.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `pingwatch-cloud migrate` (cloud.api.db.migrate)")

context.configure(
    connection=connection,
    target_metadata=metadata,
    # SQLite cannot ALTER most things in place; batch mode copies the table, the usual Alembic way.
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
