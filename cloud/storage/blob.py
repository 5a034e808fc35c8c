"""Blob storage behind a small interface: the BlobStore Protocol and AzureBlobStore (azure.storage.blob.aio).

The API hands the hub a SAS for exactly one blob and never proxies clip bytes, so this module's main jobs are
signing those URLs and reading back what the hub committed. Two signing modes:

- account key (Azurite / dev): ``generate_blob_sas`` signs with the key;
- a TokenCredential (production, azure-identity): a user-delegation key from ``get_user_delegation_key``
  signs the SAS, so no account key ever lives on an API host. The key is cached until near its expiry.

Every SDK exception is mapped to BlobNotFound / StorageUnavailable / StorageError here, so callers never catch
azure-core types.

Ranged reads (``head``, ``read``: what finalize does on the hub's request path) are plain GETs of a read SAS that
the SDK signed, on one shared aiohttp session, as a browser plays a clip: the SDK's download pipeline costs about
4 ms of Python per call (3.5 ms for the GET against 7.9 ms through ``download_blob`` on Azurite here), a tenth of
an upload's whole API time. Everything else (writes, deletes, whole downloads, container and key calls) stays
on the SDK.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from urllib.parse import quote, urlsplit

import aiohttp
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.blob import BlobSasPermissions, ContentSettings, UserDelegationKey, generate_blob_sas
from azure.storage.blob.aio import BlobServiceClient, ContainerClient

# Azurite 3.35 (what `npm install azurite` gives on Node 20) knows service versions up to 2025-11-05, while
# azure-storage-blob 12.31 defaults to 2026-10-06. Pinning a version both accept keeps dev and production on the
# same wire protocol without relying on Azurite's --skipApiVersionCheck. The queue module pins the same one.
API_VERSION = "2025-11-05"

# The protocol's upper bound for upload URLs (brief: "expiring within 15 minutes").
MAX_UPLOAD_SAS_S = 15 * 60
# Read URLs are for playback/snapshots in a browser: short, but long enough to start a 20 s clip.
MAX_READ_SAS_S = 60 * 60

# A user-delegation key is fetched for this long and replaced once less than MAX_READ_SAS_S is left, so every
# SAS signed with it expires before the key does (a SAS outliving its key is refused by the service).
_DELEGATION_KEY_LIFETIME = dt.timedelta(hours=6)
# The service refuses a key whose start is in its future; start a little in the past to absorb clock skew.
_CLOCK_SKEW = dt.timedelta(minutes=5)


class StorageError(Exception):
    """Any storage failure that is neither 'not found' nor 'unavailable' (bad request, permission, ...)."""


class BlobNotFound(StorageError):
    """The blob (or its container) does not exist."""


class StorageUnavailable(StorageError):
    """The storage service could not be reached or answered 5xx / timed out: retry later."""


@dataclass(frozen=True)
class BlobInfo:
    name: str
    size: int
    content_md5: bytes | None  # the blob's Content-MD5 property (16 raw bytes) or None
    content_type: str | None


@runtime_checkable
class BlobStore(Protocol):
    container: str

    async def ensure_container(self) -> None: ...
    async def upload_url(self, name: str, expires_in_s: int = 900) -> str: ...
    async def read_url(self, name: str, expires_in_s: int = 300) -> str: ...
    async def info(self, name: str) -> BlobInfo | None: ...
    async def head(self, name: str, length: int) -> tuple[BlobInfo, bytes] | None: ...
    async def read(self, name: str, offset: int = 0, length: int | None = None) -> bytes: ...
    async def download_to(self, name: str, path: Path) -> int: ...
    async def put(self, name: str, data: bytes, content_type: str) -> None: ...
    async def delete(self, name: str) -> bool: ...
    async def close(self) -> None: ...


def map_error(e: BaseException, what: str) -> StorageError:
    """Translate an SDK / network exception into this module's errors (shared with the queue module)."""
    if isinstance(e, StorageError):
        return e
    if isinstance(e, ResourceNotFoundError):
        return BlobNotFound(f"{what}: not found ({error_code(e) or e.reason})")
    if isinstance(e, (ServiceRequestError, ServiceResponseError, asyncio.TimeoutError, OSError)):
        # Connection refused, DNS, TLS, read timeouts: the service is down or unreachable.
        return StorageUnavailable(f"{what}: storage unreachable: {_short(e)}")
    if isinstance(e, HttpResponseError):
        status = e.status_code or 0
        if status >= 500 or status == 408:
            return StorageUnavailable(f"{what}: storage answered {status} ({error_code(e) or e.reason})")
        return StorageError(f"{what}: storage answered {status} ({error_code(e) or e.reason})")
    if isinstance(e, AzureError):
        return StorageError(f"{what}: {_short(e)}")
    return StorageError(f"{what}: {type(e).__name__}: {e}")


def error_code(e: HttpResponseError) -> str:
    # The storage SDK sets error_code (x-ms-error-code) on its HttpResponseErrors; azure-core does not declare it.
    code = getattr(e, "error_code", None) or ""
    return str(getattr(code, "value", code))  # a StorageErrorCode enum or a plain string


def _short(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"[:300]


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _check_name(name: str) -> None:
    # Blob names become URL paths and SAS scopes; refuse the shapes that would widen or confuse the scope.
    if not name or len(name) > 1024 or name.startswith("/") or name.endswith("/") or ".." in name.split("/"):
        raise ValueError(f"invalid blob name {name!r}")


def parse_connection_string(conn_str: str) -> dict[str, str]:
    """`Key=Value;...` → dict (the Azure connection-string format; values may contain '=')."""
    parts: dict[str, str] = {}
    for item in conn_str.split(";"):
        if "=" in item:
            k, v = item.split("=", 1)
            parts[k.strip()] = v.strip()
    return parts


def account_from_connection_string(conn_str: str, service: str) -> tuple[str, str]:
    """(endpoint URL of ``service`` ("blob" or "queue"), account key) from an Azure Storage connection string."""
    parts = parse_connection_string(conn_str)
    try:
        key = parts["AccountKey"]
        name = parts["AccountName"]
    except KeyError as e:
        raise ValueError(f"connection string lacks {e.args[0]}") from None
    url = parts.get(f"{service.capitalize()}Endpoint") or (
        f"{parts.get('DefaultEndpointsProtocol', 'https')}://{name}.{service}."
        f"{parts.get('EndpointSuffix', 'core.windows.net')}"
    )
    return url, key


def storage_client_kwargs(retry_total: int, connection_timeout_s: float, read_timeout_s: float) -> dict[str, Any]:
    """Client options shared by blob and queue: pinned API version, bounded retries and timeouts.

    The SDK's default ExponentialRetry waits 15 s, 18 s, 24 s: an API request would hang for a minute when
    storage is down. Callers (the API, the worker) have their own retry story, so retries here stay short.
    """
    return {
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


class AzureBlobStore:
    """BlobStore on Azure Blob Storage (or Azurite) with the async SDK.

    ``credential`` is the account key (str) for dev/Azurite, or an AsyncTokenCredential (azure-identity's
    DefaultAzureCredential, a managed identity) for production, in which case SAS URLs are user-delegation SAS.
    """

    def __init__(
        self,
        account_url: str,
        container: str,
        credential: str | AsyncTokenCredential,
        *,
        retry_total: int = 2,
        connection_timeout_s: float = 5.0,
        read_timeout_s: float = 30.0,
    ) -> None:
        self.container = container
        self._account_url = account_url.rstrip("/")
        self._https = urlsplit(self._account_url).scheme == "https"
        kwargs = storage_client_kwargs(retry_total, connection_timeout_s, read_timeout_s)
        self._account_key: str | None = credential if isinstance(credential, str) else None
        # With a str key the SDK takes the account name from the URL (the host's first label on Azure, the first
        # path segment for Azurite's http://127.0.0.1:port/devstoreaccount1 style).
        self._service = BlobServiceClient(self._account_url, credential=credential, **kwargs)
        self._container: ContainerClient = self._service.get_container_client(container)
        self._delegation_key: UserDelegationKey | None = None
        self._delegation_key_expiry: dt.datetime | None = None
        self._delegation_lock = asyncio.Lock()
        self._timeout = aiohttp.ClientTimeout(sock_connect=connection_timeout_s, sock_read=read_timeout_s)
        self._http: aiohttp.ClientSession | None = None  # for ranged reads; made on first use (needs a loop)

    @classmethod
    def from_connection_string(cls, conn_str: str, container: str, **kwargs: Any) -> AzureBlobStore:
        url, key = account_from_connection_string(conn_str, "blob")
        return cls(url, container, key, **kwargs)

    @property
    def account_name(self) -> str:
        return self._service.account_name or ""

    # ---- SAS -----------------------------------------------------------------------------------------------

    async def upload_url(self, name: str, expires_in_s: int = 900) -> str:
        """A SAS URL for this one blob with create+write only (no read, no delete), expiring within 15 min.

        Note: 'w' is what Put Block / Put Block List need, and it also lets the holder overwrite the blob until
        the SAS expires (Azure and Azurite alike); the hub's uploader commits with If-None-Match: * so an honest
        retry never overwrites, and finalize must treat the blob as the hub's word: read the bytes it checks
        (size, MD5, duration) itself, and expect them to be replaceable until the SAS expires.
        """
        if not 0 < expires_in_s <= MAX_UPLOAD_SAS_S:
            raise ValueError(f"upload SAS expiry must be 1..{MAX_UPLOAD_SAS_S} s, got {expires_in_s}")
        return await self._sas_url(name, BlobSasPermissions(create=True, write=True), expires_in_s)

    async def read_url(self, name: str, expires_in_s: int = 300) -> str:
        """A SAS URL for reading this one blob (playback, snapshots), read permission only."""
        if not 0 < expires_in_s <= MAX_READ_SAS_S:
            raise ValueError(f"read SAS expiry must be 1..{MAX_READ_SAS_S} s, got {expires_in_s}")
        return await self._sas_url(name, BlobSasPermissions(read=True), expires_in_s)

    async def _sas_url(self, name: str, permission: BlobSasPermissions, expires_in_s: int) -> str:
        _check_name(name)
        expiry = _utcnow() + dt.timedelta(seconds=expires_in_s)
        # spr=https in production; Azurite here speaks plain http, so a http account URL allows both.
        protocol = "https" if self._https else "https,http"
        common: dict[str, Any] = {
            "account_name": self.account_name,
            "container_name": self.container,
            "blob_name": name,
            "permission": permission,
            "expiry": expiry,
            "protocol": protocol,
        }
        if self._account_key is not None:
            sas = generate_blob_sas(account_key=self._account_key, **common)
        else:
            key = await self.delegation_key()
            sas = generate_blob_sas(user_delegation_key=key, **common)
        # The SDK's own encoding of a blob URL (container URL + the name quoted with '~/' kept), built here
        # rather than by a BlobClient: constructing one per SAS was ~0.3 ms of each upload's initiate and finalize.
        return f"{self._container.url}/{quote(name, safe='~/')}?{sas}"

    async def delegation_key(self) -> UserDelegationKey:
        """The cached user-delegation key, fetched again when less than the longest SAS lifetime is left."""
        async with self._delegation_lock:
            now = _utcnow()
            margin = dt.timedelta(seconds=max(MAX_UPLOAD_SAS_S, MAX_READ_SAS_S))
            if self._delegation_key is None or self._delegation_key_expiry is None or (
                self._delegation_key_expiry - now < margin
            ):
                start = now - _CLOCK_SKEW
                expiry = now + _DELEGATION_KEY_LIFETIME
                self._delegation_key = await self.fetch_delegation_key(start, expiry)
                self._delegation_key_expiry = expiry
            return self._delegation_key

    async def fetch_delegation_key(self, start: dt.datetime, expiry: dt.datetime) -> UserDelegationKey:
        """One Get User Delegation Key call (needs an OAuth credential and the RBAC right to delegate)."""
        try:
            return await self._service.get_user_delegation_key(start, expiry)
        except Exception as e:
            raise map_error(e, "get user delegation key") from e

    # ---- data ----------------------------------------------------------------------------------------------

    async def ensure_container(self) -> None:
        try:
            await self._container.create_container()
        except ResourceExistsError:
            pass
        except Exception as e:
            raise map_error(e, f"create container {self.container}") from e

    async def info(self, name: str) -> BlobInfo | None:
        _check_name(name)
        try:
            props = await self._container.get_blob_client(name).get_blob_properties()
        except ResourceNotFoundError:
            return None
        except Exception as e:
            raise map_error(e, f"info {name}") from e
        settings = props.content_settings
        md5 = settings.content_md5 if settings is not None else None
        return BlobInfo(
            name=name,
            size=int(props.size),
            content_md5=bytes(md5) if md5 else None,
            content_type=settings.content_type if settings is not None else None,
        )

    async def head(self, name: str, length: int) -> tuple[BlobInfo, bytes] | None:
        """The blob's properties and its first ``length`` bytes in one request (None: no such blob).

        A ranged Get Blob answers with the whole blob's size (Content-Range ``bytes 0-N/<size>``) and its stored
        MD5 (``x-ms-blob-content-md5``): finalize needs both and the clip's head, and one request costs the API
        and the storage service half of two."""
        _check_name(name)
        if length <= 0:
            raise ValueError("length must be > 0")
        got = await self._get_range(name, 0, length, f"head {name}")
        if got is None:
            return None
        status, headers, data = got
        if status == 416:  # an empty blob has no byte 0: its properties alone tell the story
            info = await self.info(name)
            return None if info is None else (info, b"")
        total = headers.get("Content-Range", "").rpartition("/")[2]
        # A ranged read carries the blob's stored MD5 in x-ms-blob-content-md5; a whole-blob answer (200) in
        # Content-MD5.
        md5 = headers.get("x-ms-blob-content-md5") or (headers.get("Content-MD5") if status == 200 else None)
        try:
            md5_raw = base64.b64decode(md5, validate=True) if md5 else None
        except ValueError:
            md5_raw = None  # not base64: no usable MD5, which finalize refuses like a missing one
        info = BlobInfo(
            name=name,
            size=int(total) if total.isdigit() else len(data),
            content_md5=md5_raw,
            content_type=headers.get("Content-Type"),
        )
        return info, data

    async def read(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        """Bytes [offset, offset+length) (to the end when length is None); b"" at or past the end."""
        _check_name(name)
        if offset < 0 or (length is not None and length < 0):
            raise ValueError("offset and length must be >= 0")
        if length == 0:
            return b""
        got = await self._get_range(name, offset, length, f"read {name}")
        if got is None:
            raise BlobNotFound(f"read {name}: not found")
        status, _, data = got
        return b"" if status == 416 else data  # 416: the range starts past the end, like a file read at EOF

    async def _get_range(self, name: str, offset: int, length: int | None,
                         what: str) -> tuple[int, Any, bytes] | None:
        """One GET of a read SAS with a Range header: (status 200/206/416, headers, body); None on 404."""
        url = await self.read_url(name, 60)
        end = "" if length is None else str(offset + length - 1)
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=self._timeout)
        try:
            async with self._http.get(url, headers={"Range": f"bytes={offset}-{end}",
                                                    "x-ms-version": API_VERSION}) as resp:
                body = await resp.read()
                status, headers, reason = resp.status, resp.headers, resp.reason
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            raise StorageUnavailable(f"{what}: storage unreachable: {_short(e)}") from e
        if status in (200, 206, 416):
            return status, headers, body
        if status == 404:
            return None
        code = headers.get("x-ms-error-code") or reason or ""
        if status >= 500 or status == 408:
            raise StorageUnavailable(f"{what}: storage answered {status} ({code})")
        raise StorageError(f"{what}: storage answered {status} ({code})")

    async def download_to(self, name: str, path: Path) -> int:
        """Stream the blob into ``path`` (written to a temp name, renamed when complete); returns its size."""
        _check_name(name)
        tmp = path.with_name(path.name + ".part")
        try:
            downloader = await self._container.get_blob_client(name).download_blob(max_concurrency=1)
            with open(tmp, "wb") as f:  # noqa: ASYNC230 - the SDK writes into a sync file; worker-only path
                size = await downloader.readinto(f)
            tmp.replace(path)
            return int(size)
        except Exception as e:
            tmp.unlink(missing_ok=True)
            raise map_error(e, f"download {name}") from e

    async def put(self, name: str, data: bytes, content_type: str) -> None:
        """Write a whole blob with our own credential (worker snapshots); overwrites."""
        _check_name(name)
        try:
            await self._container.get_blob_client(name).upload_blob(
                data, overwrite=True, content_settings=ContentSettings(content_type=content_type)
            )
        except Exception as e:
            raise map_error(e, f"put {name}") from e

    async def delete(self, name: str) -> bool:
        _check_name(name)
        try:
            await self._container.get_blob_client(name).delete_blob(delete_snapshots="include")
            return True
        except ResourceNotFoundError:
            return False
        except Exception as e:
            raise map_error(e, f"delete {name}") from e

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
        await self._container.close()
        await self._service.close()
