"""Benchmark of the Telegram alert: trigger -> first message, on the cloud path and the hub-direct path, beside the
seed's design (one video after upload and analysis) measured on the same events in the same run.

Usage: scripts/bench alert [--events 20] [--event-s 5] [--gap-s 1.5] [--worker real|hooks] [--db sqlite|postgres]
                          [--paths cloud,hub] [--json]
       (.venv/bin/python scripts/bench_alert.py ...)

Everything runs on 127.0.0.1 and is started and stopped here: a real Azurite (the test harness's starter,
.tools/azurite), the cloud API in-process on a SQLite file (PostgreSQL is not needed for one API process; on
SQLite the notifier's change feed polls every 0.25 s, on PostgreSQL it is woken by NOTIFY), the cloud notifier
(cloud.notify.Notifier on the API's Context, defaults as `pingwatch-cloud notify` runs it), the fake Telegram Bot
API (tests/harness/telegram.py) and a real hub in the same process: Store, ArmState, CameraManager, Controller and
a camera pipeline fed live with 1280x720 15 fps H.264 (a keyframe every 2 s, as the hub asks the phone for), so
the snapshot is the camera's own picture. The trigger is the recorder starting an event, i.e. the hub publishing
``event.started`` on its bus (the moment is stamped inside ``Bus.publish``); each Telegram call is stamped by the
fake server when it has the whole request (``Call.at``). Both clocks are this process's ``time.monotonic``.

Each event records for --event-s seconds after its trigger, then ends (the clip: pre-roll + that). Events run one
after another, --gap-s apart once the previous event's last message is out (Telegram's one message a second per
chat would otherwise hold the next photo back). One warm-up event per path is run first and left out.

1. Cloud path: the hub's StartReporter (its own task, via the hub channel, as hub/app.py wires it) -> POST
   /api/v1/hub/event-starts -> `changes` -> notifier -> sendPhoto. Clip end -> the hub's Uploader (initiate, the
   real MP4 to Azurite, finalize) -> "queued" -> sendVideo (a reply to the photo). Then the worker: by default
   (--worker real) the worker's own Consumer in this process takes the queue's message, downloads the clip,
   checks its MD5 and analyses it with the bundled ONNX model (no person in this clip: the analysis of a clip with
   one costs more, see `scripts/bench worker`); with --worker hooks the event is marked done through
   WorkerHooks.start/complete at once (the analysis left out) -> editMessageCaption with the summary.
2. Baseline, the seed's design, on the same events: the moment the analysis is done, one video message: the clip
   read from blob storage and sent with sendVideo by the same library, to another chat. Trigger -> that video =
   event length + clip finish + upload + finalize + analysis + the send.
3. Hub-direct path: hub/notify/telegram.py's Notifier (long polling, the chat allowed by config) on the same hub,
   cloud unlinked: event.started -> sendPhoto; clip end -> sendVideo; the caption edited after it.

Target (issue 13): trigger -> first message <= 2 s p95 on both paths.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import sqlalchemy as sa  # noqa: E402
from telegram import Bot  # noqa: E402
from telegram.request import HTTPXRequest  # noqa: E402

from cloud.api.db import migrate  # noqa: E402
from cloud.api.db.engine import make_engine  # noqa: E402
from cloud.api.db.schema import event_starts, events, telegram_deliveries  # noqa: E402
from cloud.notify import Notifier as CloudNotifier  # noqa: E402
from cloud.worker.consumer import Consumer  # noqa: E402
from cloud.worker.errors import ModelError  # noqa: E402
from cloud.worker.service import load_detector  # noqa: E402
from hub.arming import ArmState  # noqa: E402
from hub.bus import Bus  # noqa: E402
from hub.cameras import CameraManager  # noqa: E402
from hub.config import CloudConfig as HubCloudConfig  # noqa: E402
from hub.config import HubConfig  # noqa: E402
from hub.control import Controller  # noqa: E402
from hub.media.frames import VIDEO_TIME_BASE, EncodedFrame  # noqa: E402
from hub.notify.config import TelegramConfig as HubTelegramConfig  # noqa: E402
from hub.notify.telegram import Notifier as HubNotifier  # noqa: E402
from hub.pipeline import CameraPipeline, PipelineContext  # noqa: E402
from hub.store import Store  # noqa: E402
from hub.upload.channel import CloudChannel  # noqa: E402
from hub.upload.commands import CommandRunner  # noqa: E402
from hub.upload.hub_state import StateReporter  # noqa: E402
from hub.upload.link import CloudLink  # noqa: E402
from hub.upload.starts import StartReporter  # noqa: E402
from hub.upload.uploader import Uploader  # noqa: E402
from tests.cloud.conftest import CloudApi, cloud_config, start_api  # noqa: E402
from tests.harness.azurite import Azurite, start_azurite  # noqa: E402
from tests.harness.ports import ServiceStartError  # noqa: E402
from tests.harness.postgres import start_postgres  # noqa: E402
from tests.harness.telegram import Call, FakeTelegram  # noqa: E402

CLOUD_CHAT = 7_000_001  # linked to the account through the real /start flow
BASELINE_CHAT = 7_000_002  # the seed design's one video goes here (nothing else does)
HUB_CHAT = 7_000_003  # the hub's own bot (allowed by config)
FPS = 15
GOP = 30  # frames: a keyframe every 2 s
WAIT_S = 60.0  # bound on each awaited step: a step that never comes fails the run, it is never timed out quietly
FIRST = ("sendPhoto", "sendMessage")


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q / 100 * (len(s) - 1)))]


def summary(values: list[float]) -> dict[str, Any]:
    ms = [v * 1000 for v in values]
    return {"n": len(ms), "p50_ms": round(pct(ms, 50)), "p95_ms": round(pct(ms, 95)),
            "mean_ms": round(statistics.fmean(ms)), "min_ms": round(min(ms)), "max_ms": round(max(ms))}


# -- the camera ------------------------------------------------------------------------------------------------


def encode_gop(width: int = 1280, height: int = 720, bitrate: int = 2_500_000) -> list[tuple[bytes, bool]]:
    """One closed GOP of a 720p H.264 stream (baseline, no B-frames, SPS/PPS in band on its IDR): looped, it is a
    valid endless stream with a keyframe every 2 s. Noise that moves keeps the encoder near a phone's bitrate."""
    enc = av.CodecContext.create("libx264", "w")
    enc.width, enc.height, enc.pix_fmt = width, height, "yuv420p"
    enc.time_base = Fraction(1, FPS)
    enc.bit_rate = bitrate
    enc.options = {"profile": "baseline", "preset": "ultrafast", "tune": "zerolatency",
                   "x264-params": f"keyint={GOP}:min-keyint={GOP}:scenecut=0:bframes=0:repeat-headers=1"}
    rng = np.random.default_rng(3)
    base = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    out: list[tuple[bytes, bool]] = []
    for i in range(GOP):
        vf = av.VideoFrame.from_ndarray(np.roll(base, i * 9, axis=1), format="rgb24").reformat(format="yuv420p")
        vf.pts = i
        out += [(bytes(p), bool(p.is_keyframe)) for p in enc.encode(vf)]
    out += [(bytes(p), bool(p.is_keyframe)) for p in enc.encode(None)]
    if len(out) != GOP or not out[0][1] or any(k for _, k in out[1:]):
        raise RuntimeError(f"the test stream is not one {GOP}-frame GOP: {[k for _, k in out]}")
    return out


class Camera:
    """A phone streaming the record track: one access unit every 1/15 s into the pipeline, stamped on arrival."""

    def __init__(self, pipe: CameraPipeline, gop: list[tuple[bytes, bool]]) -> None:
        self.pipe = pipe
        self.gop = gop
        self.frames = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="bench-camera")

    async def _run(self) -> None:
        t0 = time.monotonic()
        while True:
            data, key = self.gop[self.frames % GOP]
            self.pipe.on_frame(EncodedFrame("video", "h264", data, self.frames * (90_000 // FPS), VIDEO_TIME_BASE,
                                            time.time(), keyframe=key, width=1280, height=720))
            self.frames += 1
            await asyncio.sleep(max(0.0, t0 + self.frames / FPS - time.monotonic()))  # the camera's frame clock

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


class StampingBus(Bus):
    """The hub's bus, with the moment each event's start and end is published (the trigger and the clip end)."""

    def __init__(self) -> None:
        super().__init__()
        self.started: dict[str, float] = {}
        self.ended: dict[str, float] = {}
        self.uploaded: dict[str, float] = {}

    def publish(self, topic: str, **data: Any) -> None:
        now = time.monotonic()
        if topic == "event.started":
            self.started.setdefault(str(data.get("event_id")), now)
        elif topic == "event.ended":
            self.ended.setdefault(str(data.get("event_id")), now)
        elif topic == "upload.state" and data.get("state") == "done":
            self.uploaded.setdefault(str(data.get("event_id")), now)
        super().publish(topic, **data)


@dataclass
class Hub:
    tmp: Path
    store: Store
    bus: StampingBus
    arming: ArmState
    control: Controller
    pipe: CameraPipeline
    camera: Camera

    @classmethod
    def build(cls, tmp: Path, gop: list[tuple[bytes, bool]]) -> Hub:
        # As hub/app.py composes them (and tests/cloud/test_hub_alerts.py's rig), minus the web edge and WebRTC.
        store = Store(tmp / "hub.db")
        bus = StampingBus()
        arming = ArmState(store, bus)
        cameras = CameraManager(PipelineContext(
            config=HubConfig.model_validate({"storage": {"data_dir": str(tmp)}}), store=store, bus=bus,
            clips_dir=tmp / "clips", scratch_dir=tmp, is_armed=arming.is_armed, on_disk_full=lambda: None))
        arming.add_listener(cameras.apply_armed)
        control = Controller(arming, cameras)
        store.ensure_static_camera("front", "Front door", "file")
        pipe = cameras.pipeline("front")
        return cls(tmp, store, bus, arming, control, pipe, Camera(pipe, gop))

    def trigger(self) -> tuple[str, float]:
        """Motion: the recorder starts an event and publishes ``event.started`` (stamped by the bus)."""
        newest = self.pipe.buffer.newest_t
        assert newest is not None
        event_id = self.pipe.recorder.start(newest, newest, "motion")
        return event_id, self.bus.started[event_id]

    async def end(self, event_id: str) -> float:
        task = self.pipe.recorder.end(self.pipe.buffer.newest_t or time.time(), "quiet")
        if task is None:
            raise RuntimeError(f"event {event_id} was not recording")
        await task
        return self.bus.ended[event_id]

    async def close(self) -> None:
        await self.camera.stop()
        await self.pipe.close()
        self.arming.close()
        self.store.close()


# -- the fake Bot API's record -------------------------------------------------------------------------------


async def call_after(fake: FakeTelegram, mark: int, chat: int, methods: tuple[str, ...], what: str) -> Call:
    """The first successful call of ``methods`` to ``chat`` after call number ``mark``."""
    def check() -> Call | None:
        for c in fake.calls[mark:]:
            if c.method in methods and c.status == 200 and c.params.get("chat_id") == chat:
                return c
        return None

    return await fake.wait_for(check, WAIT_S, what)


async def wait_until(check: Callable[[], Any], what: str) -> Any:
    deadline = time.monotonic() + WAIT_S
    while not (value := check()):
        if time.monotonic() > deadline:
            raise RuntimeError(f"no {what} within {WAIT_S:g} s")
        await asyncio.sleep(0.005)  # polling the hub's bus record (no condition to await there)
    return value


# -- 1 + 2: the cloud path and the seed's baseline ------------------------------------------------------------


@dataclass
class CloudRig:
    api: CloudApi
    notifier: CloudNotifier
    channel: CloudChannel
    uploader: Uploader
    hub_id: str
    baseline_bot: Bot
    consumer: Consumer | None  # --worker real: the worker's own consumer, in this process


def api_config(db_url: str, azurite: Azurite, fake: FakeTelegram) -> Any:
    return cloud_config(
        db_url, azurite,
        # The notifier as deployed: Telegram's pacing defaults (1 message/s per chat, 25/s overall).
        telegram={"enabled": True, "bot_token": fake.token, "api_base_url": fake.base_url,
                  "api_file_url": fake.base_file_url, "bot_username": fake.bot_username},
        server={"public_url": "https://cloud.example.invalid"},  # only for the "Open in timeline" button's URL
        plans={"free": {"monthly_credits": 100_000_000, "max_uploads_per_hour": 100_000, "max_clip_s": 60,
                        "max_size_bytes": 50 * 1024 * 1024, "retention_days": 7}},
        log={"level": "warning"})


async def cloud_up(db_url: str, azurite: Azurite, fake: FakeTelegram, hub: Hub, real_worker: bool) -> CloudRig:
    engine = make_engine(db_url)
    try:
        migrate.upgrade(engine)
    finally:
        engine.dispose()
    api = await start_api(api_config(db_url, azurite, fake))
    session = await api.hub(cameras=())  # an account and a hub linked through the real link flow; cameras mirrored
    notifier = CloudNotifier(api.services.ctx)
    await notifier.start()

    # The chat links as a user does: a token from the API, "/start <token>" to the bot.
    r = await api.http.post("/api/v1/telegram/links", headers=session.user.headers)
    if r.status_code != 201:
        raise RuntimeError(f"POST /api/v1/telegram/links: {r.status_code} {r.text}")
    await fake.push_message(CLOUD_CHAT, f"/start {r.json()['token']}")
    linked = await fake.wait_messages(CLOUD_CHAT, 1, WAIT_S)
    if not (linked[0].text or "").startswith("✅"):
        raise RuntimeError(f"the chat did not link: {linked[0].text!r}")

    link = CloudLink(api_url=api.base_url, hub_id=session.hub_id, hub_token=session.token)
    cfg = HubCloudConfig()  # the hub's defaults
    starts = StartReporter(cfg, hub.store, hub.bus, hub.control, lambda: link)
    channel = CloudChannel(
        starts,
        StateReporter(cfg, hub.store, hub.bus, hub.control, hub.control.rearms_at, lambda: link,
                      on_reached=starts.cloud_is_back),
        CommandRunner(cfg, hub.store, hub.control, lambda: link, on_reached=starts.cloud_is_back))
    uploader = Uploader(cfg, hub.store, hub.bus, hub.tmp / "clips", hub.tmp / "uploads", lambda: link)
    await uploader.start()
    await channel.start()
    bot = Bot(fake.token, base_url=fake.base_url, base_file_url=fake.base_file_url,
              request=HTTPXRequest(connection_pool_size=2, media_write_timeout=300))
    await bot.initialize()
    consumer = None
    if real_worker:
        cfg_cloud = api.services.ctx.config
        try:
            analysis, detector = await asyncio.to_thread(load_detector, cfg_cloud)
        except ModelError as exc:
            raise SystemExit(f"error: the worker's model did not load: {exc.message} (or run with --worker hooks)"
                             ) from None
        consumer = Consumer(api.services.worker, api.services.ctx.blobs, api.services.ctx.queue, cfg_cloud.worker,
                            analysis, detector)
    return CloudRig(api, notifier, channel, uploader, session.hub_id, bot, consumer)


async def cloud_down(rig: CloudRig) -> None:
    await rig.channel.stop()
    await rig.uploader.stop()
    await rig.notifier.stop()
    await rig.baseline_bot.shutdown()
    await rig.api.close()


async def seed_alert(rig: CloudRig, cloud_event_id: str, caption: str) -> None:
    """The seed's design, after the analysis: the clip from blob storage, one sendVideo."""
    ctx = rig.api.services.ctx
    blob = await ctx.db.read(lambda conn: conn.execute(
        sa.select(events.c.blob_name).where(events.c.id == cloud_event_id)).scalar())
    data = await ctx.blobs.read(str(blob))
    await rig.baseline_bot.send_video(BASELINE_CHAT, video=data, caption=caption, supports_streaming=True,
                                      filename=f"{cloud_event_id}.mp4")


async def cloud_event(rig: CloudRig, hub: Hub, fake: FakeTelegram, event_s: float, offset: float) -> dict[str, Any]:
    mark = len(fake.calls)
    event_id, t0 = hub.trigger()
    first = await call_after(fake, mark, CLOUD_CHAT, FIRST, f"first message of {event_id}")
    await asyncio.sleep(max(0.0, t0 + event_s - time.monotonic()))  # the event lasts this long (not a sync)
    t_end = await hub.end(event_id)
    t_up = await wait_until(lambda: hub.bus.uploaded.get(event_id), f"upload of {event_id}")

    # The worker's part, at once after finalize (queue delivery and the analysis itself are left out: the
    # analysis is timed by `scripts/bench worker`); the notifier's video goes meanwhile, as it would.
    ctx = rig.api.services.ctx
    cloud_id = str(await ctx.db.read(lambda conn: conn.execute(sa.select(events.c.id).where(
        events.c.hub_id == rig.hub_id, events.c.hub_event_id == event_id)).scalar()))
    text = await work(rig, cloud_id)
    t_done = time.monotonic()
    await seed_alert(rig, cloud_id, text)  # the seed's one message, from the same moment
    base = await call_after(fake, mark, BASELINE_CHAT, ("sendVideo",), f"baseline video of {event_id}")
    video = await call_after(fake, mark, CLOUD_CHAT, ("sendVideo",), f"clip of {event_id}")
    edit = await call_after(fake, mark, CLOUD_CHAT, ("editMessageCaption", "editMessageText"),
                            f"summary edit of {event_id}")

    # Where the first message's time went: the API's record of the start and the notifier's delivery row.
    reported_at, planned_at = await ctx.db.read(lambda conn: (
        conn.execute(sa.select(event_starts.c.reported_at).where(
            event_starts.c.hub_id == rig.hub_id, event_starts.c.hub_event_id == event_id)).scalar(),
        conn.execute(sa.select(telegram_deliveries.c.created_at).where(
            telegram_deliveries.c.hub_id == rig.hub_id, telegram_deliveries.c.event_key == event_id,
            telegram_deliveries.c.stage == "started")).scalar()))
    t0_wall = t0 + offset
    return {
        "event_id": event_id, "first_method": first.method, **clip_facts(hub, event_id),
        "first_s": first.at - t0, "summary_edit_s": edit.at - t0, "clip_end_to_video_s": video.at - t_end,
        "baseline_video_s": base.at - t0,
        "steps_s": {"start_at_api": reported_at.timestamp() - t0_wall if reported_at else None,
                    "planned": planned_at.timestamp() - t0_wall if planned_at else None,
                    "first_message": first.at - t0, "clip_end": t_end - t0, "uploaded": t_up - t0,
                    "analysis_done": t_done - t0, "video": video.at - t0, "edit": edit.at - t0,
                    "baseline_video": base.at - t0},
    }


async def work(rig: CloudRig, cloud_id: str) -> str:
    """The worker's part; the summary's text."""
    if rig.consumer is not None:  # the real one: the queue's message, the clip downloaded and analysed
        deadline = time.monotonic() + WAIT_S
        while not any(o.event_id == cloud_id and o.result == "done" for o in rig.consumer.outcomes):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the worker did not finish {cloud_id}: {rig.consumer.outcomes[-3:]}")
            await rig.consumer.run_once()
        summary = await rig.api.services.ctx.db.read(lambda conn: conn.execute(
            sa.select(events.c.summary).where(events.c.id == cloud_id)).scalar())
        return str((summary or {}).get("text") or "done")
    hooks = rig.api.services.worker  # what the worker does around its analysis, without the analysis
    if await hooks.start(cloud_id) is None:
        raise RuntimeError(f"the cloud's event {cloud_id} was not queued")
    text = "A person walked up to Front door."
    if not await hooks.complete(cloud_id, {"person": 0.91}, {
            "text": text, "notify": True, "reason": "person (0.91)", "labels": [{"label": "person", "count": 1}]}):
        raise RuntimeError(f"the cloud's event {cloud_id} did not complete")
    return text


def clip_facts(hub: Hub, event_id: str) -> dict[str, Any]:
    ev = hub.store.get_event(event_id) or {}
    return {"clip_s": ev.get("clip_duration_s"), "clip_mb": round((ev.get("clip_size") or 0) / 1e6, 2)}


# -- 3: the hub-direct path -----------------------------------------------------------------------------------


async def hub_event(hub: Hub, fake: FakeTelegram, event_s: float) -> dict[str, Any]:
    mark = len(fake.calls)
    event_id, t0 = hub.trigger()
    first = await call_after(fake, mark, HUB_CHAT, FIRST, f"hub's first message of {event_id}")
    await asyncio.sleep(max(0.0, t0 + event_s - time.monotonic()))  # the event lasts this long (not a sync)
    t_end = await hub.end(event_id)
    video = await call_after(fake, mark, HUB_CHAT, ("sendVideo", "sendMessage"), f"hub's clip of {event_id}")
    edit = await call_after(fake, mark, HUB_CHAT, ("editMessageCaption", "editMessageText"),
                            f"hub's caption edit of {event_id}")
    return {"event_id": event_id, "first_method": first.method, "video_method": video.method,
            **clip_facts(hub, event_id), "first_s": first.at - t0, "clip_end_to_video_s": video.at - t_end,
            "caption_edit_s": edit.at - t0}


# -- the run ---------------------------------------------------------------------------------------------------


async def series(name: str, n: int, gap_s: float, one: Callable[[], Any]) -> tuple[dict[str, Any], list[dict]]:
    say(f"[{name}] warm-up event")
    warm = await one()
    rows = []
    for i in range(n):
        await asyncio.sleep(gap_s)  # Telegram's per-chat pacing would otherwise hold the next photo back
        row = await one()
        rows.append(row)
        say(f"[{name}] event {i + 1}/{n}: first message {row['first_s'] * 1000:.0f} ms")
    return warm, rows


async def run(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {}
    stops: list[Callable[[], Any]] = []  # what this run started, stopped in reverse order whatever happens
    try:
        with tempfile.TemporaryDirectory(prefix="bench-alert-") as tmp_s:
            tmp = Path(tmp_s)
            try:
                await measure(args, tmp, stops, result)
            finally:
                for stop in reversed(stops):
                    out = stop()
                    if asyncio.iscoroutine(out):
                        await out
    finally:
        stops.clear()
    result["run"] = {
        "events": args.events, "event_s": args.event_s, "gap_s": args.gap_s, "database": args.db,
        "worker": args.worker,
        "camera": f"1280x720 {FPS} fps H.264, keyframe every {GOP / FPS:g} s", "warm_up_events_per_path": 1,
        "target_first_message_p95_ms": 2000,
        "meets_target": {k: result[k]["first_message"]["p95_ms"] <= 2000 for k in ("cloud", "hub_direct")
                         if k in result},
        "machine": machine(), "load_avg_1m_end": round(os.getloadavg()[0], 2),
    }
    return result


def clips_of(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {"clip_s_p50": round(statistics.median(r["clip_s"] or 0 for r in rows), 2),
            "clip_mb_p50": round(statistics.median(r["clip_mb"] for r in rows), 2)}


async def measure(args: argparse.Namespace, tmp: Path, stops: list[Callable[[], Any]],
                  result: dict[str, Any]) -> None:
    say("starting Azurite (.tools/azurite) ...")
    try:
        azurite = await asyncio.to_thread(start_azurite)
    except ServiceStartError as exc:
        raise SystemExit(f"error: Azurite could not start: {exc} (scripts/install-test-deps installs it)") from None
    stops.append(lambda: asyncio.to_thread(azurite.stop))
    db_url = f"sqlite:///{tmp / 'cloud.db'}"
    if args.db == "postgres" and "cloud" in args.paths:
        say("starting PostgreSQL (tests/harness/postgres.py) ...")
        try:
            pg = await asyncio.to_thread(start_postgres)
        except ServiceStartError as exc:
            raise SystemExit(f"error: PostgreSQL could not start: {exc}") from None
        stops.append(lambda: asyncio.to_thread(pg.stop))
        db_url = await asyncio.to_thread(pg.create_database, "bench_alert")
    fake = await FakeTelegram().start()
    stops.append(fake.stop)
    (tmp / "hub").mkdir()
    hub = Hub.build(tmp / "hub", await asyncio.to_thread(encode_gop))
    stops.append(hub.close)
    offset = time.time() - time.monotonic()  # monotonic -> wall clock, for the database's timestamps

    hub.camera.start()
    # The ring buffer holds a full pre-roll (5 s) before the first event, as on a hub that has been running.
    await wait_until(lambda: hub.camera.frames >= 6 * FPS, "6 s of camera frames")
    if "cloud" in args.paths:
        say(f"cloud path: API ({args.db}), notifier, hub channel and uploader ...")
        rig = await cloud_up(db_url, azurite, fake, hub, args.worker == "real")
        try:
            warm, rows = await series("cloud", args.events, args.gap_s,
                                      lambda: cloud_event(rig, hub, fake, args.event_s, offset))
        finally:
            await cloud_down(rig)
        result["cloud"] = {
            "first_message": summary([r["first_s"] for r in rows]),
            "summary_edit": summary([r["summary_edit_s"] for r in rows]),
            "clip_end_to_video": summary([r["clip_end_to_video_s"] for r in rows]),
            "first_message_methods": sorted({r["first_method"] for r in rows}),
            "steps_p50_s": {k: round(statistics.median(r["steps_s"][k] for r in rows), 3)
                            for k in rows[0]["steps_s"] if all(r["steps_s"][k] is not None for r in rows)},
            "warm_up_first_message_ms": round(warm["first_s"] * 1000),
            **clips_of(rows), "events": rows,
        }
        result["baseline_seed"] = {"trigger_to_video": summary([r["baseline_video_s"] for r in rows])}
    if "hub" in args.paths:
        say("hub-direct path: the hub's own bot ...")
        tg = HubTelegramConfig(enabled=True, bot_token=fake.token, api_url=fake.url, allowed_chat_ids=[HUB_CHAT])
        notifier = HubNotifier(tg, hub.store, hub.bus, hub.control, hub.tmp / "clips", hub.tmp / "telegram")
        await notifier.start()
        try:
            warm, rows = await series("hub", args.events, args.gap_s, lambda: hub_event(hub, fake, args.event_s))
        finally:
            await notifier.stop()
        result["hub_direct"] = {
            "first_message": summary([r["first_s"] for r in rows]),
            "clip_end_to_video": summary([r["clip_end_to_video_s"] for r in rows]),
            "caption_edit": summary([r["caption_edit_s"] for r in rows]),
            "first_message_methods": sorted({r["first_method"] for r in rows}),
            "video_methods": sorted({r["video_method"] for r in rows}),
            "warm_up_first_message_ms": round(warm["first_s"] * 1000),
            **clips_of(rows), "events": rows,
        }


def machine() -> dict[str, Any]:
    model = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu": model, "python": platform.python_version()}


def table(result: dict[str, Any]) -> str:
    lines = ["| path | measure | n | p50 ms | p95 ms | max ms |", "|---|---|---|---|---|---|"]

    def row(path: str, measure: str, s: dict[str, Any]) -> None:
        lines.append(f"| {path} | {measure} | {s['n']} | {s['p50_ms']} | {s['p95_ms']} | {s['max_ms']} |")

    if "cloud" in result:
        c = result["cloud"]
        row("cloud", "trigger → first message (photo)", c["first_message"])
        note = "analysis excluded" if result["run"]["worker"] == "hooks" else "real worker, in-process"
        row("cloud", f"trigger → summary edit ({note})", c["summary_edit"])
        row("cloud", "clip end → video message", c["clip_end_to_video"])
        row("seed baseline", f"trigger → its one video ({note})", result["baseline_seed"]["trigger_to_video"])
    if "hub_direct" in result:
        h = result["hub_direct"]
        row("hub-direct", "trigger → first message (photo)", h["first_message"])
        row("hub-direct", "clip end → video message", h["clip_end_to_video"])
        row("hub-direct", "trigger → caption edit", h["caption_edit"])
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=20, help="events per path, after one warm-up (default 20)")
    ap.add_argument("--event-s", type=float, default=5.0, help="recording after the trigger, seconds (default 5)")
    ap.add_argument("--gap-s", type=float, default=1.5, help="pause between events, seconds (default 1.5)")
    ap.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite",
                    help="the cloud's database (default sqlite: one API process; postgres: the notifier is woken by "
                         "NOTIFY instead of polling every 0.25 s)")
    ap.add_argument("--worker", choices=("real", "hooks"), default="real",
                    help="real (default): the worker's consumer in this process (queue, download, MD5, ONNX analysis "
                         "with the bundled model); hooks: the event marked done through WorkerHooks at once (the "
                         "analysis left out)")
    ap.add_argument("--paths", default="cloud,hub", help="cloud,hub (default both)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()
    args.paths = {p.strip() for p in args.paths.split(",") if p.strip()}
    if not args.paths <= {"cloud", "hub"} or args.events < 1:
        ap.error("--paths takes cloud and/or hub; --events at least 1")
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    result = asyncio.run(run(args))
    if args.json:
        print(json.dumps(result, indent=2))
        return
    r = result["run"]
    m = r["machine"]
    print(f"{r['events']} events per path (+1 warm-up), each recording {r['event_s']:g} s after its trigger, "
          f"{r['gap_s']:g} s apart; {r['camera']}; cloud on {r['database']}; {m['nproc']} CPUs, {m['cpu']}\n")
    print(table(result))
    for key in ("cloud", "hub_direct"):
        if key in result:
            print(f"\n{key}: clip {result[key]['clip_s_p50']} s, {result[key]['clip_mb_p50']} MB (median); "
                  f"warm-up event's first message {result[key]['warm_up_first_message_ms']} ms")
    if "cloud" in result:
        print("cloud, medians of each step after the trigger (s):", result["cloud"]["steps_p50_s"])
    print("\nmeets the target (first message p95 <= 2 s):", r["meets_target"])


if __name__ == "__main__":
    main()
