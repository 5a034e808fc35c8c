"""What every service needs: configuration, the database, storage and a clock (one object, built once per process
in cloud/api/app.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from cloud.api.db.engine import Database
from cloud.api.security import Passwords
from cloud.config import CloudConfig
from cloud.storage.blob import BlobStore
from cloud.storage.queue import JobQueue


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Context:
    config: CloudConfig
    db: Database
    blobs: BlobStore
    queue: JobQueue
    passwords: Passwords
    # Injected so tests can move time (token expiry, monthly grants) without waiting; SAS expiry is storage's own.
    clock: Callable[[], datetime] = field(default=utcnow)
