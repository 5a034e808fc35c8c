"""hub.upload.blob_upload against a real Azurite, through SAS URLs issued by cloud.storage.blob (as the API does)."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import uuid
from pathlib import Path

import aiohttp
import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobSasPermissions, generate_blob_sas
from azure.storage.blob.aio import BlobServiceClient

from cloud.storage.blob import API_VERSION, AzureBlobStore
from hub.upload.blob_upload import (
    BlobAlreadyCommitted,
    SasExpired,
    TokenBucket,
    UploadFailed,
    UploadJournal,
    block_id,
    upload_file,
)
from tests.harness.ports import free_ports

KIB = 1024


@pytest.fixture
async def store(azurite):
    s = AzureBlobStore(azurite.blob_url, f"u{uuid.uuid4().hex[:12]}", azurite.account_key)
    await s.ensure_container()
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
async def admin(azurite, store):
    """The SDK with the account key: looks at what the service holds (uncommitted blocks), beside the SAS."""
    svc = BlobServiceClient(azurite.blob_url, credential=azurite.account_key, api_version=API_VERSION)
    try:
        yield svc.get_container_client(store.container)
    finally:
        await svc.close()


def clip(tmp_path: Path, size: int, name: str = "clip.mp4") -> Path:
    p = tmp_path / name
    p.write_bytes(os.urandom(size))
    return p


class PutBlockCounter:
    """A raw_request_hook that counts Put Block requests (what really went over the wire)."""

    def __init__(self) -> None:
        self.put_blocks = 0
        self.commits = 0

    def __call__(self, request) -> None:
        url = request.http_request.url
        if "comp=blocklist" in url:
            self.commits += 1
        elif "comp=block" in url:
            self.put_blocks += 1


async def test_upload_in_blocks_with_md5_and_content_type(store, tmp_path):
    path = clip(tmp_path, 5 * 256 * KIB + 123)
    md5 = hashlib.md5(path.read_bytes()).digest()
    seen: list[tuple[int, int]] = []
    res = await upload_file(path, await store.upload_url("ev/a.mp4"), content_type="video/mp4", md5=md5,
                            block_size=256 * KIB, progress=lambda done, total: seen.append((done, total)))
    assert (res.blocks_total, res.blocks_sent, res.blocks_skipped) == (6, 6, 0)
    assert res.bytes_sent == res.size == path.stat().st_size and res.md5 == md5
    info = await store.info("ev/a.mp4")
    assert info is not None
    assert (info.size, info.content_md5, info.content_type) == (res.size, md5, "video/mp4")
    assert await store.read("ev/a.mp4") == path.read_bytes()
    assert seen[0] == (0, res.size) and seen[-1] == (res.size, res.size)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


async def test_resume_after_crash_sends_only_missing_blocks(store, admin, tmp_path):
    path = clip(tmp_path, 8 * 128 * KIB + 5)  # 9 blocks
    url = await store.upload_url("ev/resume.mp4")
    journal = tmp_path / "resume.journal"

    class Crash(Exception):
        pass

    def crash_after_four(done: int, total: int) -> None:
        if done >= 4 * 128 * KIB:
            raise Crash  # the process dies here: 4 blocks acknowledged, nothing committed

    with pytest.raises(Crash):
        await upload_file(path, url, content_type="video/mp4", block_size=128 * KIB, journal=journal,
                          progress=crash_after_four)
    assert await store.info("ev/resume.mp4") is None  # nothing committed
    blocks = await admin.get_blob_client("ev/resume.mp4").get_block_list("uncommitted")
    staged = sorted(b.id for b in blocks[1])
    assert staged == [block_id(128 * KIB, i) for i in range(4)]
    assert json.loads(journal.read_text())["staged"] == [0, 1, 2, 3]

    counter = PutBlockCounter()
    res = await upload_file(path, url, content_type="video/mp4", block_size=128 * KIB, journal=journal,
                            client_options={"raw_request_hook": counter})
    assert (res.blocks_total, res.blocks_skipped, res.blocks_sent) == (9, 4, 5)
    assert counter.put_blocks == 5 and counter.commits == 1
    assert res.bytes_sent == path.stat().st_size - 4 * 128 * KIB
    assert await store.read("ev/resume.mp4") == path.read_bytes()
    info = await store.info("ev/resume.mp4")
    assert info is not None and info.content_md5 == hashlib.md5(path.read_bytes()).digest()
    assert not journal.exists()  # done: the journal is gone


async def test_journal_that_lies_is_recovered(store, tmp_path):
    # The journal claims every block, the service holds none (e.g. dropped after 7 days): the commit is refused
    # with InvalidBlockList and the upload sends everything once more.
    path = clip(tmp_path, 3 * 64 * KIB)
    url = await store.upload_url("ev/lie.mp4")
    journal = UploadJournal(tmp_path / "lie.journal")
    key = {"blob": url.split("?")[0], "size": 3 * 64 * KIB,
           "md5": hashlib.md5(path.read_bytes()).hexdigest(), "block_size": 64 * KIB}
    journal.load(key)
    for i in range(3):
        journal.mark(i)
    counter = PutBlockCounter()
    res = await upload_file(path, url, content_type="video/mp4", block_size=64 * KIB, journal=journal,
                            client_options={"raw_request_hook": counter})
    assert res.blocks_sent == 3 and counter.put_blocks == 3 and counter.commits == 2
    assert await store.read("ev/lie.mp4") == path.read_bytes()


async def test_journal_of_another_file_is_ignored(store, tmp_path):
    a, b = clip(tmp_path, 2 * 64 * KIB, "a.mp4"), clip(tmp_path, 2 * 64 * KIB, "b.mp4")
    journal = UploadJournal(tmp_path / "j")
    journal.load({"blob": "x", "size": 1, "md5": hashlib.md5(a.read_bytes()).hexdigest(), "block_size": 64 * KIB})
    journal.mark(0)
    res = await upload_file(b, await store.upload_url("ev/b.mp4"), content_type="video/mp4",
                            block_size=64 * KIB, journal=journal)
    assert res.blocks_skipped == 0 and res.blocks_sent == 2


async def test_committed_blob_is_never_overwritten(store, tmp_path):
    first = clip(tmp_path, 100 * KIB, "first.mp4")
    url = await store.upload_url("ev/once.mp4")
    await upload_file(first, url, content_type="video/mp4", block_size=64 * KIB)
    # The same clip again (a retry after a lost acknowledgement): already there, the caller goes on to finalize.
    with pytest.raises(BlobAlreadyCommitted, match="finalize"):
        await upload_file(first, url, content_type="video/mp4", block_size=64 * KIB)
    # Different bytes to the same blob: refused, the committed bytes are untouched.
    other = clip(tmp_path, 100 * KIB, "other.mp4")
    with pytest.raises(BlobAlreadyCommitted):
        await upload_file(other, url, content_type="video/mp4", block_size=64 * KIB)
    assert await store.read("ev/once.mp4") == first.read_bytes()


async def test_expired_sas_is_sas_expired(store, tmp_path):
    path = clip(tmp_path, 10 * KIB)
    sas = generate_blob_sas(
        store.account_name, store.container, "ev/late.mp4", account_key=store._account_key,
        permission=BlobSasPermissions(create=True, write=True),
        expiry=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=30), protocol="https,http",
    )
    url = f"{store._container.get_blob_client('ev/late.mp4').url}?{sas}"
    with pytest.raises(SasExpired, match="new upload URL"):
        await upload_file(path, url, content_type="video/mp4")
    assert await store.info("ev/late.mp4") is None


async def test_read_sas_cannot_upload(store, tmp_path):
    path = clip(tmp_path, 10 * KIB)
    with pytest.raises(SasExpired):  # 403: the caller asks the API for a proper URL
        await upload_file(path, await store.read_url("ev/r.mp4"), content_type="video/mp4")
    assert await store.info("ev/r.mp4") is None


async def test_wrong_md5_block_is_refused_by_the_service(store, admin):
    url = await store.upload_url("ev/bad.mp4")
    base, query = url.split("?", 1)
    data = b"A" * 1000
    wrong = base64.b64encode(hashlib.md5(b"B" * 1000).digest()).decode()
    bid = base64.b64encode(block_id(64 * KIB, 0).encode()).decode()
    headers = {"Content-MD5": wrong, "x-ms-version": API_VERSION}
    async with (
        aiohttp.ClientSession() as http,
        http.put(f"{base}?{query}&comp=block&blockid={bid}", data=data, headers=headers) as r,
    ):
        assert r.status == 400
        # Azure: Md5Mismatch; Azurite 3.35: InvalidOperation "Provided contentMD5 doesn't match."
        assert r.headers.get("x-ms-error-code") in {"Md5Mismatch", "InvalidOperation"}
    # Nothing was staged: the service does not even know the blob (a staged block would make it exist).
    with pytest.raises(ResourceNotFoundError):
        await admin.get_blob_client("ev/bad.mp4").get_block_list("uncommitted")


async def test_bytes_corrupted_on_the_way_are_resent_never_accepted(store, tmp_path):
    path = clip(tmp_path, 3 * 64 * KIB)
    corrupted = []

    def flip_first_put_block(request) -> None:
        r = request.http_request
        if "comp=block&" in r.url + "&" and "blocklist" not in r.url and not corrupted:
            body = bytearray(r.data)
            body[100] ^= 0xFF  # after the SDK computed the block's MD5: the wire damaged it
            r.data = bytes(body)
            corrupted.append(r.url)

    res = await upload_file(path, await store.upload_url("ev/flip.mp4"), content_type="video/mp4",
                            block_size=64 * KIB, client_options={"raw_request_hook": flip_first_put_block})
    assert len(corrupted) == 1 and res.md5_retries == 1 and res.blocks_sent == 3
    assert await store.read("ev/flip.mp4") == path.read_bytes()

    # Damage on every attempt: the upload gives up with UploadFailed rather than committing bad bytes.
    def flip_all(request) -> None:
        r = request.http_request
        if "comp=block" in r.url and "blocklist" not in r.url:
            body = bytearray(r.data)
            body[0] ^= 0xFF
            r.data = bytes(body)

    with pytest.raises(UploadFailed, match="corrupted on the way"):
        await upload_file(path, await store.upload_url("ev/flip2.mp4"), content_type="video/mp4",
                          block_size=64 * KIB, md5_retries=2, client_options={"raw_request_hook": flip_all})
    assert await store.info("ev/flip2.mp4") is None


class VirtualClock:
    """Time that moves only when the bucket sleeps: the cap's accounting without wall-clock timing."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


async def test_bandwidth_cap_is_honoured(store, tmp_path):
    clock = VirtualClock()
    rate, burst = 128 * KIB, 64 * KIB
    bucket = TokenBucket(rate, burst, clock=clock, sleep=clock.sleep)
    path = clip(tmp_path, 1024 * KIB)
    res = await upload_file(path, await store.upload_url("ev/capped.mp4"), content_type="video/mp4",
                            bucket=bucket)
    # With a cap, blocks carry ~1 s of it (128 KiB), not 4 MiB: 8 blocks.
    assert (res.block_size, res.blocks_total) == (128 * KIB, 8)
    assert bucket.granted == res.bytes_sent == path.stat().st_size
    # Only the burst goes out free; the rest waits at the capped rate.
    assert sum(clock.sleeps) == pytest.approx((path.stat().st_size - burst) / rate)
    assert bucket.waited_s == pytest.approx(sum(clock.sleeps))
    assert bucket.granted <= burst + rate * (clock.now - bucket.started) + 1e-6
    assert await store.read("ev/capped.mp4") == path.read_bytes()


async def test_token_bucket_refills_with_time():
    clock = VirtualClock()
    bucket = TokenBucket(1000, 500, clock=clock, sleep=clock.sleep)
    await bucket.acquire(500)  # the burst: free
    assert clock.sleeps == []
    clock.now += 0.2  # 200 bytes' worth of idle time
    await bucket.acquire(300)  # 100 short: a 0.1 s wait
    assert clock.sleeps == [pytest.approx(0.1)]
    clock.now += 10  # long idle: refills to the burst, never beyond
    await bucket.acquire(500)
    await bucket.acquire(1000)  # larger than the burst: passes at the average rate (1 s of debt)
    assert clock.sleeps[1:] == [pytest.approx(1.0)]
    assert bucket.granted == 2300
    with pytest.raises(ValueError):
        TokenBucket(0)


async def test_storage_down_is_upload_failed(tmp_path):
    (port,) = free_ports(1)
    path = clip(tmp_path, 10 * KIB)
    url = f"http://127.0.0.1:{port}/devstoreaccount1/c/ev.mp4?sv=2025-11-05&sr=b&sp=cw&sig=x"
    with pytest.raises(UploadFailed, match="unreachable"):
        await upload_file(path, url, content_type="video/mp4", retry_total=0, connection_timeout_s=2)


async def test_file_changed_since_initiate_is_refused(store, tmp_path):
    path = clip(tmp_path, 10 * KIB)
    with pytest.raises(ValueError, match="changed"):
        await upload_file(path, await store.upload_url("ev/chg.mp4"), content_type="video/mp4", md5=b"\0" * 16)
    assert await store.info("ev/chg.mp4") is None
