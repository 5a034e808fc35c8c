"""The worker process (cloud/worker/consumer.py, `pingwatch-cloud worker`): real events uploaded and finalized
through the real API into the real Azurite, analysed with the real YOLOv8n person model, on SQLite and
PostgreSQL (the conftest's ``cloud_db_url``).

At-least-once delivery, exactly-once effects: a repeated message, two copies at once, a worker killed mid-job,
a SIGTERM, bad clips and poison messages each end in one clear state, charged once.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import httpx
import numpy as np
import pytest
import pytest_asyncio
import sqlalchemy as sa
from aiohttp import web
from azure.storage.blob.aio import BlobClient, BlobServiceClient

from cloud.api.db.schema import credit_ledger, events
from cloud.config import CloudConfig
from cloud.storage.blob import API_VERSION, AzureBlobStore
from cloud.storage.queue import AzureJobQueue, QueueMessage
from cloud.worker.analysis import AnalysisConfig, detector_for
from cloud.worker.consumer import Consumer, Outcome
from cloud.worker.vlm import VlmClient, VlmConfig
from tests.cloud.conftest import Clip, CloudApi, HubSession
from tests.harness.azurite import Azurite
from tests.harness.ports import free_port
from tests.worker.scene import Walker, make_clip

REPO = Path(__file__).resolve().parents[2]


# -- clips ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PersonClip(Clip):
    boxes: list[list[float]] = ()  # type: ignore[assignment]


@pytest.fixture(scope="session")
def person_clip(tmp_path_factory: pytest.TempPathFactory) -> PersonClip:
    """3 s, 640x360: the drawn figure (the model scores it ~0.75 as a person) walks across from 0.5 to 2.5 s."""
    truth = make_clip(tmp_path_factory.mktemp("wclips") / "walk.mp4", [Walker(0.5, 2.5, 0.2, 0.7)],
                      seconds=3.0, size=(640, 360))
    with av.open(str(truth.path)) as c:
        duration = float(c.duration or 0) / av.time_base
    return PersonClip(truth.path.read_bytes(), "video/mp4", duration, truth.boxes)


@pytest.fixture(scope="session")
def corrupt_clip(tmp_path_factory: pytest.TempPathFactory) -> Clip:
    """A well-formed MP4 (header, index, packet times: finalize's probe accepts it) whose H.264 packets are random
    bytes: nothing decodes."""
    d = tmp_path_factory.mktemp("wclips")
    make_clip(d / "ok.mp4", [], seconds=2.0, size=(320, 240))
    rng = np.random.default_rng(7)
    with av.open(str(d / "ok.mp4")) as inp, \
            av.open(str(d / "bad.mp4"), "w", format="mp4", options={"movflags": "+faststart"}) as out:
        ist = inp.streams.video[0]
        ost = out.add_stream_from_template(ist)
        for pkt in inp.demux(ist):
            if pkt.dts is None:
                continue
            junk = av.Packet(rng.integers(0, 256, pkt.size, dtype=np.uint8).tobytes())
            junk.pts, junk.dts, junk.time_base, junk.is_keyframe = pkt.pts, pkt.dts, pkt.time_base, pkt.is_keyframe
            junk.stream = ost
            out.mux(junk)
    with av.open(str(d / "bad.mp4")) as c:
        duration = float(c.duration or 0) / av.time_base
    return Clip((d / "bad.mp4").read_bytes(), "video/mp4", duration)


@pytest.fixture(scope="session")
def audio_only(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("wclips") / "audio.mp4"
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("aac", rate=48000)
        stream.layout = "mono"
        for i in range(0, 48000, 1024):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 48000, i
            for p in stream.encode(frame):
                out.mux(p)
        for p in stream.encode(None):
            out.mux(p)
    return path.read_bytes()


# -- helpers -------------------------------------------------------------------------------------------------


def consumer(api: CloudApi, listener: Any = None, blobs: Any = None, vlm: VlmClient | None = None,
             **worker: Any) -> Consumer:
    cfg = api.config.worker.model_copy(update={"poll_interval_s": 0.2, **worker})
    base = AnalysisConfig(min_confidence=cfg.min_confidence, timezone=cfg.timezone)
    return Consumer(api.services.worker, blobs or api.services.ctx.blobs, api.services.ctx.queue, cfg, base,
                    detector_for(base), vlm, listener)


async def queued(api: CloudApi, hub: HubSession, clip: Clip, **overrides: Any) -> dict[str, Any]:
    ticket = await api.uploaded_event(hub, clip, **overrides)
    r = await api.finalize(hub, ticket["id"])
    assert r.status_code == 200 and r.json()["state"] == "queued", r.text
    return ticket


def walk_motion(clip: PersonClip) -> dict[str, Any]:
    return {"boxes": clip.boxes, "pre_roll_s": 0, "peak_motion": 0.2, "triggers": ["motion"]}


async def row(api: CloudApi, event_id: str) -> Any:
    return await api.services.ctx.db.tx(lambda c: c.execute(sa.select(events).where(events.c.id == event_id)).one())


async def ledger(api: CloudApi, event_id: str) -> list[tuple[str, int]]:
    return sorted(await api.services.ctx.db.tx(lambda c: [tuple(r) for r in c.execute(
        sa.select(credit_ledger.c.kind, credit_ledger.c.amount).where(credit_ledger.c.event_id == event_id))]))


async def detail(api: CloudApi, hub: HubSession, event_id: str) -> dict[str, Any]:
    r = await api.http.get(f"/api/v1/events/{event_id}", headers=hub.user.headers)
    assert r.status_code == 200, r.text
    return r.json()


async def blob_etag(azurite: Azurite, container: str, name: str) -> str:
    async with BlobServiceClient.from_connection_string(azurite.connection_string, api_version=API_VERSION) as svc:
        props = await svc.get_blob_client(container, name).get_blob_properties()
        return str(props.etag)


async def overwrite_with_sas(url: str, data: bytes) -> None:
    """What a hub still holding its upload SAS after finalize could do: replace the clip."""
    client = BlobClient.from_blob_url(url, api_version=API_VERSION)
    try:
        await client.upload_blob(data, overwrite=True)
    finally:
        await client.close()


def outcomes(out: list[Outcome]) -> list[tuple[str | None, str]]:
    return [(o.event_id, o.result) for o in out]


# -- the happy path, exactly once ---------------------------------------------------------------------------


async def test_a_person_is_labelled_stored_and_a_repeat_changes_nothing(api: CloudApi, azurite: Azurite,
                                                                      person_clip: PersonClip) -> None:
    hub = await api.hub()
    ev = (await queued(api, hub, person_clip, motion=walk_motion(person_clip)))["id"]
    seen: list[tuple[str, str]] = []
    worker = consumer(api, listener=lambda e, s: seen.append((e, s)))
    assert outcomes(await worker.run_once()) == [(ev, "done")]
    assert seen == [(ev, "processing"), (ev, "done")]

    d = await detail(api, hub, ev)
    assert d["state"] == "done" and d["labels"] == ["person"] and d["reason"] is None
    s = d["summary"]
    assert s["notify"] is True and "person" in s["reason"] and "Front" in s["text"]
    assert s["provider"] == "CPUExecutionProvider" and s["guided"] is True
    assert s["labels"][0]["label"] == "person" and s["labels"][0]["count"] == 1
    name = s["snapshots"]["person"]
    assert name == f"{hub.user.account_id}/{hub.hub_id}/{ev}.person.jpg"
    async with httpx.AsyncClient() as http:  # the API's read SAS serves the stored snapshot
        jpeg = (await http.get(d["snapshot_url"])).content
    assert jpeg[:2] == b"\xff\xd8"
    assert await ledger(api, ev) == [("charge", -1)]  # charged once, at finalize; nothing more
    assert await api.services.ctx.queue.receive(32, 1) == []  # the message is gone

    # The same message again (at-least-once): deleted, nothing else moves.
    before, etag = await row(api, ev), await blob_etag(azurite, api.config.storage.container, name)
    await api.services.ctx.queue.send({"event_id": ev, "v": 1})
    assert outcomes(await worker.run_once()) == [(ev, "skipped")]
    assert await row(api, ev) == before
    assert await blob_etag(azurite, api.config.storage.container, name) == etag
    assert await ledger(api, ev) == [("charge", -1)] and (await detail(api, hub, ev))["labels"] == ["person"]
    assert await api.services.ctx.queue.receive(32, 1) == []


async def test_two_copies_at_once_complete_once(api: CloudApi, person_clip: PersonClip) -> None:
    hub = await api.hub()
    ev = (await queued(api, hub, person_clip, motion=walk_motion(person_clip)))["id"]
    await api.services.ctx.queue.send({"event_id": ev, "v": 1})  # e.g. the reconciler re-sent it
    results = sorted(o.result for o in await consumer(api, concurrency=2).run_once())
    assert results == ["done", "skipped"]  # both analysed; the first `complete` won, the second changed nothing
    r = await row(api, ev)
    assert r.state == "done" and r.attempts == 2
    assert (await detail(api, hub, ev))["labels"] == ["person"]
    assert await ledger(api, ev) == [("charge", -1)]


# -- bad input ----------------------------------------------------------------------------------------------


async def test_bad_clips_fail_with_a_reason_and_the_worker_serves_the_next(
        api: CloudApi, mp4_clip: Clip, corrupt_clip: Clip, audio_only: bytes) -> None:
    hub = await api.hub()
    corrupt = (await queued(api, hub, corrupt_clip))["id"]
    cut, empty, no_video, gone = [await queued(api, hub, mp4_clip) for _ in range(4)]
    await overwrite_with_sas(cut["upload_url"], mp4_clip.data[: len(mp4_clip.data) // 2])
    await overwrite_with_sas(empty["upload_url"], b"")
    await overwrite_with_sas(no_video["upload_url"], audio_only)
    assert await api.services.ctx.blobs.delete(gone["blob"])
    odd_boxes = (await queued(api, hub, mp4_clip, motion={"boxes": "not boxes"}))["id"]
    good = (await queued(api, hub, mp4_clip))["id"]
    ids = [corrupt, cut["id"], empty["id"], no_video["id"], gone["id"], odd_boxes, good]

    finished: list[str] = []
    worker: Consumer

    def listener(event_id: str, state: str) -> None:
        if state in ("done", "failed"):
            finished.append(event_id)
            if set(ids) <= set(finished):
                worker.stop()

    worker = consumer(api, listener=listener)
    await asyncio.wait_for(worker.run(), 120)  # one loop serves them all, whatever failed before

    reasons = {i: (await detail(api, hub, i))["reason"] for i in ids}
    assert reasons[corrupt].startswith("clip_unreadable: the clip cannot be decoded")
    assert reasons[cut["id"]] == (f"clip_changed: the clip is {len(mp4_clip.data) // 2} bytes, finalize verified "
                                  f"{len(mp4_clip.data)}")
    assert reasons[empty["id"]] == f"clip_changed: the clip is 0 bytes, finalize verified {len(mp4_clip.data)}"
    assert reasons[no_video["id"]].startswith("clip_changed:")
    assert reasons[gone["id"]] == "blob_missing: the clip is no longer in storage"
    for i in ids[:5]:
        assert (await detail(api, hub, i))["state"] == "failed"
        assert await ledger(api, i) == [("charge", -1), ("refund", 1)]  # refunded exactly once
    # Malformed motion boxes are only a hint: the clip is analysed without them.
    odd = await detail(api, hub, odd_boxes)
    assert odd["state"] == "done" and any("motion boxes ignored" in w for w in odd["summary"]["warnings"])
    assert (await detail(api, hub, good))["state"] == "done" and await ledger(api, good) == [("charge", -1)]
    assert await api.services.ctx.queue.receive(32, 1) == []


async def test_a_clip_whose_bytes_differ_from_the_declared_md5_fails_and_refunds(api: CloudApi,
                                                                                   mp4_clip: Clip) -> None:
    """Finalize trusts the committed Content-MD5 property (it reads only the header and the last GOP); a hub that
    commits other bytes of the same size under the declared MD5 is caught here, where every byte is read."""
    from azure.storage.blob import BlobBlock, ContentSettings

    hub = await api.hub()
    r = await api.initiate(hub, mp4_clip)
    assert r.status_code == 201, r.text
    ticket = r.json()
    lie = bytearray(mp4_clip.data)
    lie[len(lie) // 2] ^= 0xFF  # one byte in the middle of the media data: same size, same header
    # Put Blob would have the service check Content-MD5; a block list's Content-MD5 is only a stored property.
    client = BlobClient.from_blob_url(ticket["upload_url"], api_version=API_VERSION)
    try:
        await client.stage_block("YmxvY2swMDAw", bytes(lie), validate_content=True)
        await client.commit_block_list([BlobBlock("YmxvY2swMDAw")], content_settings=ContentSettings(
            content_type=mp4_clip.mime, content_md5=bytearray(mp4_clip.md5_raw)))
    finally:
        await client.close()
    r = await api.finalize(hub, ticket["id"])
    assert r.status_code == 200 and r.json()["state"] == "queued", r.text

    worker: Consumer

    def listener(event_id: str, state: str) -> None:
        if event_id == ticket["id"] and state in ("done", "failed"):
            worker.stop()

    worker = consumer(api, listener=listener)
    await asyncio.wait_for(worker.run(), 120)
    got = await detail(api, hub, ticket["id"])
    assert got["state"] == "failed" and got["reason"].startswith("clip_changed: the clip's MD5 differs"), got
    assert await ledger(api, ticket["id"]) == [("charge", -1), ("refund", 1)]


# -- poison -------------------------------------------------------------------------------------------------


async def _poison_records(api: CloudApi) -> list[QueueMessage]:
    q = AzureJobQueue.from_connection_string(api.config.storage.connection_string or "",
                                             f"{api.config.storage.queue}-poison")
    try:
        return await q.receive(32, 30)
    finally:
        await q.close()


async def test_a_message_whose_workers_keep_dying_is_poisoned(api: CloudApi, mp4_clip: Clip) -> None:
    hub = await api.hub()
    ev = (await queued(api, hub, mp4_clip))["id"]
    q = api.services.ctx.queue
    for _ in range(5):  # five deliveries that never finished (each worker died holding it)
        [msg] = await q.receive(1, 30)
        await q.release(msg)
    assert outcomes(await consumer(api).run_once()) == [(ev, "poisoned")]
    d = await detail(api, hub, ev)
    assert d["state"] == "failed" and d["reason"].startswith("poisoned: delivered 6 times without finishing")
    [rec] = await _poison_records(api)
    assert rec.body["body"] == {"event_id": ev, "v": 1} and rec.body["reason"] == d["reason"]
    assert await ledger(api, ev) == [("charge", -1), ("refund", 1)]
    assert await q.receive(32, 1) == []


async def test_a_failure_that_does_not_pass_is_retried_then_poisoned(api: CloudApi, mp4_clip: Clip) -> None:
    hub = await api.hub()
    ev = (await queued(api, hub, mp4_clip))["id"]
    # Blob storage on a closed port: a real connection refused on every download.
    dead = AzureBlobStore(f"http://127.0.0.1:{free_port()}/devstoreaccount1", "clips",
                          api.config.storage.account_key or Azurite.account_key, retry_total=0,
                          connection_timeout_s=1)
    try:
        worker = consumer(api, blobs=dead, max_deliveries=3, retry_delay_s=0)
        assert outcomes(await worker.run_once()) == [(ev, "retry")]
        assert (await row(api, ev)).state == "processing"  # not final: the next delivery may succeed
        assert outcomes(await worker.run_once()) == [(ev, "retry")]
        assert outcomes(await worker.run_once()) == [(ev, "poisoned")]
    finally:
        await dead.close()
    d = await detail(api, hub, ev)
    assert d["state"] == "failed" and d["reason"].startswith("poisoned after 3 deliveries: StorageUnavailable")
    assert (await row(api, ev)).attempts == 3
    [rec] = await _poison_records(api)
    assert rec.body["dequeue_count"] == 3 and rec.body["reason"] == d["reason"]
    assert await ledger(api, ev) == [("charge", -1), ("refund", 1)]


# -- the process: model check, SIGKILL, SIGTERM -------------------------------------------------------------


def worker_config(path: Path, cfg: CloudConfig, **worker: Any) -> Path:
    data = {"database": {"url": cfg.database.url},
            "storage": {"connection_string": cfg.storage.connection_string, "container": cfg.storage.container,
                        "queue": cfg.storage.queue},
            "worker": {"poll_interval_s": 0.2, **worker}}
    path.write_text(json.dumps(data))  # JSON is YAML
    return path


@pytest_asyncio.fixture
async def procs() -> AsyncIterator[list[asyncio.subprocess.Process]]:
    started: list[asyncio.subprocess.Process] = []
    yield started
    for p in started:
        if p.returncode is None:
            p.kill()
            await p.wait()


async def spawn(procs: list[asyncio.subprocess.Process], config: Path, *args: str) -> asyncio.subprocess.Process:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("PINGWATCH_CLOUD_CONFIG", None)
    p = await asyncio.create_subprocess_exec(sys.executable, "-m", "cloud.cli", "worker", "-c", str(config), *args,
                                             cwd=REPO, env=env, stdout=asyncio.subprocess.PIPE,
                                             stderr=asyncio.subprocess.PIPE)
    procs.append(p)
    return p


async def wait_for_line(p: asyncio.subprocess.Process, text: str) -> None:
    """Read the worker's log until ``text`` (the worker says when it holds an event)."""
    assert p.stderr is not None
    lines: list[bytes] = []
    async with asyncio.timeout(60):
        while line := await p.stderr.readline():
            lines.append(line)
            if text.encode() in line:
                return
    raise AssertionError(f"worker exited before {text!r}: {b''.join(lines).decode()[-2000:]}")


async def test_a_model_that_does_not_load_stops_the_worker_at_start(tmp_path: Path, azurite: Azurite,
                                                                    procs: list[asyncio.subprocess.Process]) -> None:
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"this is not an onnx model")
    cfg = CloudConfig.model_validate({"database": {"url": f"sqlite:///{tmp_path / 'unused.db'}"},
                                      "storage": {"connection_string": azurite.connection_string}})
    p = await spawn(procs, worker_config(tmp_path / "w.yaml", cfg), "--model", str(bad))
    out, err = await asyncio.wait_for(p.communicate(), 60)
    assert p.returncode == 2, err.decode()
    assert "error:" in err.decode() and "broken.onnx" in err.decode() and out == b""
    assert not (tmp_path / "unused.db").exists()  # it stopped before touching the database or the queue


async def test_a_worker_killed_mid_job_leaves_it_to_another(api: CloudApi, tmp_path: Path, person_clip: PersonClip,
                                                            procs: list[asyncio.subprocess.Process]) -> None:
    hub = await api.hub()
    ev = (await queued(api, hub, person_clip, motion=walk_motion(person_clip)))["id"]
    p = await spawn(procs, worker_config(tmp_path / "w.yaml", api.config, visibility_timeout_s=2))
    await wait_for_line(p, f"event {ev} processing")
    p.kill()  # SIGKILL: no cleanup, the message is still invisible
    await p.wait()
    assert (await row(api, ev)).state == "processing"

    finished: list[str] = []

    def listener(event_id: str, state: str) -> None:
        if state == "done":
            finished.append(event_id)
            worker.stop()

    worker = consumer(api, visibility_timeout_s=2, listener=listener)
    await asyncio.wait_for(worker.run(), 60)  # the message reappears after its visibility timeout
    assert finished == [ev]
    r = await row(api, ev)
    assert r.state == "done" and r.attempts == 2
    assert (await detail(api, hub, ev))["labels"] == ["person"]
    assert await ledger(api, ev) == [("charge", -1)]  # charged once, never refunded


async def test_sigterm_releases_a_job_it_cannot_finish_in_its_grace(api: CloudApi, tmp_path: Path,
                                                                     person_clip: PersonClip,
                                                                     procs: list[asyncio.subprocess.Process]) -> None:
    hub = await api.hub()
    ev = (await queued(api, hub, person_clip, motion=walk_motion(person_clip)))["id"]
    p = await spawn(procs, worker_config(tmp_path / "w.yaml", api.config, visibility_timeout_s=300,
                                         shutdown_grace_s=0))
    await wait_for_line(p, f"event {ev} processing")
    p.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(p.wait(), 60) == 0
    # Released, not left hidden for its 300 s: the next receive gets it at once.
    [msg] = await api.services.ctx.queue.receive(1, 30)
    assert msg.body["event_id"] == ev and msg.dequeue_count == 2  # the killed-off delivery, then this one
    await api.services.ctx.queue.release(msg)
    assert outcomes(await consumer(api).run_once()) == [(ev, "done")]
    assert await ledger(api, ev) == [("charge", -1)]


async def test_stop_lets_a_running_job_finish(api: CloudApi, mp4_clip: Clip) -> None:
    hub = await api.hub()
    ev = (await queued(api, hub, mp4_clip))["id"]

    def listener(event_id: str, state: str) -> None:
        if state == "processing":
            worker.stop()  # what SIGTERM does, while the job runs

    worker = consumer(api, shutdown_grace_s=60, listener=listener)
    await asyncio.wait_for(worker.run(), 60)
    assert outcomes(worker.outcomes) == [(ev, "done")]
    assert (await row(api, ev)).state == "done" and await api.services.ctx.queue.receive(32, 1) == []


# -- the optional VLM ---------------------------------------------------------------------------------------


async def test_vlm_review_comes_after_the_local_result(api: CloudApi, person_clip: PersonClip) -> None:
    hub = await api.hub()
    states_seen: list[str] = []
    answers = [web.json_response({"choices": [{"message": {"content": json.dumps({
        "label": "person", "summary": "A man at the door.", "notify": True, "reason": "a person",
        "threat_level": "low"})}}]}), web.Response(status=500, text="overloaded")]

    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        assert body["messages"][1]["content"][1]["image_url"]["url"].startswith("data:image/jpeg;base64,")
        states_seen.append((await row(api, current)).state)  # what the user already has when the VLM is asked
        return answers.pop(0)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    vlm = VlmClient(VlmConfig(base_url=f"http://127.0.0.1:{runner.addresses[0][1]}/v1", model="test"))
    try:
        worker = consumer(api, vlm=vlm)
        results = {}
        for _ in range(2):
            current = (await queued(api, hub, person_clip, motion=walk_motion(person_clip)))["id"]
            assert outcomes(await worker.run_once()) == [(current, "done")]
            results[current] = (await detail(api, hub, current))["summary"]
    finally:
        await vlm.close()
        await runner.cleanup()
    assert states_seen == ["done", "done"]  # the local result was recorded before the VLM was asked
    first, second = results.values()
    assert first["vlm"]["summary"] == "A man at the door." and first["notify"] is True
    assert second["vlm"] == {"error": "HTTP 500"} and second["notify"] is True  # the local result stands


def test_the_cli_mounts_worker_and_analyse(mp4_clip: Clip, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cloud.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["worker", "--help"])
    assert res.exit_code == 0 and "--concurrency" in res.output
    clip = tmp_path / "c.mp4"
    clip.write_bytes(mp4_clip.data)
    res = runner.invoke(app, ["analyse", str(clip), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["provider"] == "CPUExecutionProvider"
