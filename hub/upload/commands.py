"""Commands from the cloud account (its page, its Telegram bot's buttons and /arm, /disarm, /snapshot), acted on
by the hub through its control surface, the same one the MQTT bridge and the hub's own bot use.

Two tasks: the poller long-polls GET /hub/commands (the cloud holds the request until a command comes or
``commands_wait_s`` pass, so a button press reaches the hub at once without an open port at home), acts, and
keeps each result in ``cloud_commands`` (the hub's SQLite); the poster sends the results, retried with backoff
until the cloud has them (at-least-once: the cloud keeps the first result of a command).

Exactly-once effects on the hub: a command id already in ``cloud_commands`` is never acted on again; a
redelivered one only has its result sent again. Arm and disarm act and record in one step (no await between),
so a crash cannot leave one acted on but unrecorded; a snapshot is harmless to take twice. Kinds this version
does not know are answered ``ok: false`` ("not supported by this hub version"), never ignored: the person who
pressed the button learns it at once.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hub.config import CloudConfig
from hub.control_api import ControlLike
from hub.errors import HubError
from hub.retry import Wakeup, backoff_s
from hub.store import Store
from hub.upload.channel import UNLINKED_RECHECK_S, ApiFactory, LinkedClient
from hub.upload.cloud_api import CloudApi, CloudAuthError, CloudError, CloudRefused
from hub.upload.link import CloudLink
from hub.upload.starts import MAX_SNAPSHOT_BYTES

log = logging.getLogger(__name__)

TABLE = "cloud_commands"
RETRY_BASE_S = 1.0
POLL_GRACE_S = 15.0  # the long poll's read timeout is its wait plus this (the cloud answers at the wait's end)
MAX_DISARM_S = 30 * 86_400
MAX_MESSAGE = 300
KEEP_S = 7 * 86_400  # posted results are kept this long (a redelivered command is answered from them)
UNSUPPORTED = "not supported by this hub version"


@dataclass(frozen=True)
class Outcome:
    ok: bool
    message: str
    snapshot: bytes | None = None
    camera_id: str | None = None

    def body(self) -> dict[str, Any]:
        return {"ok": self.ok, "message": self.message[:MAX_MESSAGE], "camera_id": self.camera_id,
                "snapshot_jpeg": base64.b64encode(self.snapshot).decode() if self.snapshot else None}


@dataclass(frozen=True)
class ResultRow:
    command_id: str
    kind: str
    body: dict[str, Any]
    state: str  # pending (to post) | posted | refused (the cloud would not take it)
    attempts: int


class CommandLog:
    """Every command acted on, and its result until (and after) the cloud has it."""

    def __init__(self, store: Store) -> None:
        self._db = store.db
        self._db.execute(
            f"CREATE TABLE IF NOT EXISTS {TABLE} (command_id TEXT PRIMARY KEY, kind TEXT NOT NULL, "
            "received_at REAL NOT NULL, ok INTEGER NOT NULL, message TEXT NOT NULL, body TEXT NOT NULL, "
            "state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, next_at REAL NOT NULL, reason TEXT, "
            "posted_at REAL)")
        self._db.execute(f"CREATE INDEX IF NOT EXISTS ix_{TABLE}_due ON {TABLE} (state, next_at)")

    def known(self, command_id: str) -> bool:
        return self._db.execute(f"SELECT 1 FROM {TABLE} WHERE command_id = ?", [command_id]).fetchone() is not None

    def record(self, command_id: str, kind: str, outcome: Outcome) -> None:
        now = time.time()
        with self._db.conn:
            self._db.execute(
                f"INSERT OR IGNORE INTO {TABLE} (command_id, kind, received_at, ok, message, body, state, next_at) "
                "VALUES (?, ?, ?, ?, ?, ?, 'pending', ?)",
                [command_id, kind[:32], now, int(outcome.ok), outcome.message[:MAX_MESSAGE],
                 json.dumps(outcome.body()), now])

    def resend(self, command_id: str) -> bool:
        """The cloud delivered a command again: it may have lost the result, so send it again."""
        cur = self._db.execute(f"UPDATE {TABLE} SET state = 'pending', next_at = ? WHERE command_id = ? "
                               "AND state = 'posted'", [time.time(), command_id])
        return cur.rowcount == 1

    def next_due(self, now: float) -> tuple[ResultRow | None, float | None]:
        row = self._db.execute(f"SELECT command_id, kind, body, state, attempts FROM {TABLE} WHERE state = 'pending' "
                               "AND next_at <= ? ORDER BY received_at LIMIT 1", [now]).fetchone()
        nxt = self._db.execute(f"SELECT MIN(next_at) FROM {TABLE} WHERE state = 'pending'").fetchone()[0]
        if row is None:
            return None, nxt
        return ResultRow(row[0], row[1], json.loads(row[2]), row[3], row[4]), nxt

    def posted(self, row: ResultRow) -> None:
        self._db.execute(f"UPDATE {TABLE} SET state = 'posted', attempts = ?, reason = NULL, posted_at = ? "
                         "WHERE command_id = ?", [row.attempts + 1, time.time(), row.command_id])

    def retry(self, row: ResultRow, reason: str, after_s: float) -> None:
        self._db.execute(f"UPDATE {TABLE} SET attempts = ?, next_at = ?, reason = ? WHERE command_id = ?",
                         [row.attempts + 1, time.time() + after_s, reason, row.command_id])

    def refuse(self, row: ResultRow, reason: str) -> None:
        self._db.execute(f"UPDATE {TABLE} SET state = 'refused', attempts = ?, reason = ? WHERE command_id = ?",
                         [row.attempts + 1, reason, row.command_id])

    def get(self, command_id: str) -> dict[str, Any] | None:
        row = self._db.execute(f"SELECT command_id, kind, ok, message, state, attempts, reason FROM {TABLE} "
                               "WHERE command_id = ?", [command_id]).fetchone()
        if row is None:
            return None
        return {"command_id": row[0], "kind": row[1], "ok": bool(row[2]), "message": row[3], "state": row[4],
                "attempts": row[5], "reason": row[6]}

    def counts(self) -> dict[str, int]:
        rows = self._db.execute(f"SELECT state, COUNT(*) FROM {TABLE} GROUP BY state").fetchall()
        return {state: n for state, n in rows}

    def prune(self, before: float) -> int:
        return self._db.execute(f"DELETE FROM {TABLE} WHERE state != 'pending' AND received_at < ?",
                                [before]).rowcount


class CommandRunner:
    def __init__(self, config: CloudConfig, store: Store, control: ControlLike,
                 load_link: Callable[[], CloudLink | None], *, retry_base_s: float = RETRY_BASE_S,
                 recheck_s: float = UNLINKED_RECHECK_S, api_factory: ApiFactory | None = None,
                 on_reached: Callable[[], None] | None = None) -> None:
        self._config = config
        self._control = control
        self._retry_base_s = retry_base_s
        self._recheck_s = recheck_s
        self._client = LinkedClient(load_link, api_factory)
        self._on_reached = on_reached or (lambda: None)
        self.log = CommandLog(store)
        self._wake = Wakeup()
        self._tasks: list[asyncio.Task[None]] = []
        self.error: str | None = None
        self.acted = 0  # commands acted on by this process (for tests and status)
        self.polling = False  # a long poll is open at the cloud now

    @property
    def active(self) -> bool:
        return self._config.enabled

    async def start(self) -> None:
        if not self.active:
            return
        self.log.prune(time.time() - KEEP_S)
        self._tasks = [asyncio.create_task(self._poll_loop(), name="cloud-commands"),
                       asyncio.create_task(self._post_loop(), name="cloud-command-results")]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        await self._client.close()

    def status(self) -> dict[str, Any]:
        counts = self.log.counts()
        return {"enabled": self.active, "remote_control": self._config.remote_control, "polling": self.polling,
                "acted": self.acted, "results_waiting": counts.get("pending", 0), "error": self.error}

    # -- the poller ------------------------------------------------------------------------------------------

    async def _poll_loop(self) -> None:
        failures = 0
        wait_s = self._config.commands_wait_s
        while True:
            api = self._client.current()
            if api is None:
                await asyncio.sleep(self._recheck_s)  # retry pacing: looking for a link
                continue
            try:
                self.polling = True
                commands = await api.commands(wait_s, timeout_s=wait_s + POLL_GRACE_S)
            except asyncio.CancelledError:
                raise
            except CloudAuthError as exc:
                self.error = exc.message
                log.error("the cloud refused the hub's token; commands are not read until the hub is linked again",
                          extra={"error": exc.message, "hint": "run 'pingwatch cloud link'"})
                await asyncio.sleep(self._recheck_s)  # retry pacing: a person has to link the hub again
                continue
            except CloudError as exc:
                failures += 1
                self.error = exc.message
                if isinstance(exc, CloudRefused):
                    log.warning("the cloud refuses the hub's request for commands", extra={"error": exc.message})
                after = exc.retry_after_s
                await asyncio.sleep(after if after is not None else  # retry pacing with jitter
                                    backoff_s(failures, self._retry_base_s, self._config.retry_max_s))
                continue
            finally:
                self.polling = False
            if failures:
                self._on_reached()  # the cloud is back: the other senders need not wait out their backoff
            failures, self.error = 0, None
            for command in commands:
                await self.handle(command)

    async def handle(self, command: dict[str, Any]) -> None:
        """Act on one command once, and queue its result; a command seen before only has its result sent again."""
        command_id = str(command.get("id") or "")
        if not command_id:
            return
        if self.log.known(command_id):
            if self.log.resend(command_id):
                self._wake.set()
            return
        kind = str(command.get("kind") or "")
        args = command.get("args") if isinstance(command.get("args"), dict) else {}
        assert isinstance(args, dict)
        outcome = await self._act(kind, args)
        self.log.record(command_id, kind, outcome)  # no await since arm/disarm acted: recorded with the effect
        self.acted += 1
        log.info("cloud command done", extra={"command_id": command_id, "kind": kind, "ok": outcome.ok,
                                              "message": outcome.message})
        self._wake.set()

    async def _act(self, kind: str, args: dict[str, Any]) -> Outcome:
        if not self._config.remote_control:
            return Outcome(False, "this hub takes no commands from the cloud (cloud.remote_control is off)")
        try:
            if kind == "arm":
                self._control.set_armed(True)
                return Outcome(True, "armed")
            if kind == "disarm":
                return self._disarm(args)
            if kind == "snapshot":
                return await self._snapshot(args.get("camera_id"))
        except HubError as exc:
            return Outcome(False, exc.message + (f" ({exc.hint})" if exc.hint else ""))
        except Exception as exc:  # the person waiting learns it failed, not silence
            log.exception("a cloud command failed", extra={"kind": kind})
            return Outcome(False, f"the hub could not do it ({type(exc).__name__})")
        return Outcome(False, UNSUPPORTED)

    def _disarm(self, args: dict[str, Any]) -> Outcome:
        for_s = args.get("for_s")
        if for_s is not None and (isinstance(for_s, bool) or not isinstance(for_s, int | float)
                                  or not 0 < for_s <= MAX_DISARM_S):
            return Outcome(False, f"for_s must be a number of seconds between 1 and {MAX_DISARM_S}, or null")
        until = self._control.set_armed(False, None, float(for_s) if for_s is not None else None)
        if until is None:
            return Outcome(True, "disarmed")
        return Outcome(True, f"disarmed until {time.strftime('%Y-%m-%d %H:%M %Z', time.localtime(until))}")

    async def _snapshot(self, camera_id: Any) -> Outcome:
        cameras = self._control.cameras()
        if camera_id is not None:
            cam = next((c for c in cameras if str(c.get("id")) == str(camera_id)), None)
            if cam is None:
                return Outcome(False, f"no camera '{str(camera_id)[:64]}' on this hub")
            candidates = [cam]
        else:  # every camera: the first online one that has a picture (a result carries one)
            candidates = sorted((c for c in cameras if c.get("online")), key=lambda c: str(c.get("id")))
            if not candidates:
                return Outcome(False, "no camera is online")
        missing = []
        for cam in candidates:
            cid, name = str(cam["id"]), str(cam.get("name") or cam["id"])
            jpeg = await self._control.snapshot(cid)
            if not jpeg:
                missing.append(name)
                continue
            if len(jpeg) > MAX_SNAPSHOT_BYTES:
                return Outcome(False, f"the picture from {name} is too large to send", camera_id=cid)
            return Outcome(True, f"snapshot of {name}", snapshot=jpeg, camera_id=cid)
        return Outcome(False, f"no picture from {', '.join(missing)} yet (offline, or nothing buffered)",
                       camera_id=str(camera_id) if camera_id is not None else None)

    # -- the poster ------------------------------------------------------------------------------------------

    async def _post_loop(self) -> None:
        while True:
            api = self._client.current()
            if api is None:
                await self._wake.wait(self._recheck_s)
                continue
            row, next_at = self.log.next_due(time.time())
            if row is None:
                await self._wake.wait(None if next_at is None else max(0.0, next_at - time.time()))
                continue
            try:
                await self._post(api, row)
            except asyncio.CancelledError:
                raise
            except CloudAuthError as exc:
                self.log.retry(row, exc.message, self._recheck_s)
                await self._wake.wait(self._recheck_s)
            except Exception as exc:
                log.exception("posting a command's result failed unexpectedly; retrying later",
                              extra={"command_id": row.command_id})
                self.log.retry(row, f"{type(exc).__name__}: {exc}",
                               backoff_s(row.attempts + 1, self._retry_base_s, self._config.retry_max_s))

    async def _post(self, api: CloudApi, row: ResultRow) -> None:
        try:
            await api.command_result(row.command_id, row.body)
        except CloudAuthError:
            raise
        except CloudRefused as exc:  # unknown, expired or a result the cloud will never take: nothing to retry
            self.log.refuse(row, exc.message)
            log.warning("the cloud refused a command's result", extra={"command_id": row.command_id,
                                                                        "reason": exc.reason, "error": exc.message})
            return
        except CloudError as exc:  # CloudRetry: down, busy
            after = exc.retry_after_s
            self.log.retry(row, exc.message, after if after is not None else
                           backoff_s(row.attempts + 1, self._retry_base_s, self._config.retry_max_s))
            return
        self.log.posted(row)
