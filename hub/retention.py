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
from hub.store import Store

log = logging.getLogger(__name__)
GB = 1_000_000_000


@dataclass
class PrunePlan:
    events: list[dict[str, Any]] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)  # event id -> "age" | "budget" | "disk"
    bytes_freed: int = 0
    clips_bytes_before: int = 0


def event_files(event: dict[str, Any]) -> list[Path]:
    return [Path(p) for p in (event.get("clip_path"), event.get("snapshot_path"), event.get("thumb_path")) if p]


def _event_bytes(event: dict[str, Any]) -> int:
    total = 0
    for p in event_files(event):
        try:
            total += p.stat().st_size
        except OSError:
            pass
    return total


def plan_prune(store: Store, cfg: StorageConfig, clips_dir: Path, now: float | None = None,
               free_bytes: int | None = None, extra_free: int = 0) -> PrunePlan:
    now = time.time() if now is None else now
    plan = PrunePlan()
    cutoff = now - cfg.retention_days * 86400
    events = [e for e in store.iter_events_oldest_first() if e["status"] != "recording"]
    sizes = {e["id"]: _event_bytes(e) for e in events}
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


def delete_event_files(event: dict[str, Any]) -> None:
    for p in event_files(event):
        try:
            p.unlink()
        except FileNotFoundError:
            pass


def apply_prune(store: Store, plan: PrunePlan, on_deleted: Any = None) -> int:
    for ev in plan.events:
        delete_event_files(ev)
        store.delete_event(ev["id"])
        if on_deleted is not None:
            on_deleted(ev)
    if plan.events:
        why = sorted(set(plan.reasons.values()))  # age: too old; budget: max_disk_gb; disk: too little free space
        log.info("retention removed events", extra={"count": len(plan.events), "reasons": why,
                                                     "freed_mb": round(plan.bytes_freed / 1e6, 1)})
    return len(plan.events)
