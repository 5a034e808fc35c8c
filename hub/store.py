"""The hub's local state in SQLite (sqlite-utils, WAL): cameras, pairing codes and the event timeline.

All writes happen on the event loop's thread through one connection; every statement here is a single-row
write or an indexed read, well under a millisecond on a Pi's SD card with WAL. Long jobs (retention) open their
own connection off the loop.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import sqlite3
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlite_utils

from hub.datadir import PRIVATE_FILE, create_private

SCHEMA_VERSION = 1
PAIRING_CODE_TTL_S = 600
# Pairing codes are typed on a phone: no 0/O or 1/I/L confusion.
_CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"


class StoreError(Exception):
    pass


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _now() -> float:
    return time.time()


@dataclass(frozen=True)
class Pairing:
    camera_id: str
    name: str
    token: str


class Store:
    def __init__(self, path: Path | str) -> None:
        self.path = Path(path) if str(path) != ":memory:" else path
        if isinstance(self.path, Path):
            _make_private(self.path)
        try:
            conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open database {path}: {exc}") from None
        self.db = sqlite_utils.Database(conn)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA foreign_keys=ON")
        self.db.execute("PRAGMA busy_timeout=5000")
        self._migrate()

    def close(self) -> None:
        self.db.conn.close()

    # -- schema -----------------------------------------------------------------------------------------

    def _migrate(self) -> None:
        db = self.db
        if "cameras" not in db.table_names():
            db.table("cameras").create(
                {
                    "id": str, "name": str, "kind": str, "token_hash": str, "created_at": float,
                    "last_seen": float, "online": int, "codec": str, "width": int, "height": int, "fps": float,
                    "battery": float, "charging": int, "revoked_at": float, "armed": int, "settings": str,
                },
                pk="id",
                not_null={"name", "kind", "created_at"},
                defaults={"online": 0, "armed": 1, "settings": "{}"},
            )
            db.table("cameras").create_index(["token_hash"], unique=True)
        if "pairing_codes" not in db.table_names():
            db.table("pairing_codes").create(
                {"code_hash": str, "created_at": float, "expires_at": float, "used_at": float, "camera_id": str},
                pk="code_hash",
            )
        if "events" not in db.table_names():
            db.table("events").create(
                {
                    "id": str, "camera_id": str, "triggers": str, "status": str,
                    "start": float, "end": float, "detected_at": float, "pre_roll_s": float, "post_roll_s": float,
                    "peak_motion": float, "boxes": str, "audio_peak_dbfs": float,
                    "clip_path": str, "clip_size": int, "clip_codec": str, "clip_duration_s": float,
                    "snapshot_path": str, "thumb_path": str,
                    "upload_status": str, "labels": str, "summary": str, "created_at": float,
                },
                pk="id",
                not_null={"camera_id", "status", "start", "created_at"},
                defaults={"upload_status": "pending", "triggers": "[]", "boxes": "[]", "labels": "[]"},
            )
            db.table("events").create_index(["camera_id", "start"])
            db.table("events").create_index(["start"])
        if "meta" not in db.table_names():
            db.table("meta").create({"key": str, "value": str}, pk="key")
            db.table("meta").insert({"key": "schema_version", "value": str(SCHEMA_VERSION)})

    # -- pairing and cameras ----------------------------------------------------------------------------

    def new_pairing_code(self, ttl_s: float = PAIRING_CODE_TTL_S) -> tuple[str, float]:
        code = "".join(secrets.choice(_CODE_ALPHABET) for _ in range(8))
        expires = _now() + ttl_s
        self.db.table("pairing_codes").insert(
            {"code_hash": _hash(code), "created_at": _now(), "expires_at": expires, "used_at": None, "camera_id": None}
        )
        return code, expires

    def redeem_pairing_code(self, code: str, name: str) -> Pairing | None:
        """Turn a valid, unused code into a new camera with its token. None if the code is wrong or spent."""
        normalised = code.strip().upper().replace("-", "").replace(" ", "")
        h = _hash(normalised)
        with self.db.conn:
            row = self.db.execute(
                "SELECT expires_at, used_at FROM pairing_codes WHERE code_hash = ?", [h]
            ).fetchone()
            if row is None or row[1] is not None or row[0] < _now():
                return None
            camera_id = "cam-" + uuid.uuid4().hex[:8]
            token = secrets.token_urlsafe(32)
            stored_name = name.strip()[:64] or camera_id  # the answer and camera.added carry this, not the raw one
            self.db.table("cameras").insert(
                {"id": camera_id, "name": stored_name, "kind": "phone", "token_hash": _hash(token),
                 "created_at": _now(), "online": 0, "armed": 1, "settings": "{}"}
            )
            self.db.table("pairing_codes").update(h, {"used_at": _now(), "camera_id": camera_id})
        return Pairing(camera_id=camera_id, name=stored_name, token=token)

    def camera_for_token(self, token: str) -> dict[str, Any] | None:
        # Looked up by the token's SHA-256: timing can only reveal hash prefixes, which say nothing of the token.
        rows = list(self.db.table("cameras").rows_where("token_hash = ? AND revoked_at IS NULL", [_hash(token)]))
        return rows[0] if rows else None

    def ensure_static_camera(self, camera_id: str, name: str, kind: str) -> None:
        """Cameras from the config file (files, RTSP) have no token; they are registered by id."""
        if self.get_camera(camera_id) is None:
            self.db.table("cameras").insert(
                {"id": camera_id, "name": name, "kind": kind, "token_hash": None, "created_at": _now(),
                 "online": 0, "armed": 1, "settings": "{}"}
            )

    def get_camera(self, camera_id: str) -> dict[str, Any] | None:
        try:
            return self.db.table("cameras").get(camera_id)
        except sqlite_utils.db.NotFoundError:
            return None

    def list_cameras(self, include_revoked: bool = False) -> list[dict[str, Any]]:
        where = None if include_revoked else "revoked_at IS NULL"
        return list(self.db.table("cameras").rows_where(where, order_by="created_at"))

    def update_camera(self, camera_id: str, **fields: Any) -> None:
        self.db.table("cameras").update(camera_id, fields)

    def revoke_camera(self, camera_id: str) -> bool:
        cam = self.get_camera(camera_id)
        if cam is None or cam["revoked_at"] is not None:
            return False
        self.db.table("cameras").update(camera_id, {"revoked_at": _now(), "online": 0})
        return True

    def remove_camera(self, camera_id: str) -> bool:
        if self.get_camera(camera_id) is None:
            return False
        self.db.table("cameras").delete(camera_id)
        return True

    # -- events -----------------------------------------------------------------------------------------

    def insert_event(self, event: dict[str, Any]) -> str:
        row = {"id": event.get("id") or "ev-" + uuid.uuid4().hex[:12], "created_at": _now(), **event}
        for k in ("triggers", "boxes", "labels"):
            if k in row and not isinstance(row[k], str):
                row[k] = json.dumps(row[k])
        self.db.table("events").insert(row)
        return row["id"]

    def update_event(self, event_id: str, **fields: Any) -> None:
        for k in ("triggers", "boxes", "labels"):
            if k in fields and not isinstance(fields[k], str):
                fields[k] = json.dumps(fields[k])
        self.db.table("events").update(event_id, fields)

    def get_event(self, event_id: str) -> dict[str, Any] | None:
        try:
            return _decode_event(self.db.table("events").get(event_id))
        except sqlite_utils.db.NotFoundError:
            return None

    def list_events(
        self, camera_id: str | None = None, since: float | None = None, until: float | None = None,
        trigger: str | None = None, limit: int = 100,
    ) -> list[dict[str, Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        if camera_id:
            clauses.append("camera_id = ?")
            params.append(camera_id)
        if since is not None:
            clauses.append("start >= ?")
            params.append(since)
        if until is not None:
            clauses.append("start < ?")
            params.append(until)
        if trigger:
            clauses.append("triggers LIKE ?")
            params.append(f'%"{trigger}"%')
        where = " AND ".join(clauses) or None
        rows = self.db.table("events").rows_where(where, params, order_by="start DESC", limit=limit)
        return [_decode_event(r) for r in rows]

    def delete_event(self, event_id: str) -> dict[str, Any] | None:
        ev = self.get_event(event_id)
        if ev is not None:
            self.db.table("events").delete(event_id)
        return ev

    def iter_events_oldest_first(self) -> Iterator[dict[str, Any]]:
        for r in self.db.table("events").rows_where(order_by="start ASC"):
            yield _decode_event(r)

    def events_with_status(self, status: str) -> list[dict[str, Any]]:
        return [_decode_event(r) for r in self.db.table("events").rows_where("status = ?", [status])]


def _make_private(db_path: Path) -> None:
    """The database (cameras, events, hashed tokens) is the hub user's alone. SQLite creates its -wal and -shm
    files with the main file's mode, so a 0600 database gives 0600 companions whatever the umask."""
    try:
        if not db_path.exists():
            create_private(db_path)
        for p in (db_path, db_path.with_name(db_path.name + "-wal"), db_path.with_name(db_path.name + "-shm")):
            if p.exists() and p.stat().st_mode & 0o077:
                os.chmod(p, PRIVATE_FILE)
    except OSError as exc:
        raise StoreError(f"cannot create database {db_path}: {exc.strerror}") from None


def _decode_event(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    for k in ("triggers", "boxes", "labels"):
        if isinstance(out.get(k), str):
            try:
                out[k] = json.loads(out[k])
            except ValueError:
                out[k] = []
    return out
