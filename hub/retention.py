"""Retention: events leave by age, then oldest first while clips exceed the disk budget or the disk runs low.

Planning is separate from deleting so `pingwatch events prune --dry-run` shows exactly what a real run would
remove. Sizes come from the store (clip_size is recorded when a clip is finished), so planning never walks the
clip folder.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hub.config import StorageConfig
from hub.datadir import contained_file
from hub.store import Store

log = logging.getLogger(__name__)
GB = 1_000_000_000


@dataclass
class PrunePlan:
    events: list[dict[str, Any]] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)  # event id -> "age" | "budget" | "disk"
    bytes_freed: int = 0
    clips_bytes_before: int = 0
    clips_dir: Path | None = None  # the folder every file removed must lie in


MEDIA_KEYS = ("clip_path", "snapshot_path", "thumb_path")


def event_files(event: dict[str, Any], clips_dir: Path, data_root: Path | None = None) -> list[Path]:
    """The event's clip, snapshot and thumbnail, each only if it is a regular file inside the clips folder.

    A row can be tampered with (a copied database, a bug): a stored path naming the hub's key or /etc is simply
    not one of the event's files (hub.datadir.contained_file)."""
    files = [contained_file(clips_dir, event.get(k), data_root) for k in MEDIA_KEYS]
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
    events = [e for e in store.iter_events_oldest_first() if e["status"] != "recording"]
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
        plan.bytes_freed += sizes[ev["id"]]
        total -= sizes[ev["id"]]
        free_bytes += sizes[ev["id"]]
    return plan


def remove_event_files(event: dict[str, Any], clips_dir: Path, data_root: Path | None = None) -> list[str]:
    """Unlink the event's files (contained to the clips folder) and the camera/day folders left empty.
    Returns what could not be removed ("name: reason"); a file already gone is not an error."""
    root = clips_dir.resolve()
    errors = []
    for f in event_files(event, clips_dir, data_root):
        try:
            f.unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:
            errors.append(f"{f.name}: {exc.strerror}")
            continue
        parent = f.parent
        while parent != root and parent.is_relative_to(root):  # drop now-empty camera/day folders
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent
    return errors


def delete_event(store: Store, event: dict[str, Any], clips_dir: Path, data_root: Path | None = None) -> list[str]:
    """The one way an event leaves the hub (web UI, retention, `pingwatch events prune`): its row, then its files.
    The row goes first so no view lists an event whose clip is half gone. Returns files not removed."""
    store.delete_event(event["id"])
    errors = remove_event_files(event, clips_dir, data_root)
    if errors:
        log.warning("event files not removed", extra={"event_id": event["id"], "errors": errors})
    return errors


def apply_prune(store: Store, plan: PrunePlan, on_deleted: Any = None) -> int:
    clips_dir = plan.clips_dir
    if plan.events and clips_dir is None:
        raise ValueError("a prune plan without its clips folder cannot be applied")  # plans come from plan_prune
    for ev in plan.events:
        assert clips_dir is not None  # checked above
        # Rows with paths relative to the data folder (hub.datadir layout: <data>/clips) resolve from there too.
        delete_event(store, ev, clips_dir, clips_dir.parent)
        if on_deleted is not None:
            on_deleted(ev)
    if plan.events:
        why = sorted(set(plan.reasons.values()))  # age: too old; budget: max_disk_gb; disk: too little free space
        log.info("retention removed events", extra={"count": len(plan.events), "reasons": why,
                                                     "freed_mb": round(plan.bytes_freed / 1e6, 1)})
    return len(plan.events)
