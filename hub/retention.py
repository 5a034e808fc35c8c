"""Retention, and the one way an event leaves the hub.

Retention: events leave by age, then oldest first while clips exceed the disk budget or the disk runs low.
Planning is separate from deleting so `pingwatch events prune --dry-run` shows exactly what a real run would
remove. Sizes come from the disk: each file the event owns (``event_files``) is stat'ed, because the row's
``clip_size`` is missing for recovered or failed clips and says nothing of snapshots, thumbnails or left-over
temp files. Each event counted as deleted adds its size to the space freed, so one pass deletes only as many
events as the budget needs.

Deletion: ``delete_event`` is used by the web UI's DELETE route (and so by `pingwatch events delete`), by the
hub's retention pass and by `pingwatch events prune` (both through ``apply_prune``). It refuses an event still
recording, and every path it unlinks is checked by ``hub.datadir.contained_file``.
"""

from __future__ import annotations

import logging
import shutil
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hub.clips import is_disk_full, part_path_for, tmp_path_for
from hub.config import StorageConfig
from hub.datadir import contained_file
from hub.errors import ErrorKind, HubError
from hub.store import Store

log = logging.getLogger(__name__)
GB = 1_000_000_000

MEDIA_KEYS = ("clip_path", "snapshot_path", "thumb_path")
# "recording" is what the recorder writes until the clip is finished and the row updated (hub/recorder.py);
# "active" is the engine's word, accepted too since the web UI, notifier and uploader treat it as open.
OPEN_STATUSES = frozenset({"recording", "active"})


class EventDeleteError(HubError):
    """An event that cannot be deleted: unknown (already gone), or still recording."""


@dataclass
class PrunePlan:
    events: list[dict[str, Any]] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)  # event id -> "age" | "budget" | "disk"
    bytes_freed: int = 0
    clips_bytes_before: int = 0
    clips_dir: Path | None = None  # the folder every file removed must lie in


@dataclass(frozen=True)
class DeletedEvent:
    event: dict[str, Any]  # the row as it was
    removed: tuple[Path, ...]  # files unlinked by this call
    errors: tuple[str, ...]  # "name: reason" for files that stayed (a file already gone is not one)


def is_recording(event: dict[str, Any]) -> bool:
    """Still being written: its clip is a ``.part`` and its row will change. Never deleted."""
    return event.get("status") in OPEN_STATUSES


def _stored_paths(event: dict[str, Any]) -> list[str]:
    """Every path the event may own, as stored: clip, snapshot, thumbnail, and their sidecars (the clip's
    ``.part`` while it was recorded, the ``.tmp`` of an atomic write cut short), named as hub/clips.py names them."""
    out: list[str] = []
    for key in MEDIA_KEYS:
        stored = event.get(key)
        if not stored or not isinstance(stored, str) or "\x00" in stored:
            continue
        p = Path(stored)
        out += [stored, str(tmp_path_for(p))]
        if key == "clip_path":
            out.append(str(part_path_for(p)))
    return out


def event_files(event: dict[str, Any], clips_dir: Path, data_root: Path | None = None) -> list[Path]:
    """The event's files that exist, each only if it is a regular file inside the clips folder.

    A row can be tampered with (a copied database, a bug): a stored path naming the hub's key or /etc (or a
    sidecar next to one) is simply not one of the event's files (hub.datadir.contained_file)."""
    files = [contained_file(clips_dir, s, data_root) for s in _stored_paths(event)]
    return list(dict.fromkeys(f for f in files if f is not None))


def _event_bytes(event: dict[str, Any], clips_dir: Path) -> int:
    total = 0
    for p in event_files(event, clips_dir, clips_dir.parent):
        try:
            total += p.stat().st_size
        except OSError:
            pass
    return total


def plan_prune(store: Store, cfg: StorageConfig, clips_dir: Path, now: float | None = None,
               free_bytes: int | None = None, extra_free: int = 0) -> PrunePlan:
    now = time.time() if now is None else now
    plan = PrunePlan(clips_dir=clips_dir)
    cutoff = now - cfg.retention_days * 86400
    events = [e for e in store.iter_events_oldest_first() if not is_recording(e)]
    sizes = {e["id"]: _event_bytes(e, clips_dir) for e in events}
    plan.clips_bytes_before = total = sum(sizes.values())
    if free_bytes is None:
        clips_dir.mkdir(parents=True, exist_ok=True)
        free_bytes = shutil.disk_usage(clips_dir).free
    budget = int(cfg.max_disk_gb * GB)
    need_free = int(cfg.min_free_gb * GB) + extra_free
    for ev in events:
        if ev["start"] < cutoff:
            reason = "age"
        elif total > budget:
            reason = "budget"
        elif free_bytes < need_free:
            reason = "disk"
        else:
            break  # oldest first: once one event may stay, every newer one may too
        plan.events.append(ev)
        plan.reasons[ev["id"]] = reason
        # What this event frees counts before the next is considered: one event over budget costs one event.
        plan.bytes_freed += sizes[ev["id"]]
        total -= sizes[ev["id"]]
        free_bytes += sizes[ev["id"]]
    return plan


def _unlink_files(files: list[Path], clips_dir: Path) -> tuple[list[Path], list[str]]:
    """Unlink files (already contained) and the camera/day folders left empty."""
    root = clips_dir.resolve()
    removed: list[Path] = []
    errors: list[str] = []
    for f in files:
        try:
            f.unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:
            errors.append(f"{f.name}: {exc.strerror}")
            continue
        removed.append(f)
        parent = f.parent
        while parent != root and parent.is_relative_to(root):  # drop now-empty camera/day folders
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent
    return removed, errors


def delete_event(store: Store, event_id: str, clips_dir: Path, data_root: Path | None = None) -> DeletedEvent:
    """The one way an event leaves the hub: its row, then every file it owns inside ``clips_dir``.

    The row is read here, not taken from the caller, so what is checked and unlinked is the row as it is now,
    not a copy from a plan made earlier or on another connection (the event may be gone since). Raises
    ``EventDeleteError`` (NOT_FOUND; CONFLICT for an event still recording). The row goes first so no view lists
    an event whose clip is half gone; files are resolved before that, from the row. Runs on the store's thread."""
    ev = store.get_event(event_id)
    if ev is None:
        raise EventDeleteError(ErrorKind.NOT_FOUND, f"no event '{event_id}'", "it may have been deleted or expired")
    if is_recording(ev):
        # Its clip is still being written (a .part the recorder holds open) and the recorder updates the row
        # when it ends: deleting now would leave a finished clip with no row, or a row pointing at nothing.
        raise EventDeleteError(ErrorKind.CONFLICT, "the event is still recording",
                               "delete it once its clip is finished")
    files = event_files(ev, clips_dir, data_root)
    try:
        store.delete_event(event_id)
    except sqlite3.OperationalError as exc:
        if not is_disk_full(exc):
            raise
        # A full disk: SQLite needs room to commit even a delete (its WAL grows first). The files go first,
        # which makes that room; a row whose clip is gone for a moment is the lesser harm than a hub that can
        # never free its disk.
        removed, errors = _unlink_files(files, clips_dir)
        store.delete_event(event_id)
        log.warning("disk full: removed the event's files before its row", extra={"event_id": event_id})
        return DeletedEvent(ev, tuple(removed), tuple(errors))
    removed, errors = _unlink_files(files, clips_dir)
    if errors:
        log.warning("event files not removed", extra={"event_id": event_id, "errors": errors})
    return DeletedEvent(ev, tuple(removed), tuple(errors))


def apply_prune(store: Store, plan: PrunePlan,
                on_deleted: Callable[[dict[str, Any]], object] | None = None) -> int:
    """Delete the plan's events (``delete_event`` each); returns how many went. An event deleted meanwhile (web
    UI, CLI) is skipped, not an error."""
    clips_dir = plan.clips_dir
    if plan.events and clips_dir is None:
        raise ValueError("a prune plan without its clips folder cannot be applied")  # plans come from plan_prune
    removed = 0
    for ev in plan.events:
        assert clips_dir is not None  # checked above
        try:
            # Rows with paths relative to the data folder (hub.datadir layout: <data>/clips) resolve from there too.
            delete_event(store, ev["id"], clips_dir, clips_dir.parent)
        except EventDeleteError as exc:
            log.info("retention skipped an event", extra={"event_id": ev["id"], "why": exc.message})
            continue
        except sqlite3.Error as exc:  # the database refused (still full, locked): the next pass tries again
            log.error("retention could not delete an event; trying again at the next pass",
                      extra={"event_id": ev["id"], "error": str(exc)})
            continue
        removed += 1
        if on_deleted is not None:
            on_deleted(ev)
    if plan.events:
        why = sorted(set(plan.reasons.values()))  # age: too old; budget: max_disk_gb; disk: too little free space
        log.info("retention removed events", extra={"count": removed, "reasons": why,
                                                     "freed_mb": round(plan.bytes_freed / 1e6, 1)})
    return removed
