"""The worker process's queue loop: take an event's message, analyse its clip, record the result exactly once.

Delivery is at-least-once (Azure Storage Queue); effects are exactly-once because every one is keyed by the
event id:
- the state moves by conditional UPDATEs (WorkerHooks): ``queued|processing → processing → done|failed``; a
  message for an event that is already done or failed is just deleted;
- the credit charge was taken at finalize (``charge:<event>``); a failure refunds it once (``refund:<event>``);
- snapshots have names derived from the event's blob, so a repeat overwrites, never adds;
- the ``done`` transition is the "analysed" record: it happens once (``complete`` returns False for a repeat),
  carries ``summary.notify`` / ``summary.reason``, and the notifier keys on (event id, state ``done``).

Per message: a message delivered more than ``max_deliveries`` times (its workers kept dying) goes to
``<queue>-poison`` and the event fails; otherwise the clip is downloaded, checked against the size and MD5 that
finalize verified (an upload SAS outlives finalize by minutes and could replace the blob), analysed, and its
snapshots stored. A WorkerError (the clip's fault) fails the event for good; any other exception (storage, the
database) leaves the message to come back after ``retry_delay_s``, and the last allowed delivery poisons it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cloud.api.services.worker import WorkerHooks, WorkItem
from cloud.config import WorkerConfig
from cloud.storage.blob import BlobNotFound, BlobStore
from cloud.storage.queue import JobQueue, QueueMessage
from cloud.worker.analysis import AnalysisConfig, AnalysisResult, analyse
from cloud.worker.errors import BoxesError, ModelError, WorkerError
from cloud.worker.lease import Lease
from cloud.worker.model import Detector
from cloud.worker.rules import parse_prompt
from cloud.worker.vlm import VlmClient
from pingwatch_common.aio import within

log = logging.getLogger(__name__)

EXTENSIONS = {"video/mp4": "mp4", "video/webm": "webm"}

# (event id, new state) for whoever shows progress live (the WebSocket channel of a later issue); the database
# already has the state, so this is a nudge, never the record.
Listener = Callable[[str, str], None]


class JobFailed(Exception):
    """The event cannot be analysed, for a reason a retry would not change: ``reason`` is stored on the event."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Outcome:
    message_id: str
    event_id: str | None
    result: str  # done | failed | skipped | retry | poisoned | released
    reason: str | None = None


def snapshot_name(blob_name: str, label: str) -> str:
    """``<account>/<hub>/<event>.<label>.jpg`` beside the clip: one name per (event, label), so a redelivery
    overwrites the same blob."""
    stem = blob_name.rsplit(".", 1)[0]
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in label)[:40] or "label"
    return f"{stem}.{safe}.jpg"


def _md5_b64(path: Path) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return base64.b64encode(h.digest()).decode()


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def summary_of(result: AnalysisResult, snapshots: dict[str, str], attempt: int) -> dict[str, Any]:
    """What the API shows for a done event (``summary`` column): the sentence, the local decision, the labels and
    where each snapshot is. The frames' boxes are kept (at most a few dozen rows) for drawing over the clip."""
    data = result.to_json()
    return {
        "text": result.summary, "notify": result.notify, "reason": result.reason, "tags": result.tags,
        "labels": [asdict(lab) for lab in result.labels], "best_guess": result.best_guess,
        "snapshots": snapshots, "frames": data["frames"], "rules": result.rules, "clip": result.clip,
        "provider": result.provider, "model": result.model, "guided": result.guided,
        "detector_images": result.detector_images, "warnings": result.warnings, "attempt": attempt,
        "analysed_at": datetime.now(UTC).isoformat(),
    }


class Consumer:
    """N of these (in one or many processes) compete for one queue; each runs ``concurrency`` jobs at once."""

    def __init__(self, hooks: WorkerHooks, blobs: BlobStore, queue: JobQueue, config: WorkerConfig,
                 analysis: AnalysisConfig, detector: Detector, vlm: VlmClient | None = None,
                 listener: Listener | None = None) -> None:
        self.hooks = hooks
        self.blobs = blobs
        self.queue = queue
        self.config = config
        self.analysis = analysis
        self.detector = detector
        self.vlm = vlm
        self.listener = listener
        self._stopping = asyncio.Event()
        self.outcomes: list[Outcome] = []  # this process's, newest last (logs and tests)

    # -- the loop ------------------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop taking messages (SIGTERM): running jobs get ``shutdown_grace_s`` to finish, then are released."""
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    async def run(self) -> None:
        cfg = self.config
        running: set[asyncio.Task[Outcome | None]] = set()
        stop_wait = asyncio.create_task(self._stopping.wait())
        try:
            while not self.stopping:
                free = cfg.concurrency - len(running)
                if free <= 0:
                    await asyncio.wait(running | {stop_wait}, return_when=asyncio.FIRST_COMPLETED)
                    running = {t for t in running if not t.done()}
                    continue
                try:
                    msgs = await self.queue.receive(min(free, 32), cfg.visibility_timeout_s)
                except Exception as exc:  # noqa: BLE001 - storage down or slow: keep polling, never die
                    log.warning("receive failed: %s", exc)
                    msgs = []
                if self.stopping:
                    for m in msgs:  # received just as the stop came: hand them straight back
                        await Lease(self.queue, m, cfg.visibility_timeout_s).release()
                    break
                for m in msgs:
                    running.add(asyncio.create_task(self._guarded(m), name=f"job-{m.id}"))
                running = {t for t in running if not t.done()}
                if not msgs:
                    with contextlib.suppress(TimeoutError):
                        await within(asyncio.shield(stop_wait), cfg.poll_interval_s)
        finally:
            stop_wait.cancel()
            await self._drain(running)

    async def _guarded(self, msg: QueueMessage) -> Outcome | None:
        try:
            return await self.handle(msg)
        except Exception:  # e.g. the database down while failing an event: the message comes back
            log.exception("message %s: left for a later delivery", msg.id)
            return None

    async def _drain(self, running: set[asyncio.Task[Outcome | None]]) -> None:
        pending = {t for t in running if not t.done()}
        if not pending:
            return
        log.info("stopping: %d job(s) running; waiting up to %g s", len(pending), self.config.shutdown_grace_s)
        _, pending = await asyncio.wait(pending, timeout=self.config.shutdown_grace_s)
        for t in pending:
            t.cancel()  # handle() releases the message on cancellation
        await asyncio.gather(*pending, return_exceptions=True)

    async def run_once(self, max_messages: int = 32) -> list[Outcome]:
        """Receive what is visible now (up to ``max_messages``) and handle it all; [] when the queue was empty."""
        msgs = await self.queue.receive(max_messages, self.config.visibility_timeout_s)
        return list(await asyncio.gather(*(self.handle(m) for m in msgs)))

    # -- one message ---------------------------------------------------------------------------------------

    async def handle(self, msg: QueueMessage) -> Outcome:
        lease = Lease(self.queue, msg, self.config.visibility_timeout_s)
        event_id = msg.body.get("event_id")
        if not isinstance(event_id, str) or not event_id:
            await lease.poison("not a job message (no event_id)")
            return self._record(Outcome(msg.id, None, "poisoned", "no event_id"))
        if msg.dequeue_count > self.config.max_deliveries:
            # Earlier deliveries never finished (the worker was killed: out of memory, a crash on this clip).
            why = f"poisoned: delivered {msg.dequeue_count} times without finishing (the worker stopped each time)"
            return await self._poison(lease, event_id, why)
        lease.start()
        try:
            result, reason = await self._job(event_id, msg.dequeue_count)
        except asyncio.CancelledError:
            # Shutdown ran out of grace: give the message back now rather than after its visibility timeout.
            await asyncio.shield(lease.release())
            self._record(Outcome(msg.id, event_id, "released"))
            raise
        except Exception as exc:  # noqa: BLE001 - anything but the clip's fault may pass: retry, then poison
            detail = f"{type(exc).__name__}: {exc}"[:250]
            if msg.dequeue_count >= self.config.max_deliveries:
                return await self._poison(lease, event_id, f"poisoned after {msg.dequeue_count} deliveries: {detail}")
            log.warning("event %s: attempt %d failed (%s); retry in %d s", event_id, msg.dequeue_count, detail,
                        self.config.retry_delay_s)
            await lease.retry_after(self.config.retry_delay_s)
            return self._record(Outcome(msg.id, event_id, "retry", detail))
        await lease.delete()
        return self._record(Outcome(msg.id, event_id, result, reason))

    async def _poison(self, lease: Lease, event_id: str, reason: str) -> Outcome:
        # The event first: were the worker to die between the two, the message comes back, finds the event
        # failed and is deleted; the other order could leave an event processing for ever.
        if await self.hooks.fail(event_id, reason):
            self._notify(event_id, "failed")
        await lease.poison(reason)
        log.error("event %s: %s; message moved to %s-poison", event_id, reason, self.queue.name)
        return self._record(Outcome(lease.msg.id, event_id, "poisoned", reason))

    def _record(self, outcome: Outcome) -> Outcome:
        self.outcomes.append(outcome)
        return outcome

    def _notify(self, event_id: str, state: str) -> None:
        if self.listener is not None:
            try:
                self.listener(event_id, state)
            except Exception:
                log.exception("listener failed")

    # -- the job -------------------------------------------------------------------------------------------

    async def _job(self, event_id: str, delivery: int) -> tuple[str, str | None]:
        item = await self.hooks.start(event_id)
        if item is None:
            log.info("event %s: nothing to do (unknown, done or failed); message deleted", event_id)
            return "skipped", None
        log.info("event %s processing (delivery %d, attempt %d)", event_id, delivery, item.attempts)
        self._notify(event_id, "processing")
        try:
            result = await self._analyse(item)
        except JobFailed as exc:
            if await self.hooks.fail(event_id, exc.reason):
                self._notify(event_id, "failed")
            log.info("event %s failed: %s", event_id, exc.reason)
            return "failed", exc.reason
        names: dict[str, str] = {}
        for label, jpeg in result.snapshots.items():
            name = snapshot_name(item.blob_name, label)
            await self.blobs.put(name, jpeg, "image/jpeg")
            names[label] = name
        main = next((names[lab.label] for lab in result.labels if lab.label in names), names.get("candidate"))
        labels = {lab.label: lab.max_confidence for lab in result.labels}
        done = await self.hooks.complete(event_id, labels, summary_of(result, names, item.attempts), main)
        if not done:  # another delivery of the same event finished first: its result stands
            log.info("event %s: already completed by another delivery", event_id)
            return "skipped", None
        log.info("event %s done: %s (notify %s; %s)", event_id, result.summary, result.notify, result.provider)
        self._notify(event_id, "done")
        await self._review(item, result)
        return "done", None

    async def _analyse(self, item: WorkItem) -> AnalysisResult:
        with tempfile.TemporaryDirectory(prefix="pingwatch-worker-") as tmp:
            path = Path(tmp) / f"clip.{EXTENSIONS.get(item.mime, 'bin')}"
            try:
                size = await self.blobs.download_to(item.blob_name, path)
            except BlobNotFound:
                raise JobFailed("blob_missing: the clip is no longer in storage") from None
            if item.size_bytes and size != item.size_bytes:
                raise JobFailed(f"clip_changed: the clip is {size} bytes, finalize verified {item.size_bytes}")
            if item.md5 and await asyncio.to_thread(_md5_b64, path) != item.md5:
                raise JobFailed("clip_changed: the clip's MD5 differs from the one declared (the hub committed "
                                "other bytes)")
            motion = item.motion if isinstance(item.motion, dict) else {}
            boxes = motion.get("boxes")
            prompt = item.prompts[-1] if item.prompts else None  # the camera's prompt over the hub's
            config = replace(self.analysis, boxes_offset_s=_number(motion.get("pre_roll_s")))
            run = (path, boxes, parse_prompt(prompt), item.camera_name, item.started_at, config, None,
                   self.detector)
            try:
                try:
                    return await asyncio.to_thread(analyse, *run)
                except BoxesError as exc:
                    # The boxes only say where to look first: without them the clip is still analysed in full.
                    log.warning("event %s: motion boxes ignored (%s)", item.event_id, exc.message)
                    result = await asyncio.to_thread(analyse, path, None, *run[2:])
                    result.warnings.append(f"motion boxes ignored: {exc.message}")
                    return result
            except ModelError:
                raise  # the worker's fault, not the clip's: another delivery (maybe another worker) retries
            except WorkerError as exc:
                raise JobFailed(f"{exc.reason}: {exc.message}") from None

    async def _review(self, item: WorkItem, result: AnalysisResult) -> None:
        """The optional VLM's second opinion, after the local result is recorded (it never delays an alert)."""
        if self.vlm is None or not self.vlm.worth_asking(result.top_score):
            return
        findings = result.summary + f" (local decision: {'alert' if result.notify else 'no alert'}, {result.reason})"
        prompt = item.prompts[-1] if item.prompts else ""
        verdict = await self.vlm.review(result.key_frames, prompt, findings)
        value: dict[str, Any] = (verdict.model_dump() if verdict is not None
                                 else {"error": self.vlm.last_error or "no answer"})
        await self.hooks.review(item.event_id, "vlm", value)
