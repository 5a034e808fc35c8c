"""The data directory: one folder holding everything the hub owns on disk.

    data/
      hub.db            SQLite (WAL) with cameras, pairing codes and events
      clips/            event clips, snapshots and thumbnails (clips/<camera>/<YYYY-MM-DD>/...)
      tls/cert.pem      the self-signed certificate phones trust
      tls/key.pem       its private key (0600)
      secrets.json      admin secret and session key (0600)
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path


class DataDirError(Exception):
    pass


@dataclass(frozen=True)
class DataDir:
    root: Path

    @property
    def db_path(self) -> Path:
        return self.root / "hub.db"

    @property
    def clips_dir(self) -> Path:
        return self.root / "clips"

    @property
    def tls_dir(self) -> Path:
        return self.root / "tls"

    @property
    def cert_path(self) -> Path:
        return self.tls_dir / "cert.pem"

    @property
    def key_path(self) -> Path:
        return self.tls_dir / "key.pem"

    @property
    def secrets_path(self) -> Path:
        return self.root / "secrets.json"

    def ensure(self) -> DataDir:
        """Create the folders, failing with a message that says how to fix permissions."""
        for d in (self.root, self.clips_dir, self.tls_dir):
            try:
                d.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise DataDirError(
                    f"cannot create {d}: {exc.strerror}; choose a writable storage.data_dir in the config "
                    f"or fix the folder's owner (e.g. 'sudo chown -R $USER {self.root}')"
                ) from None
        probe = self.root / ".write-test"
        try:
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise DataDirError(
                f"data directory {self.root} is not writable ({exc.strerror}); fix its permissions or set "
                f"storage.data_dir to a writable folder"
            ) from None
        os.chmod(self.tls_dir, 0o700)
        return self

    def load_secrets(self, create: bool = True) -> dict[str, str]:
        """The admin secret (shown once by `pingwatch init`) and the key that signs session cookies."""
        path = self.secrets_path
        if path.exists():
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                raise DataDirError(f"{path} is unreadable ({exc}); delete it and run 'pingwatch init'") from None
            if isinstance(data, dict) and {"admin_secret", "session_key"} <= data.keys():
                return data
            raise DataDirError(f"{path} lacks admin_secret/session_key; delete it and run 'pingwatch init'")
        if not create:
            raise DataDirError(f"{path} does not exist; run 'pingwatch init'")
        data = {"admin_secret": secrets.token_urlsafe(18), "session_key": secrets.token_urlsafe(32)}
        write_private(path, json.dumps(data, indent=2).encode())
        return data


def write_private(path: Path, content: bytes) -> None:
    """Write a file readable by its owner only, atomically, never briefly world-readable."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, content)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def contained_file(clips_dir: Path, stored: object, data_root: Path | None = None) -> Path | None:
    """The regular file a path stored in the database names, only if it lies inside the clips folder.

    Rows can be tampered with (a copied database, a bug): whatever reads, serves, uploads or deletes a stored path
    goes through this, so no row can point the hub at its own key or at /etc. Relative paths are taken from the
    clips folder (and from ``data_root``, for rows written that way); symlinks are resolved first."""
    if not stored or not isinstance(stored, str) or "\x00" in stored:
        return None
    root = clips_dir.resolve()
    p = Path(stored)
    candidates = [p] if p.is_absolute() else [root / p] + ([data_root / p] if data_root is not None else [])
    for c in candidates:
        try:
            resolved = c.resolve(strict=True)
        except (OSError, RuntimeError):
            continue
        if resolved.is_relative_to(root) and resolved != root and resolved.is_file():
            return resolved
    return None

