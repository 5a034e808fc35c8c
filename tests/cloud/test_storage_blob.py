"""cloud.storage.blob against a real Azurite: data operations, SAS permissions as the service enforces them,
user-delegation signing, and error mapping when storage is down."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import uuid
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import BlobSasPermissions, ContentSettings, UserDelegationKey, generate_blob_sas
from azure.storage.blob.aio import BlobClient

from cloud.storage.blob import (
    API_VERSION,
    AzureBlobStore,
    BlobNotFound,
    BlobStore,
    StorageUnavailable,
)
from tests.harness.ports import free_ports

# Azurite derives user-delegation keys from this constant (dist/src/blob/utils/constants.js,
# USERDELEGATIONKEY_BASIC_KEY): an HMAC of the key's oid/tid/start/expiry/service/version.
AZURITE_UDK_BASE = "I17GKLvcJUossaebtsEDZZ2RJ8GNLwLH4m7hRMxbVbkx6wNIRAABj4Rtw0FBhFuEAgmbL4gFMzUw+AStz9Sqdg=="


@pytest.fixture
async def store(azurite):
    s = AzureBlobStore(azurite.blob_url, f"t{uuid.uuid4().hex[:12]}", azurite.account_key)
    await s.ensure_container()
    try:
        yield s
    finally:
        await s.close()


def _sas_params(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


async def _status_of(coro) -> int:
    try:
        await coro
    except HttpResponseError as e:
        return int(e.status_code or 0)
    return 200


async def test_is_a_blob_store(store):
    assert isinstance(store, BlobStore)
    await store.ensure_container()  # a second time is fine


async def test_head_is_the_properties_and_the_first_bytes_in_one_read(store):
    """What finalize checks: the whole blob's size and stored MD5 (not the range's), and its first bytes."""
    data = bytes(range(256)) * 40
    md5 = hashlib.md5(data).digest()
    settings = ContentSettings(content_type="video/mp4", content_md5=md5)
    await store._container.get_blob_client("clip.mp4").upload_blob(data, content_settings=settings)
    found = await store.head("clip.mp4", 1000)
    assert found is not None
    info, head = found
    assert (info.size, info.content_md5, info.content_type, head) == (len(data), md5, "video/mp4", data[:1000])
    found = await store.head("clip.mp4", len(data) * 2)  # more than there is: all of it, the same size
    assert found is not None and found[0].size == len(data) and found[1] == data
    assert await store.head("nothing.mp4", 1000) is None
    await store.put("empty.mp4", b"", "video/mp4")  # no byte 0 to range-read: still its properties
    found = await store.head("empty.mp4", 1000)
    assert found is not None and found[0].size == 0 and found[1] == b""
    with pytest.raises(ValueError):
        await store.head("clip.mp4", 0)


async def test_put_info_read_download_delete(store, tmp_path: Path):
    data = bytes(range(256)) * 40
    await store.put("snap/a.jpg", data, "image/jpeg")
    info = await store.info("snap/a.jpg")
    assert info is not None
    assert (info.name, info.size, info.content_type) == ("snap/a.jpg", len(data), "image/jpeg")
    # put() goes through upload_blob, which sets Content-MD5 for a single-shot upload
    assert info.content_md5 in (None, hashlib.md5(data).digest())

    assert await store.read("snap/a.jpg") == data
    assert await store.read("snap/a.jpg", 100, 50) == data[100:150]
    assert await store.read("snap/a.jpg", len(data) - 10) == data[-10:]
    assert await store.read("snap/a.jpg", len(data) + 5, 10) == b""  # past the end reads like EOF
    assert await store.read("snap/a.jpg", 0, 0) == b""

    target = tmp_path / "a.jpg"
    assert await store.download_to("snap/a.jpg", target) == len(data)
    assert target.read_bytes() == data
    assert not (tmp_path / "a.jpg.part").exists()

    await store.put("snap/a.jpg", b"new", "image/jpeg")  # overwrite allowed with our own credential
    assert await store.read("snap/a.jpg") == b"new"

    assert await store.delete("snap/a.jpg") is True
    assert await store.delete("snap/a.jpg") is False
    assert await store.info("snap/a.jpg") is None


async def test_not_found(store, tmp_path: Path):
    assert await store.info("missing.mp4") is None
    with pytest.raises(BlobNotFound):
        await store.read("missing.mp4")
    with pytest.raises(BlobNotFound):
        await store.download_to("missing.mp4", tmp_path / "x")
    assert not (tmp_path / "x").exists() and not (tmp_path / "x.part").exists()


async def test_bad_names_and_expiries_refused(store):
    for bad in ("", "/abs", "dir/", "a/../b"):
        with pytest.raises(ValueError):
            await store.upload_url(bad)
    with pytest.raises(ValueError):
        await store.upload_url("a.mp4", expires_in_s=901)
    with pytest.raises(ValueError):
        await store.upload_url("a.mp4", expires_in_s=0)
    with pytest.raises(ValueError):
        await store.read_url("a.mp4", expires_in_s=3601)


async def test_upload_sas_is_create_write_only_for_one_blob(store):
    before = dt.datetime.now(dt.UTC)
    url = await store.upload_url("ev/1.mp4")
    p = _sas_params(url)
    assert p["sp"] == "cw"  # create + write, no read/delete/list
    assert p["sr"] == "b"  # one blob, not the container
    expiry = dt.datetime.strptime(p["se"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    assert expiry <= before + dt.timedelta(seconds=901)
    assert p["spr"] == "https,http"  # Azurite speaks http; see the https case below

    client = BlobClient.from_blob_url(url, api_version=API_VERSION)
    try:
        await client.upload_blob(b"clip bytes")  # a new blob: allowed
        assert await store.read("ev/1.mp4") == b"clip bytes"
        # The service enforces the missing permissions.
        assert await _status_of(client.download_blob()) == 403
        assert await _status_of(client.get_blob_properties()) == 403
        assert await _status_of(client.get_block_list("uncommitted")) == 403
        assert await _status_of(client.delete_blob()) == 403
    finally:
        await client.close()

    # The SAS is scoped to that one blob: the same signature on a sibling name is refused.
    u = urlsplit(url)
    sibling = f"{u.scheme}://{u.netloc}{u.path.replace('1.mp4', '2.mp4')}?{u.query}"
    other = BlobClient.from_blob_url(sibling, api_version=API_VERSION)
    try:
        assert await _status_of(other.upload_blob(b"x")) == 403
    finally:
        await other.close()
    assert await store.info("ev/2.mp4") is None


async def test_create_only_put_cannot_overwrite(store):
    # What the service enforces for a SAS without 'w': Put Blob may create but never replace a committed blob.
    await store.put("ev/existing.mp4", b"original", "video/mp4")
    sas = generate_blob_sas(
        store.account_name, store.container, "ev/existing.mp4", account_key=store._account_key,
        permission=BlobSasPermissions(create=True), expiry=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5),
        protocol="https,http",
    )
    client = BlobClient.from_blob_url(f"{store._container.get_blob_client('ev/existing.mp4').url}?{sas}",
                                      api_version=API_VERSION)
    try:
        assert await _status_of(client.upload_blob(b"replaced", overwrite=True)) == 403
    finally:
        await client.close()
    assert await store.read("ev/existing.mp4") == b"original"


async def test_upload_sas_for_https_account_is_https_only(azurite):
    # Signing needs no network: an https account URL yields spr=https (production).
    s = AzureBlobStore("https://example.blob.core.windows.net", "clips", azurite.account_key)
    try:
        assert _sas_params(await s.upload_url("x.mp4"))["spr"] == "https"
        assert _sas_params(await s.read_url("x.mp4"))["spr"] == "https"
    finally:
        await s.close()


async def test_read_sas_reads_but_cannot_write(store):
    await store.put("ev/r.mp4", b"playable", "video/mp4")
    url = await store.read_url("ev/r.mp4", expires_in_s=60)
    assert _sas_params(url)["sp"] == "r"
    client = BlobClient.from_blob_url(url, api_version=API_VERSION)
    try:
        assert await (await client.download_blob()).readall() == b"playable"
        assert await _status_of(client.upload_blob(b"evil", overwrite=True)) == 403
        assert await _status_of(client.stage_block("pw-0", b"evil")) == 403
        assert await _status_of(client.delete_blob()) == 403
    finally:
        await client.close()
    assert await store.read("ev/r.mp4") == b"playable"


async def test_expired_sas_is_refused(store):
    await store.put("ev/old.mp4", b"old", "video/mp4")
    sas = generate_blob_sas(
        store.account_name, store.container, "ev/old.mp4", account_key=store._account_key,
        permission=BlobSasPermissions(read=True, create=True, write=True),
        expiry=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1), protocol="https,http",
    )
    client = BlobClient.from_blob_url(f"{store._container.get_blob_client('ev/old.mp4').url}?{sas}",
                                      api_version=API_VERSION)
    try:
        assert await _status_of(client.download_blob()) == 403
        assert await _status_of(client.stage_block("pw-0", b"x")) == 403
    finally:
        await client.close()


class _DelegationStore(AzureBlobStore):
    """The production signing path (user-delegation SAS) without Entra ID.

    Get User Delegation Key needs an OAuth bearer over HTTPS, which the harness's Azurite does not run; this one
    call returns a key shaped like the service's (the HMAC Azurite itself derives). The service-side check of the
    signature is NOT exercised: azure-storage-blob 12.31 signs UDK SAS in the 2026-10-06 format (extra
    delegated-user and request-header/query lines) that Azurite 3.35 does not know, so it would refuse any such
    SAS whoever made it. What is tested: the key is cached and renewed, and the SAS carries the key's fields, one
    blob, and the right permissions.
    """

    fetches = 0

    async def fetch_delegation_key(self, start: dt.datetime, expiry: dt.datetime) -> UserDelegationKey:
        type(self).fetches += 1
        key = UserDelegationKey()
        key.signed_oid = "00000000-0000-0000-0000-0000000000a1"
        key.signed_tid = "00000000-0000-0000-0000-0000000000b2"
        key.signed_start = start.strftime("%Y-%m-%dT%H:%M:%SZ")
        key.signed_expiry = expiry.strftime("%Y-%m-%dT%H:%M:%SZ")
        key.signed_service = "b"
        key.signed_version = API_VERSION
        fields = [key.signed_oid, key.signed_tid, key.signed_start, key.signed_expiry, "b", key.signed_version]
        to_sign = "\n".join(fields)
        key.value = base64.b64encode(
            hmac.new(AZURITE_UDK_BASE.encode(), to_sign.encode(), hashlib.sha256).digest()
        ).decode()
        return key


class _NoToken:
    """An AsyncTokenCredential that is never asked: signing a SAS makes no request."""

    async def get_token(self, *scopes, **kwargs):  # pragma: no cover - must not be reached
        raise AssertionError("no token expected")

    async def close(self) -> None:
        return None


async def test_user_delegation_sas_shape_and_key_cache():
    _DelegationStore.fetches = 0
    udk = _DelegationStore("https://acct.blob.core.windows.net", "clips", _NoToken())  # type: ignore[arg-type]
    try:
        before = dt.datetime.now(dt.UTC)
        up = _sas_params(await udk.upload_url("ev/udk.mp4"))
        assert (up["sp"], up["sr"], up["spr"]) == ("cw", "b", "https")
        assert up["skoid"].endswith("a1") and up["sktid"].endswith("b2") and up["sks"] == "b"
        key_expiry = dt.datetime.strptime(up["ske"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
        sas_expiry = dt.datetime.strptime(up["se"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
        assert sas_expiry <= before + dt.timedelta(seconds=901) < key_expiry  # the SAS never outlives its key
        assert "sig" in up and "AccountKey" not in up

        rd = _sas_params(await udk.read_url("ev/udk.mp4"))
        assert rd["sp"] == "r" and rd["skoid"] == up["skoid"]
        assert _DelegationStore.fetches == 1  # one key serves many SAS

        # A key with less left than the longest SAS lifetime is replaced before signing.
        udk._delegation_key_expiry = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=10)
        await udk.upload_url("ev/udk2.mp4")
        assert _DelegationStore.fetches == 2
    finally:
        await udk.close()


async def test_storage_down_is_unavailable():
    (port,) = free_ports(1)  # nothing listens there
    s = AzureBlobStore(f"http://127.0.0.1:{port}/devstoreaccount1", "c", "a2V5", retry_total=0,
                       connection_timeout_s=2)
    try:
        with pytest.raises(StorageUnavailable):
            await s.info("x")
        with pytest.raises(StorageUnavailable):
            await s.ensure_container()
        with pytest.raises(StorageUnavailable):
            await s.put("x", b"1", "text/plain")
        # Signing needs no service: URLs can still be issued while storage is down.
        assert "sig=" in await s.upload_url("x")
    finally:
        await s.close()
