"""The hub channel against the real cloud API (SQLite and PostgreSQL) and a real Azurite: an event's start with
its snapshot, the hub's state, and commands from the account acted on by the real hub (its arm state, its
controller and a camera pipeline with a real H.264 GOP in its ring buffer).

"The cloud is down" is a small TCP relay between the hub and the API that the tests unplug: the hub sees what it
would see with no internet (refused connections, connections cut), the API keeps running. The relay can also
lose the answer to a request the API handled (the hub must retry, and the cloud must not record it twice).
Every wait is on a condition (polled under a deadline); nothing sleeps for synchronisation.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest_asyncio
import sqlalchemy as sa

from cloud.api.db.schema import event_starts, hub_commands
from hub.arming import ArmState
from hub.bus import Bus
from hub.cameras import CameraManager
from hub.config import CloudConfig as HubCloudConfig
from hub.config import HubConfig
from hub.control import Controller
from hub.pipeline import CameraPipeline, PipelineContext
from hub.store import Store
from hub.upload.channel import CloudChannel
from hub.upload.commands import UNSUPPORTED, CommandRunner
from hub.upload.hub_state import StateReporter
from hub.upload.link import CloudLink
from hub.upload.starts import StartReporter
from tests.cloud.conftest import CloudApi, HubSession
from tests.harness.ports import HOST
from tests.test_mqtt import encoded_gop

TIMEOUT = 30.0  # a bound on each awaited condition, not a timing assertion


async def until(check: Callable[[], Any], what: str) -> Any:
    """Poll ``check`` until it returns something truthy; fail with ``what`` after TIMEOUT."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)  # polling interval of the condition above


# -- an unpluggable relay between the hub and the cloud -----------------------------------------------------------


@dataclass
class Rule:
    prefix: bytes  # the start of a request ("POST /api/v1/hub/event-starts")
    mode: str  # "refuse": cut before the API sees it | "lose_answer": the API handles it, the hub never hears
    times: int
    hits: int = 0


@dataclass
class Relay:
    target_port: int
    port: int = 0
    rules: list[Rule] = field(default_factory=list)
    _server: asyncio.Server | None = None
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    async def plug(self) -> None:
        self._server = await asyncio.start_server(self._serve, HOST, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def unplug(self) -> None:
        """No internet: nothing listens, and open connections (a long poll) are cut."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for w in list(self._writers):
            w.close()

    def add_rule(self, prefix: str, mode: str, times: int = 1) -> Rule:
        rule = Rule(prefix.encode(), mode, times)
        self.rules.append(rule)
        return rule

    async def close(self) -> None:
        await self.unplug()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            up_r, up_w = await asyncio.open_connection(HOST, self.target_port)
        except OSError:
            writer.close()
            return
        self._writers.add(up_w)
        lose = asyncio.Event()

        async def upstream() -> None:
            while chunk := await reader.read(65536):
                for rule in self.rules:
                    if rule.hits < rule.times and chunk.startswith(rule.prefix):
                        rule.hits += 1
                        if rule.mode == "refuse":
                            writer.close()
                            up_w.close()
                            return
                        lose.set()
                up_w.write(chunk)
                await up_w.drain()

        async def downstream() -> None:
            while chunk := await up_r.read(65536):
                if lose.is_set():  # the API answered; the hub never hears it
                    writer.close()
                    up_w.close()
                    return
                writer.write(chunk)
                await writer.drain()

        tasks = [asyncio.create_task(upstream()), asyncio.create_task(downstream())]
        self._tasks.update(tasks)
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            pass
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._tasks.difference_update(tasks)
            for w in (writer, up_w):
                w.close()
                self._writers.discard(w)


# -- the hub ------------------------------------------------------------------------------------------------------


@dataclass
class HubRig:
    tmp: Path
    store: Store
    bus: Bus
    arming: ArmState
    cameras: CameraManager
    control: Controller
    pipe: CameraPipeline
    relay: Relay
    cloud_hub: HubSession
    api: CloudApi
    channel: CloudChannel

    @property
    def starts(self) -> StartReporter:
        assert isinstance(self.channel.starts, StartReporter)
        return self.channel.starts

    @property
    def commands(self) -> CommandRunner:
        assert isinstance(self.channel.commands, CommandRunner)
        return self.channel.commands

    def live(self) -> None:
        """The phone streams: a GOP into the camera's ring buffer (it goes online at the first frame)."""
        for frame in encoded_gop():
            self.pipe.on_frame(frame)

    def trigger(self) -> str:
        """Motion: the recorder starts an event and announces it on the bus, as in production."""
        newest = self.pipe.buffer.newest_t
        assert newest is not None
        return self.pipe.recorder.start(newest, newest, "motion")

    async def end(self) -> None:
        task = self.pipe.recorder.end((self.pipe.buffer.newest_t or 0) + 0.1, "quiet")
        if task is not None:
            await task

    async def cloud_starts(self, event_id: str) -> list[Any]:
        return await self.api.services.ctx.db.read(lambda conn: conn.execute(
            sa.select(event_starts).where(event_starts.c.hub_id == self.cloud_hub.hub_id,
                                          event_starts.c.hub_event_id == event_id)).all())

    async def cloud_start(self, event_id: str) -> Any:
        async def one() -> Any:
            rows = await self.cloud_starts(event_id)
            return rows[0] if rows else None

        return await until(one, f"the cloud's start of {event_id}")

    async def command(self, kind: str, **args: Any) -> str:
        r = await self.api.http.post(f"/api/v1/hubs/{self.cloud_hub.hub_id}/commands",
                                     json={"kind": kind, "args": args}, headers=self.cloud_hub.user.headers)
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    async def command_done(self, command_id: str) -> dict[str, Any]:
        async def done() -> dict[str, Any] | None:
            r = await self.api.http.get(f"/api/v1/hubs/{self.cloud_hub.hub_id}/commands/{command_id}",
                                        headers=self.cloud_hub.user.headers)
            assert r.status_code == 200, r.text
            return r.json() if r.json()["state"] == "done" else None

        return await until(done, f"command {command_id} done")

    async def cloud_hub_view(self) -> dict[str, Any]:
        r = await self.api.http.get("/api/v1/hubs", headers=self.cloud_hub.user.headers)
        assert r.status_code == 200, r.text
        return next(h for h in r.json()["hubs"] if h["id"] == self.cloud_hub.hub_id)


@pytest_asyncio.fixture
async def rig(api: CloudApi, tmp_path: Path) -> AsyncIterator[HubRig]:
    cloud_hub = await api.hub(cameras=())  # the hub mirrors its cameras itself
    relay = Relay(int(api.base_url.rsplit(":", 1)[1]))
    await relay.plug()
    store = Store(tmp_path / "hub.db")
    bus = Bus()
    arming = ArmState(store, bus)
    cameras = CameraManager(PipelineContext(
        config=HubConfig(storage={"data_dir": str(tmp_path)}), store=store, bus=bus, clips_dir=tmp_path / "clips",
        scratch_dir=tmp_path, is_armed=arming.is_armed, on_disk_full=lambda: None))
    arming.add_listener(cameras.apply_armed)
    control = Controller(arming, cameras)
    store.ensure_static_camera("front", "Front door", "file")
    pipe = cameras.pipeline("front")
    link = CloudLink(api_url=relay.url, hub_id=cloud_hub.hub_id, hub_token=cloud_hub.token)
    # Short backoffs so retries happen within the test; the heartbeat is the default (changes are reported at once).
    cfg = HubCloudConfig(retry_max_s=0.5, commands_wait_s=2)
    starts = StartReporter(cfg, store, bus, control, lambda: link, retry_base_s=0.05)
    channel = CloudChannel(
        starts,
        StateReporter(cfg, store, bus, control, control.rearms_at, lambda: link, retry_base_s=0.05,
                      on_reached=starts.cloud_is_back),
        CommandRunner(cfg, store, control, lambda: link, retry_base_s=0.05, on_reached=starts.cloud_is_back))
    rig = HubRig(tmp_path, store, bus, arming, cameras, control, pipe, relay, cloud_hub, api, channel)
    await channel.start()
    try:
        yield rig
    finally:
        await channel.stop()
        await relay.close()
        await pipe.close()
        arming.close()
        store.close()


def _decodes_as_jpeg(data: bytes) -> bool:
    return data[:3] == b"\xff\xd8\xff" and cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) is not None


# -- event starts ---------------------------------------------------------------------------------------------------


async def test_a_started_event_reaches_the_cloud_with_the_cameras_snapshot(rig: HubRig) -> None:
    rig.live()
    event_id = rig.trigger()
    start = await rig.cloud_start(event_id)
    assert start.trigger == "motion" and start.late is False
    assert start.snapshot_blob is not None, "the start left without its snapshot"
    jpeg = await rig.api.services.ctx.blobs.read(start.snapshot_blob)
    assert _decodes_as_jpeg(jpeg)
    height, width = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).shape[:2]
    assert (width, height) == (320, 180)  # the camera's own frame, not a placeholder
    row = rig.starts.outbox.get(event_id)
    assert row is not None and row.state == "sent" and row.sent_with_snapshot and row.snapshot is None
    await rig.end()


async def test_a_start_waits_while_the_cloud_is_down_and_is_marked_late_only_when_it_is(rig: HubRig) -> None:
    rig.live()
    await until(lambda: rig.channel.state.status()["reported_at"], "the first state report")
    await rig.relay.unplug()
    soon = rig.trigger()
    row = await until(lambda: (r := rig.starts.outbox.get(soon)) and r.attempts >= 2 and r,
                      "two failed tries of the start")
    assert row.state == "pending" and row.snapshot is not None  # kept on the hub with its picture
    assert "not answering" in (rig.starts.status()["error"] or "")
    assert await rig.cloud_starts(soon) == []

    await rig.relay.plug()  # back within seconds: the alert is not late
    start = await rig.cloud_start(soon)
    assert start.late is False and start.snapshot_blob is not None
    await rig.end()

    await rig.relay.unplug()
    late = rig.trigger()
    await until(lambda: (r := rig.starts.outbox.get(late)) and r.attempts >= 1, "a failed try of the second start")
    rig.api.clock.advance(minutes=5)  # the hub stays offline for five minutes
    await rig.relay.plug()
    start = await rig.cloud_start(late)
    assert start.late is True and start.snapshot_blob is not None
    # the cloud has it; the hub marks it sent once the answer is back (it once still counted it pending here)
    await until(lambda: (r := rig.starts.outbox.get(late)) and r.state == "sent", "the start marked sent on the hub")
    assert rig.starts.status()["pending"] == 0 and rig.starts.status()["error"] is None
    await rig.end()


async def test_a_retried_start_creates_no_second_start(rig: HubRig) -> None:
    rig.live()
    lost = rig.relay.add_rule("POST /api/v1/hub/event-starts", "lose_answer", times=1)
    event_id = rig.trigger()
    rig.bus.publish("event.started", event_id=event_id, camera_id="front", start=time.time(),
                    triggers=["motion"])  # the bus delivers at least once: a second copy must change nothing
    row = await until(lambda: (r := rig.starts.outbox.get(event_id)) and r.state == "sent" and r,
                      "the start reported")
    assert lost.hits == 1 and row.attempts == 2  # the cloud handled the first, the hub never heard, and retried
    starts = await rig.cloud_starts(event_id)
    assert len(starts) == 1 and starts[0].snapshot_blob is not None
    n_changes = await rig.api.services.ctx.db.read(lambda conn: conn.execute(sa.text(
        "SELECT COUNT(*) FROM changes WHERE kind = 'event.started' AND subject_id = :id"), {"id": starts[0].id}
    ).scalar())
    assert n_changes == 1  # one alert for the notifier, not two
    await rig.end()


# -- commands and state ---------------------------------------------------------------------------------------------


async def test_a_disarm_from_the_cloud_disarms_the_hub_and_the_result_and_state_reach_the_cloud(rig: HubRig) -> None:
    rig.live()
    view = await until(lambda: _state_with(rig, armed=True, online=True), "the hub reported armed, camera online")
    assert view["cameras"][0]["online"] is True
    assert rig.control.is_armed() is True

    refused = rig.relay.add_rule("POST /api/v1/hub/commands/", "refuse", times=2)  # results lost twice on the way
    command_id = await rig.command("disarm", for_s=3600)
    done = await rig.command_done(command_id)
    assert done["ok"] is True and done["message"].startswith("disarmed until"), done
    assert refused.hits == 2  # the result was retried until the cloud had it
    assert rig.control.is_armed() is False  # the real hub's arm state
    until_at = rig.control.rearms_at()
    assert until_at is not None and 3500 < until_at - time.time() <= 3600

    view = await until(lambda: _state_with(rig, armed=False), "the hub reported disarmed")
    assert view["disarmed_until"] is not None
    cloud_until = _epoch(view["disarmed_until"])
    assert abs(cloud_until - until_at) < 1.0
    assert rig.commands.log.get(command_id) == {
        "command_id": command_id, "kind": "disarm", "ok": True, "message": done["message"], "state": "posted",
        "attempts": 3, "reason": None}

    # The cloud delivers the same command again (it lost the hub's answer): no second effect, the result again.
    rig.control.set_armed(True)
    await rig.commands.handle({"id": command_id, "kind": "disarm", "args": {"for_s": 3600}})
    assert rig.control.is_armed() is True
    await until(lambda: (rig.commands.log.get(command_id) or {}).get("attempts") == 4, "the result sent again")

    arm = await rig.command("arm")
    assert (await rig.command_done(arm))["ok"] is True
    await until(lambda: _state_with(rig, armed=True), "the hub reported armed again")


async def test_a_snapshot_command_returns_the_cameras_jpeg(rig: HubRig) -> None:
    rig.live()
    command_id = await rig.command("snapshot", camera_id="front")
    done = await rig.command_done(command_id)
    assert done["ok"] is True, done
    result = await rig.api.services.ctx.db.read(lambda conn: conn.execute(
        sa.select(hub_commands.c.result).where(hub_commands.c.id == command_id)).scalar())
    assert isinstance(result, dict), result
    front = next(c for c in (await rig.cloud_hub_view())["cameras"] if c["hub_camera_id"] == "front")
    assert result["hub_camera_id"] == "front" and result["camera_id"] == front["id"]
    assert _decodes_as_jpeg(await rig.api.services.ctx.blobs.read(result["snapshot_blob"]))

    every = await rig.command("snapshot")  # no camera named: the online one
    assert (await rig.command_done(every))["ok"] is True

    unknown = await rig.command("snapshot", camera_id="attic")
    done = await rig.command_done(unknown)
    assert done["ok"] is False and "attic" in done["message"]


async def test_a_command_this_hub_does_not_know_is_answered_not_ignored(rig: HubRig) -> None:
    await rig.commands.handle({"id": "cmd-from-a-newer-cloud", "kind": "reboot", "args": {}})
    row = await until(lambda: (r := rig.commands.log.get("cmd-from-a-newer-cloud")) and r["state"] != "pending"
                      and r, "the result's fate")
    assert row["ok"] is False and row["message"] == UNSUPPORTED
    assert row["state"] == "refused"  # this cloud never sent it: it says so, and the hub stops trying


# -- helpers ----------------------------------------------------------------------------------------------------


async def _state_with(rig: HubRig, armed: bool, online: bool | None = None) -> dict[str, Any] | None:
    view = await rig.cloud_hub_view()
    if view["armed"] is not armed:
        return None
    if online is not None and not any(c["hub_camera_id"] == "front" and c["online"] is online
                                      for c in view["cameras"]):
        return None
    return view


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()



# -- wiring and status ------------------------------------------------------------------------------------------


async def test_cloud_status_on_the_cli_shows_the_channel(rig: HubRig) -> None:
    import json
    import os
    import sys

    from hub.upload.link import save_link

    rig.live()
    event_id = rig.trigger()
    await until(lambda: (r := rig.starts.outbox.get(event_id)) and r.state == "sent", "the start reported")
    await until(lambda: rig.channel.state.status()["reported_at"], "a state report")
    await rig.end()
    save_link(rig.tmp, CloudLink(api_url=rig.api.base_url, hub_id=rig.cloud_hub.hub_id, hub_token=rig.cloud_hub.token))
    cfg = rig.tmp / "hub.yaml"
    cfg.write_text(f"storage:\n  data_dir: {rig.tmp}\n")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hub.cli", "cloud", "status", "--json", env={**os.environ, "PINGWATCH_CONFIG": str(cfg)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, errs = await asyncio.wait_for(proc.communicate(), TIMEOUT)
    assert proc.returncode == 0, errs.decode()
    info = json.loads(out)
    channel = info["channel"]
    assert channel["starts"] == {"sent": 1} and channel["report_starts"] is True
    assert channel["remote_control"] is True and channel["command_results"] == {}
    assert channel["state_reported_at"] is not None and info["reachable"] is True


def test_the_composition_root_starts_the_channel_with_the_uploader_before_the_cameras(tmp_path: Path) -> None:
    from hub.app import build_hub
    from tests.harness.ports import free_ports

    https_port, http_port = free_ports(2)
    hub = build_hub(HubConfig.model_validate({
        "server": {"host": HOST, "https_port": https_port, "http_port": http_port},
        "storage": {"data_dir": str(tmp_path / "data")}}))
    try:
        order = hub.lifecycle.order
        assert order.index("uploader") < order.index("cloud-channel") < order.index("cameras")
        assert isinstance(hub.cloud, CloudChannel)
        status = hub.cloud.status()
        assert status["starts"]["enabled"] is True and status["commands"]["remote_control"] is True
    finally:
        hub.store.close()
