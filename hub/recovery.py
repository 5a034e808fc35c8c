"""Start-up repair after a crash or power cut: every event row ends up pointing to a clip that plays.

A clip being recorded lives in a ``.part`` file next to its final name (see hub/clips.py). After SIGKILL the
row still says ``recording``: the part is remuxed up to its last complete GOP and the row marked ``partial``;
if nothing decodable was written, the row loses its clip and is marked ``failed``. A ``partial`` row whose clip
is missing but whose ``.part`` is there lost only its final remux (the disk was full, hub/recorder.py): the part
is finished now and the row gets its size and duration. Orphaned temp files (no row)
are recovered into clips or removed, so no temp file survives a start.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hub.clips import ClipError, part_path_for, probe_clip, recover_folder, recover_partial
from hub.store import Store

log = logging.getLogger(__name__)


def recover(store: Store, clips_dir: Path) -> dict[str, int]:
    counts = {"partial": 0, "complete": 0, "failed": 0}
    for ev in store.events_with_status("recording"):
        clip = Path(ev["clip_path"]) if ev.get("clip_path") else None
        info = None
        status = "failed"
        if clip is not None and clip.exists():
            # killed after the rename but before the row was updated: the clip is whole
            try:
                info, status = probe_clip(clip), "complete"
            except ClipError:
                clip.unlink(missing_ok=True)
        elif clip is not None and part_path_for(clip).exists():
            try:
                info = recover_partial(part_path_for(clip))
            except ClipError as exc:
                log.warning("could not recover clip", extra={"event_id": ev["id"], "error": str(exc)})
            status = "partial" if info or part_path_for(clip).exists() else "failed"
        fields: dict[str, Any] = {"status": status}
        if info is None and status == "partial" and clip is not None:
            # The disk is full: the part stays and the row keeps its clip's name for the next start to finish.
            fields.update(end=ev.get("end") or ev["start"])
        elif info is not None:
            fields.update(clip_path=str(info.path), clip_size=info.size, clip_codec=info.codec,
                          clip_duration_s=info.duration_s, end=ev.get("end") or (ev["start"] + info.duration_s))
        else:
            fields.update(clip_path=None, clip_size=None, end=ev.get("end") or ev["start"])
        store.update_event(ev["id"], **fields)
        counts[status] += 1
        log.warning("recovered event interrupted by a crash",
                    extra={"event_id": ev["id"], "status": status, "camera_id": ev["camera_id"]})
    for ev in store.events_with_status("partial"):
        _finish_kept_part(store, ev)
    if clips_dir.exists():
        for d in {p.parent for p in clips_dir.rglob(".*") if p.is_file()}:
            recover_folder(d)
    return counts


def _finish_kept_part(store: Store, ev: dict[str, Any]) -> None:
    clip = Path(ev["clip_path"]) if ev.get("clip_path") else None
    if clip is None or clip.exists() or not part_path_for(clip).exists():
        return
    try:
        info = recover_partial(part_path_for(clip))
    except ClipError as exc:
        log.warning("could not finish a kept clip", extra={"event_id": ev["id"], "error": str(exc)})
        if part_path_for(clip).exists():
            return  # still no room: kept for the next start
        info = None
    if info is None:
        store.update_event(ev["id"], clip_path=None, clip_size=None)
        return
    store.update_event(ev["id"], clip_path=str(info.path), clip_size=info.size, clip_codec=info.codec,
                       clip_duration_s=round(info.duration_s, 3))
    log.warning("finished a clip kept after a failed final remux", extra={"event_id": ev["id"]})
