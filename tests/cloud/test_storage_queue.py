"""cloud.storage.queue against a real Azurite queue service: delivery, leases, poison handling, errors."""

from __future__ import annotations

import json
import uuid

import pytest
from azure.storage.queue.aio import QueueServiceClient

from cloud.storage.blob import API_VERSION, StorageUnavailable
from cloud.storage.queue import MAX_MESSAGE_BYTES, AzureJobQueue, JobQueue, MessageLost
from tests.harness.ports import free_ports


@pytest.fixture
async def queue(azurite):
    q = AzureJobQueue(azurite.queue_url, f"jobs-{uuid.uuid4().hex[:10]}", azurite.account_key)
    await q.ensure()
    try:
        yield q
    finally:
        await q.close()


@pytest.fixture
async def service(azurite):
    """The SDK with the account key, to look at the queues from outside the module under test."""
    svc = QueueServiceClient(azurite.queue_url, credential=azurite.account_key, api_version=API_VERSION)
    try:
        yield svc
    finally:
        await svc.close()


async def _peek_all(service, name: str) -> list[str]:
    return [m.content for m in await service.get_queue_client(name).peek_messages(max_messages=32)]


async def test_ensure_creates_queue_and_poison(queue, service):
    assert isinstance(queue, JobQueue)
    await queue.ensure()  # idempotent
    names = {q.name async for q in service.list_queues(name_starts_with=queue.name)}
    assert names == {queue.name, f"{queue.name}-poison"}


async def test_send_receive_delete(queue, service):
    await queue.send({"event_id": "e1", "v": 1})
    assert json.loads((await _peek_all(service, queue.name))[0]) == {"event_id": "e1", "v": 1}  # plain JSON text
    [msg] = await queue.receive(visibility_timeout_s=60)
    assert msg.body == {"event_id": "e1", "v": 1}
    assert msg.dequeue_count == 1
    assert await queue.receive() == []  # invisible while held
    await queue.delete(msg)
    assert await _peek_all(service, queue.name) == []
    with pytest.raises(MessageLost):
        await queue.delete(msg)


async def test_receive_many_is_bounded(queue):
    for i in range(5):
        await queue.send({"n": i})
    got = await queue.receive(max_messages=3)
    assert len(got) == 3
    rest = await queue.receive(max_messages=32)
    assert len(rest) == 2
    assert sorted(m.body["n"] for m in got + rest) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError):
        await queue.receive(max_messages=33)


async def test_extend_gives_a_new_receipt(queue):
    await queue.send({"event_id": "e2"})
    [msg] = await queue.receive(visibility_timeout_s=30)
    longer = await queue.extend(msg, 120)
    assert longer.pop_receipt != msg.pop_receipt
    assert (longer.id, longer.body, longer.dequeue_count) == (msg.id, msg.body, msg.dequeue_count)
    assert await queue.receive() == []
    with pytest.raises(MessageLost):  # the old receipt no longer holds it
        await queue.extend(msg, 60)
    await queue.delete(longer)


async def test_release_makes_it_visible_at_once(queue):
    await queue.send({"event_id": "e3"})
    [msg] = await queue.receive(visibility_timeout_s=300)
    await queue.release(msg)
    [again] = await queue.receive(visibility_timeout_s=300)
    assert again.id == msg.id and again.body == msg.body
    assert again.dequeue_count == 2  # a second delivery is counted
    with pytest.raises(MessageLost):
        await queue.release(msg)  # the first receipt is stale now
    await queue.delete(again)


async def test_to_poison_keeps_body_reason_and_count(queue, service):
    await queue.send({"event_id": "e4", "v": 1})
    [m1] = await queue.receive()
    await queue.release(m1)
    [m2] = await queue.receive()
    await queue.to_poison(m2, "decode failed: moov atom not found")
    assert await _peek_all(service, queue.name) == []
    [raw] = await _peek_all(service, f"{queue.name}-poison")
    record = json.loads(raw)
    assert record["body"] == {"event_id": "e4", "v": 1}
    assert record["reason"] == "decode failed: moov atom not found"
    assert record["dequeue_count"] == 2
    assert record["message_id"] == m2.id and record["queue"] == queue.name


async def test_non_json_message_goes_to_poison_on_receipt(queue, service):
    await service.get_queue_client(queue.name).send_message("not json <at all>")
    await service.get_queue_client(queue.name).send_message("[1, 2]")  # JSON, but not an object
    await queue.send({"ok": True})
    got = await queue.receive(max_messages=10)
    assert [m.body for m in got] == [{"ok": True}]
    poison = [json.loads(r) for r in await _peek_all(service, f"{queue.name}-poison")]
    assert sorted(p["body"]["raw"] for p in poison) == ["[1, 2]", "not json <at all>"]
    assert all(p["reason"] == "body is not a JSON object" for p in poison)


async def test_bad_bodies_are_refused_before_sending(queue, service):
    with pytest.raises(TypeError):
        await queue.send(["not", "an", "object"])  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        await queue.send({"blob": "x" * MAX_MESSAGE_BYTES})
    assert await _peek_all(service, queue.name) == []


async def test_non_ascii_survives(queue):
    body = {"prompt": "personne à la porte <la nuit> & \"après\" 🚪", "v": 1}
    await queue.send(body)
    [msg] = await queue.receive()
    assert msg.body == body
    await queue.delete(msg)


async def test_queue_down_is_unavailable():
    (port,) = free_ports(1)
    q = AzureJobQueue(f"http://127.0.0.1:{port}/devstoreaccount1", "jobs", "a2V5", retry_total=0,
                      connection_timeout_s=2)
    try:
        with pytest.raises(StorageUnavailable):
            await q.send({"v": 1})
        with pytest.raises(StorageUnavailable):
            await q.receive()
        with pytest.raises(StorageUnavailable):
            await q.ensure()
    finally:
        await q.close()
