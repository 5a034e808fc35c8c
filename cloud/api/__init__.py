"""The cloud API: an aiohttp app over SQLAlchemy Core (SQLite or PostgreSQL), Azure Blob and Azure Storage Queue.

Layout: config in cloud/config.py; db/ (tables, engine, Alembic runner) and migrations/; services/ (the domain,
raising cloud.api.errors); web/ (route registry, OpenAPI, the error middleware, handlers); app.py composes them;
jobs.py schedules the reconciler and retention.
"""
