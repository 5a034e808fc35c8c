"""Upload one local clip to a SAS URL as a block blob: resumable, MD5-checked per block, optionally rate-capped.

The hub side of the upload protocol (the cloud API issues the SAS; this module never imports cloud/):

1. The file is cut into fixed-size blocks whose ids are a function of (block size, index) only, so a retry,
   even in a new process, stages the very same ids.
2. Each block goes up with Put Block and a transactional MD5 (Content-MD5, computed in the thread that reads
   the block, off the event loop): bytes damaged on the way are refused by the service (400 Md5Mismatch) and
   that block is sent again. The file is read once, in order; the next block is read and hashed while the
   previous one is on the wire.
3. Resume: the upload SAS is create+write only, and reading the uncommitted block list (Get Block List) needs
   read permission, so the service cannot tell the hub what it already holds. A small journal file records
   each block once the service acknowledged it; a restarted upload skips those. Should the journal be wrong
   (the service drops uncommitted blocks after 7 days), the commit is refused with InvalidBlockList and the
   upload starts once more from block 0.
4. Put Block List commits the ids in order with Content-MD5 = the whole file's MD5 and the content type, and
   If-None-Match: * so that a retry never overwrites a blob that is already committed (BlobAlreadyCommitted:
   the caller goes on to finalize, where the API checks size and MD5 with its own read access).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.blob import BlobBlock, ContentSettings
from azure.storage.blob.aio import BlobClient

# Azurite 3.35 accepts service versions up to 2025-11-05 and azure-storage-blob 12.31 defaults to a newer one;
# Azure accepts this one too, so the hub pins it and works against both (same value as cloud/storage/blob.py).
API_VERSION = "2025-11-05"
# 8 MiB: a 20 s camera clip (5-8 MB) goes up in one or two Put Blocks, and a resume re-sends at most 8 MiB.
# Every request costs the service more than its bytes do, so fewer, larger blocks upload faster.
DEFAULT_BLOCK_SIZE = 8 * 1024 * 1024
# With a bandwidth cap, a block carries about this many seconds of the cap (but at least MIN_CAPPED_BLOCK), so
# the uplink is never saturated for long: an 8 MiB block at line rate would starve a video call for seconds.
_CAPPED_BLOCK_SECONDS = 1.0
MIN_CAPPED_BLOCK = 64 * 1024
# The service's limits: 50,000 blocks per blob, 4000 MiB per block.
_MAX_BLOCKS = 50_000
_MAX_BLOCK_SIZE = 4000 * 1024 * 1024
# How often one block is re-sent after the service refused its MD5 before the upload gives up.
DEFAULT_MD5_RETRIES = 3
# Put Block requests in flight at once: while the service checks and stores one block the next is on the wire
# (measured against Azurite, 20 MB: one at a time 0.78 of a single Put Blob's speed, two in flight 0.95).
DEFAULT_CONCURRENCY = 2
# Blocks smaller than this go one at a time whatever max_concurrency says: such a block costs the service little,
# so overlapping gains nothing, and these are a bandwidth cap's blocks, which its bucket paces one by one anyway.
# One at a time also keeps the journal exactly what the service holds when the upload dies.
MIN_CONCURRENT_BLOCK = 1024 * 1024

Progress = Callable[[int, int], None]  # (bytes acknowledged so far, file size)


class UploadError(Exception):
    """Base of the uploader's errors."""


class SasExpired(UploadError):
    """Storage refused the SAS (403: expired or not valid for this request): ask the API for a new URL."""


class BlobAlreadyCommitted(UploadError):
    """A blob is already committed at this URL (a previous attempt finished, or someone else wrote it).

    The SAS cannot read it back; call finalize, which checks its size and MD5 against what was declared."""


class UploadFailed(UploadError):
    """A transient failure (network, timeout, 5xx, bytes corrupted on the way): retry later with backoff."""


@dataclass(frozen=True)
class UploadResult:
    size: int
    md5: bytes  # the whole file's MD5 (16 raw bytes), as committed in Content-MD5
    block_size: int
    blocks_total: int
    blocks_sent: int  # Put Block requests that succeeded in this call
    blocks_skipped: int  # already staged according to the journal
    bytes_sent: int
    md5_retries: int  # blocks re-sent after the service refused their MD5


class TokenBucket:
    """An async token bucket over bytes: ``acquire(n)`` returns once n bytes may be sent.

    The bucket may go into debt by one request and sleeps it off, so a single request larger than the burst
    still passes at the right average rate. ``clock`` and ``sleep`` can be replaced (tests drive a virtual
    clock); ``waited_s`` and ``granted`` are the accounting: granted <= burst + rate * elapsed always holds.
    """

    def __init__(
        self,
        rate_bps: float,
        burst: int | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        if rate_bps <= 0:
            raise ValueError("rate must be > 0 bytes/s")
        self.rate = float(rate_bps)
        self.burst = int(burst if burst is not None else max(MIN_CAPPED_BLOCK, rate_bps))
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(self.burst)
        self._last = clock()
        self._lock = asyncio.Lock()
        self.granted = 0
        self.waited_s = 0.0
        self.started = self._last

    async def acquire(self, n: int) -> None:
        if n <= 0:
            return
        async with self._lock:  # one sender at a time keeps the debt arithmetic simple and fair
            now = self._clock()
            self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.rate)
            self._last = now
            self._tokens -= n
            if self._tokens < 0:
                wait = -self._tokens / self.rate
                self.waited_s += wait
                await self._sleep(wait)
                now = self._clock()
                self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.rate)
                self._last = now
            self.granted += n


class UploadJournal:
    """Which blocks of one upload the service has acknowledged, in a small JSON file (atomic replace).

    The journal is keyed by (blob URL without its SAS, file size, MD5, block size): another file, another
    block size or another blob starts from scratch. A torn or unreadable journal is treated as empty: the
    worst case is re-sending blocks, never skipping one that is missing (the commit would say so).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._key: dict[str, Any] = {}
        self._staged: set[int] = set()

    def load(self, key: dict[str, Any]) -> set[int]:
        self._key = key
        try:
            data = json.loads(self.path.read_text())
            ok = isinstance(data, dict) and data.get("key") == key
            self._staged = {int(i) for i in data.get("staged", [])} if ok else set()
        except (OSError, ValueError, TypeError):
            self._staged = set()
        return set(self._staged)

    def mark(self, index: int) -> None:
        self._staged.add(index)
        self._write()

    def reset(self) -> None:
        self._staged = set()
        self._write()

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)

    def _write(self) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps({"key": self._key, "staged": sorted(self._staged)}))
        os.replace(tmp, self.path)


def block_id(block_size: int, index: int) -> str:
    """Deterministic, fixed-length block id (the service wants equal lengths within one blob)."""
    return f"pw-{block_size:010d}-{index:06d}"


def effective_block_size(block_size: int, bucket: TokenBucket | None, size: int) -> int:
    bs = block_size
    if bucket is not None:
        bs = min(bs, max(MIN_CAPPED_BLOCK, int(bucket.rate * _CAPPED_BLOCK_SECONDS)))
    # Never more than 50,000 blocks: grow the block for huge files (not expected for clips).
    bs = max(bs, -(-size // _MAX_BLOCKS))
    if not 0 < bs <= _MAX_BLOCK_SIZE:
        raise ValueError(f"block size {bs} outside 1..{_MAX_BLOCK_SIZE}")
    return bs


def file_md5(path: Path, chunk: int = 1024 * 1024) -> bytes:
    h = hashlib.md5()
    with open(path, "rb") as f:
        while data := f.read(chunk):
            h.update(data)
    return h.digest()


def _read_block(path: Path, offset: int, length: int, whole: Any, block_digest: bool) -> tuple[bytes, bytes]:
    """One block's bytes and MD5 (b"" when not wanted), feeding the whole file's digest on the way (in file
    order: the caller reads blocks one after the other). Runs in a thread: hashlib releases the GIL."""
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read(length)
    if len(data) != length:
        raise UploadFailed(f"{path}: short read at {offset} ({len(data)} of {length} bytes): file changed?")
    if whole is not None:
        whole.update(data)
    return data, hashlib.md5(data, usedforsecurity=False).digest() if block_digest else b""


def _strip_query(url: str) -> str:
    u = urlsplit(url)
    return urlunsplit((u.scheme, u.netloc, u.path, "", ""))


def _error_code(e: HttpResponseError) -> str:
    # The storage SDK sets error_code (x-ms-error-code) on its HttpResponseErrors; azure-core does not declare it.
    code = getattr(e, "error_code", None) or ""
    return str(getattr(code, "value", code))  # a StorageErrorCode enum or a plain string


def _describe(e: BaseException) -> str:
    if isinstance(e, HttpResponseError):
        return f"{e.status_code} {_error_code(e) or e.reason or ''}".strip()
    first = str(e).strip().splitlines()
    return f"{type(e).__name__}: {first[0] if first else ''}"[:300]


def _map(e: BaseException, what: str) -> UploadError:
    """SDK/network exception → SasExpired / BlobAlreadyCommitted / UploadFailed."""
    if isinstance(e, UploadError):
        return e
    if isinstance(e, HttpResponseError) and e.status_code == 403:
        return SasExpired(f"{what}: storage refused the SAS ({_describe(e)}); ask the API for a new upload URL")
    if isinstance(e, (ServiceRequestError, ServiceResponseError, asyncio.TimeoutError, OSError)):
        return UploadFailed(f"{what}: storage unreachable ({_describe(e)})")
    if isinstance(e, (HttpResponseError, AzureError)):
        return UploadFailed(f"{what}: storage answered {_describe(e)}")
    return UploadFailed(f"{what}: {_describe(e)}")


# What the SDK and the network raise; anything else (a caller's progress callback, a bug) propagates unchanged.
_TRANSPORT_ERRORS = (AzureError, OSError, asyncio.TimeoutError)


def _is_md5_mismatch(e: HttpResponseError) -> bool:
    if e.status_code != 400:
        return False
    code = _error_code(e)
    # Azure answers Md5Mismatch; Azurite 3.35 answers InvalidOperation "Provided contentMD5 doesn't match.".
    return code in {"Md5Mismatch", "InvalidMd5", "Crc64Mismatch"} or (
        code == "InvalidOperation" and "md5" in str(e.message or "").lower()
    )


async def upload_file(
    path: Path,
    sas_url: str,
    *,
    content_type: str,
    md5: bytes | None = None,
    verify_md5: bool = True,
    block_size: int = DEFAULT_BLOCK_SIZE,
    journal: UploadJournal | Path | None = None,
    bucket: TokenBucket | None = None,
    progress: Progress | None = None,
    max_concurrency: int = DEFAULT_CONCURRENCY,
    md5_retries: int = DEFAULT_MD5_RETRIES,
    retry_total: int = 2,
    connection_timeout_s: float = 10.0,
    read_timeout_s: float = 60.0,
    client_options: Mapping[str, Any] | None = None,
) -> UploadResult:
    """Upload ``path`` to the blob behind ``sas_url``; see the module docstring for the protocol.

    ``md5``: the MD5 the hub declared at initiate. The file is read once: each block's MD5 (sent as its
    transactional Content-MD5) and the whole file's MD5 are computed from the same read, and a file that no
    longer matches ``md5`` is refused (ValueError) before the commit rather than committed under a wrong
    checksum. ``verify_md5=False`` trusts ``md5`` instead (the caller hashed the same file a moment ago): one
    hashing pass less; a file that changed in between is then caught by the cloud's worker, which re-hashes the
    bytes. ``journal``: where acknowledged blocks are recorded (pass the same path again after a crash to
    resume). ``bucket``: a bandwidth cap shared by all uploads of the hub. ``max_concurrency``: Put Block
    requests in flight at once for blocks of MIN_CONCURRENT_BLOCK or more (the commit still lists the blocks in
    file order); an upload that dies with blocks in flight may leave some staged that the journal does not know,
    which a resume sends again (same ids: harmless). ``retry_total``: the SDK's own
    quick retries per request; the caller's outbox owns the slow backoff. ``client_options``: extra keyword
    arguments for the SDK client (e.g. request hooks in tests).
    """
    if max_concurrency < 1:
        raise ValueError("max_concurrency must be >= 1")
    if md5 is None:
        # No declared digest (not the hub's path): take it first, it keys the journal and goes into the commit.
        md5 = await asyncio.to_thread(file_md5, path)
        verify_md5 = False
    size = (await asyncio.to_thread(path.stat)).st_size
    bs = effective_block_size(block_size, bucket, size)
    count = -(-size // bs)
    in_flight_max = max_concurrency if bs >= MIN_CONCURRENT_BLOCK else 1
    ids = [block_id(bs, i) for i in range(count)]
    jr = UploadJournal(journal) if isinstance(journal, Path) else journal
    key = {"blob": _strip_query(sas_url), "size": size, "md5": md5.hex(), "block_size": bs}
    staged = jr.load(key) if jr is not None else set()
    staged &= set(range(count))

    opts: dict[str, Any] = {
        "api_version": API_VERSION,
        "retry_total": retry_total,
        "retry_connect": retry_total,
        "retry_read": retry_total,
        "retry_status": retry_total,
        "initial_backoff": 0.5,
        "increment_base": 2,
        "connection_timeout": connection_timeout_s,
        "read_timeout": read_timeout_s,
    }
    opts.update(client_options or {})
    client = BlobClient.from_blob_url(sas_url, **opts)
    sent = skipped = bytes_sent = resent = 0
    whole = hashlib.md5(usedforsecurity=False) if verify_md5 else None

    def report(done: int) -> None:
        if progress is not None:
            progress(done, size)

    async def stage(index: int, data: bytes, block_md5: bytes) -> None:
        nonlocal sent, bytes_sent, resent
        length = len(data)
        for attempt in range(md5_retries + 1):
            if bucket is not None:
                await bucket.acquire(length)
            try:
                # The block's MD5 was computed off the event loop with the read; the service checks it.
                await client.stage_block(ids[index], data, length=length,
                                         transactional_content_md5=bytearray(block_md5))
                break
            except HttpResponseError as e:
                if _is_md5_mismatch(e) and attempt < md5_retries:
                    resent += 1  # damaged on the way: the service kept nothing, send the same bytes again
                    continue
                if _is_md5_mismatch(e):
                    raise UploadFailed(f"block {index}: the service refused its MD5 {md5_retries + 1} times: "
                                       "bytes are being corrupted on the way") from e
                raise _map(e, f"block {index}") from e
            except _TRANSPORT_ERRORS as e:
                raise _map(e, f"block {index}") from e
        sent += 1
        bytes_sent += length
        if jr is not None:
            jr.mark(index)

    async def stage_all(skip: set[int]) -> None:
        """Read the file once, in order (hashing as it goes), and keep up to max_concurrency blocks in flight.

        The next block is read and hashed in a thread while earlier ones are on the wire. Blocks the journal
        says are staged are read only when the whole-file digest needs them."""
        nonlocal skipped
        done = sum(min(bs, size - i * bs) for i in skip)
        skipped = len(skip)
        report(done)
        in_flight: set[asyncio.Task[int]] = set()

        async def send(index: int, data: bytes, block_md5: bytes) -> int:
            await stage(index, data, block_md5)
            return len(data)

        async def settle(until: int) -> None:
            nonlocal done
            while len(in_flight) > until:
                finished, _ = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
                for task in finished:
                    in_flight.discard(task)
                    done += task.result()  # re-raises the block's error
                    report(done)

        try:
            for i in range(count):
                if i in skip and whole is None:
                    continue
                offset = i * bs
                data, block_md5 = await asyncio.to_thread(_read_block, path, offset, min(bs, size - offset),
                                                          whole, i not in skip)
                if i in skip:
                    continue
                await settle(in_flight_max - 1)
                in_flight.add(asyncio.ensure_future(send(i, data, block_md5)))
            await settle(0)
        finally:
            for task in in_flight:
                task.cancel()
            if in_flight:
                await asyncio.gather(*in_flight, return_exceptions=True)

    def commit_md5() -> bytes:
        assert md5 is not None
        if whole is None:
            return md5
        digest = whole.digest()
        if md5 != digest:
            raise ValueError(f"{path}: MD5 differs from the declared one: the file changed since the event was sent")
        return digest

    async def commit(whole_md5: bytes) -> None:
        await client.commit_block_list(
            [BlobBlock(block_id=b) for b in ids],
            content_settings=ContentSettings(content_type=content_type, content_md5=bytearray(whole_md5)),
            match_condition=MatchConditions.IfMissing,  # If-None-Match: * — never overwrite a committed blob
        )

    try:
        await stage_all(staged)
        whole_md5 = commit_md5()
        try:
            await commit(whole_md5)
        except HttpResponseError as e:
            if e.status_code == 400 and _error_code(e) == "InvalidBlockList" and staged:
                # The journal promised blocks the service no longer has: send everything once more.
                if jr is not None:
                    jr.reset()
                if whole is not None:
                    whole = hashlib.md5(usedforsecurity=False)
                await stage_all(set())
                await commit(commit_md5())
            else:
                raise
    except HttpResponseError as e:
        if e.status_code == 412 or isinstance(e, ResourceExistsError):
            if jr is not None:
                jr.remove()
            raise BlobAlreadyCommitted(
                f"{_strip_query(sas_url)} is already committed; finalize checks its size and MD5"
            ) from e
        raise _map(e, "commit") from e
    except _TRANSPORT_ERRORS as e:
        raise _map(e, "upload") from e
    finally:
        await client.close()
    if jr is not None:
        jr.remove()
    return UploadResult(
        size=size, md5=whole_md5, block_size=bs, blocks_total=count, blocks_sent=sent,
        blocks_skipped=skipped, bytes_sent=bytes_sent, md5_retries=resent,
    )


def md5_b64(md5: bytes) -> str:
    """The base64 form the API's initiate call takes."""
    return base64.b64encode(md5).decode()
