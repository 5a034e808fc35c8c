"""The data directory: one folder holding everything the hub owns on disk.

    data/
      hub.db            SQLite (WAL) with cameras, pairing codes and events
      clips/            event clips, snapshots and thumbnails (clips/<camera>/<YYYY-MM-DD>/...)
      tls/cert.pem      the hub CA phones install (constrained to the hub's own names)
      tls/ca-key.pem    its private key (0600)
      tls/server.pem    the short-lived server certificate the hub renews itself, and the CA
      tls/key.pem       the server certificate's private key (0600)
      secrets.json      admin secret and session key (0600)

Everything in it is private to the hub's user whatever the umask: folders 0700, files 0600. The folder holds
clips of the inside of a home, the database and (in config/hub.yaml next to it) broker and cloud credentials; a
second local user must read none of it. ``private_umask()`` makes every file the process writes from then on
private (libav's clips, SQLite's -wal/-shm, uploads' journals), and ``ensure()`` tightens a folder an older
version left 0755/0644 once.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path


class DataDirError(Exception):
    pass


PRIVATE_UMASK = 0o077
PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
# What the hub writes at the top of the data folder (the subtrees below are tightened whole). Other files a user
# keeps there are left alone: the folder itself is 0700, which already closes them to other users.
_OWN_FILES = ("hub.db", "hub.db-wal", "hub.db-shm", "hub.db-journal", "secrets.json", "cloud.json")
_OWN_TREES = ("clips", "tls", "uploads", "demo")


def private_umask() -> int:
    """From now on this process creates files 0600 and folders 0700, whoever starts it with which umask.
    Called by the process entry points (every ``pingwatch`` command, ``python -m hub``). Returns the old umask."""
    return os.umask(PRIVATE_UMASK)


def is_private(path: Path) -> bool:
    """True when neither the group nor others may read, write or enter ``path``."""
    try:
        return path.stat().st_mode & 0o077 == 0
    except OSError:
        return True


def tighten(root: Path) -> int:
    """Make the hub's files under ``root`` 0600 and its folders 0700 (an install from before files were private).
    Symlinks are neither followed nor changed. Returns how many modes changed."""
    changed = 0

    def fix(p: Path, mode: int) -> None:
        nonlocal changed
        try:
            st = p.lstat()
        except OSError:
            return
        if stat.S_ISLNK(st.st_mode) or stat.S_IMODE(st.st_mode) == mode:
            return
        if stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode):
            os.chmod(p, mode)
            changed += 1

    fix(root, PRIVATE_DIR)
    for name in _OWN_FILES:
        fix(root / name, PRIVATE_FILE)
    for name in _OWN_TREES:
        top = root / name
        if not top.is_dir() or top.is_symlink():
            continue
        fix(top, PRIVATE_DIR)
        for dirpath, dirnames, filenames in os.walk(top):  # os.walk does not follow symlinked folders
            for d in dirnames:
                fix(Path(dirpath) / d, PRIVATE_DIR)
            for f in filenames:
                fix(Path(dirpath) / f, PRIVATE_FILE)
    return changed


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
        """The server certificate's private key (0600)."""
        return self.tls_dir / "key.pem"

    @property
    def ca_key_path(self) -> Path:
        """The hub CA's private key (0600): it can only sign for the hub's own names (hub/tls.py)."""
        return self.tls_dir / "ca-key.pem"

    @property
    def server_cert_path(self) -> Path:
        """The short-lived server certificate, followed by the hub CA (the chain the HTTPS server sends)."""
        return self.tls_dir / "server.pem"

    @property
    def secrets_path(self) -> Path:
        return self.root / "secrets.json"

    def ensure(self) -> DataDir:
        """Create the folders, failing with a message that says how to fix permissions."""
        was_private = self.root.is_dir() and is_private(self.root)
        for d in (self.root, self.clips_dir, self.tls_dir):
            try:
                d.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
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
        if not was_private:
            # A new folder, or one an older version (or a umask of 022) left readable: close it once. Once the
            # root is 0700 nothing under it is reachable by another user, so later starts skip the walk.
            tighten(self.root)
        for d in (self.root, self.clips_dir, self.tls_dir):
            os.chmod(d, PRIVATE_DIR)
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
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE)
    try:
        os.write(fd, content)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, PRIVATE_FILE)
    os.replace(tmp, path)


def create_private(path: Path) -> None:
    """Create (or truncate) ``path`` as an empty 0600 file, so a writer that opens it by name afterwards (libav,
    SQLite) keeps that mode whatever the umask."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE)
    try:
        os.fchmod(fd, PRIVATE_FILE)
    finally:
        os.close(fd)


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



def make_private_dirs(path: Path) -> None:
    """``mkdir -p`` where every folder it makes is 0700 (``Path.mkdir(parents=True)`` gives the parents the
    umask's mode, not ``mode``)."""
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode=PRIVATE_DIR)
        except FileExistsError:
            continue
        os.chmod(d, PRIVATE_DIR)
