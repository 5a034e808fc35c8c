"""The job queue behind a small interface: JobQueue Protocol and AzureJobQueue (azure.storage.queue.aio).

Azure Storage Queue semantics, which the worker relies on: at-least-once delivery, a received message is
invisible for ``visibility_timeout_s`` and comes back (with ``dequeue_count`` + 1) unless deleted, and a pop
receipt proves who holds it. Messages that keep failing go to ``<name>-poison`` (the Azure Functions convention)
with the reason, so nothing is silently dropped.

Encoding: bodies are JSON text, sent as-is (no base64 policy). ``json.dumps(ensure_ascii=True)`` yields
printable ASCII only, which is always valid inside the service's XML envelope, so base64 buys nothing here;
plain text keeps the whole 64 KB for the body (base64 would cost a third) and stays readable in Storage
Explorer and the Azurite logs. A message that is not a JSON object (written by something else) is moved to
the poison queue on receipt rather than handed to the worker.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.storage.queue.aio import QueueClient, QueueServiceClient

from .blob import StorageError, account_from_connection_string, error_code, map_error, storage_client_kwargs

log = logging.getLogger(__name__)

# The service's limit for one message (after encoding).
MAX_MESSAGE_BYTES = 64 * 1024
# Azure Functions' convention: after this many deliveries a message is poison. Callers decide; this is the default.
MAX_DEQUEUE_COUNT = 5
# The service's bounds for visibility timeouts (7 days).
_MAX_VISIBILITY_S = 7 * 24 * 3600


class MessageLost(StorageError):
    """The pop receipt no longer holds the message: it was deleted, or became visible and another consumer took
    it. The caller has lost its lease; at-least-once delivery means the other consumer will do the work."""


@dataclass(frozen=True)
class QueueMessage:
    id: str
    pop_receipt: str
    body: dict[str, Any]  # JSON object
    dequeue_count: int


@runtime_checkable
class JobQueue(Protocol):
    name: str

    async def ensure(self) -> None: ...
    async def send(self, body: dict[str, Any]) -> None: ...
    async def receive(self, max_messages: int = 1, visibility_timeout_s: int = 60) -> list[QueueMessage]: ...
    async def extend(self, msg: QueueMessage, visibility_timeout_s: int) -> QueueMessage: ...
    async def release(self, msg: QueueMessage) -> None: ...
    async def delete(self, msg: QueueMessage) -> None: ...
    async def to_poison(self, msg: QueueMessage, reason: str) -> None: ...
    async def close(self) -> None: ...


def encode_body(body: dict[str, Any]) -> str:
    if not isinstance(body, dict):
        raise TypeError(f"queue message body must be a JSON object, got {type(body).__name__}")
    text = json.dumps(body, ensure_ascii=True, separators=(",", ":"), sort_keys=True)
    if len(text) > MAX_MESSAGE_BYTES:
        raise ValueError(f"queue message is {len(text)} bytes; the service's limit is {MAX_MESSAGE_BYTES}")
    return text


def _check_visibility(seconds: int) -> None:
    if not 0 <= seconds <= _MAX_VISIBILITY_S:
        raise ValueError(f"visibility timeout must be 0..{_MAX_VISIBILITY_S} s, got {seconds}")


def _is_lost(e: HttpResponseError) -> bool:
    # 404 MessageNotFound: deleted or the receipt is stale; 400 PopReceiptMismatch on some service versions.
    return isinstance(e, ResourceNotFoundError) or (
        e.status_code == 400 and error_code(e) in {"PopReceiptMismatch", "MessageNotFound"}
    )


class AzureJobQueue:
    """JobQueue on Azure Storage Queue (or Azurite). ``credential``: account key (str) or AsyncTokenCredential."""

    def __init__(
        self,
        account_url: str,
        name: str,
        credential: str | AsyncTokenCredential,
        *,
        retry_total: int = 2,
        connection_timeout_s: float = 5.0,
        read_timeout_s: float = 30.0,
    ) -> None:
        self.name = name
        self.poison_name = f"{name}-poison"
        kwargs = storage_client_kwargs(retry_total, connection_timeout_s, read_timeout_s)
        self._service = QueueServiceClient(account_url.rstrip("/"), credential=credential, **kwargs)
        self._queue: QueueClient = self._service.get_queue_client(name)
        self._poison: QueueClient = self._service.get_queue_client(self.poison_name)

    @classmethod
    def from_connection_string(cls, conn_str: str, name: str, **kwargs: Any) -> AzureJobQueue:
        url, key = account_from_connection_string(conn_str, "queue")
        return cls(url, name, key, **kwargs)

    async def ensure(self) -> None:
        for client in (self._queue, self._poison):
            try:
                await client.create_queue()
            except ResourceExistsError:
                pass
            except Exception as e:
                raise map_error(e, f"create queue {client.queue_name}") from e

    async def send(self, body: dict[str, Any]) -> None:
        text = encode_body(body)
        try:
            await self._queue.send_message(text)
        except Exception as e:
            raise map_error(e, f"send to {self.name}") from e

    async def receive(self, max_messages: int = 1, visibility_timeout_s: int = 60) -> list[QueueMessage]:
        if not 1 <= max_messages <= 32:  # the service hands out at most 32 per call
            raise ValueError(f"max_messages must be 1..32, got {max_messages}")
        if visibility_timeout_s < 1:
            raise ValueError("a received message needs a visibility timeout of at least 1 s")
        _check_visibility(visibility_timeout_s)
        out: list[QueueMessage] = []
        try:
            # max_messages bounds the pager: it stops after that many instead of polling page after page.
            pager = self._queue.receive_messages(
                messages_per_page=max_messages, max_messages=max_messages, visibility_timeout=visibility_timeout_s
            )
            raw = [m async for m in pager]
        except Exception as e:
            raise map_error(e, f"receive from {self.name}") from e
        for m in raw:
            msg_id, receipt, count = str(m.id), str(m.pop_receipt or ""), int(m.dequeue_count or 0)
            try:
                body = json.loads(m.content) if isinstance(m.content, str) else None
            except ValueError:
                body = None
            if not isinstance(body, dict):
                # Not ours (or damaged): no worker can handle it, so park it with the reason instead of looping.
                bad = QueueMessage(msg_id, receipt, {"raw": str(m.content)[: MAX_MESSAGE_BYTES // 2]}, count)
                log.warning("queue %s: message %s is not a JSON object; moved to %s", self.name, msg_id,
                            self.poison_name)
                await self.to_poison(bad, "body is not a JSON object")
                continue
            out.append(QueueMessage(msg_id, receipt, body, count))
        return out

    async def extend(self, msg: QueueMessage, visibility_timeout_s: int) -> QueueMessage:
        """Keep holding ``msg`` for another ``visibility_timeout_s``; the returned message has the new receipt."""
        _check_visibility(visibility_timeout_s)
        receipt = await self._update(msg, visibility_timeout_s, "extend")
        return QueueMessage(msg.id, receipt, msg.body, msg.dequeue_count)

    async def release(self, msg: QueueMessage) -> None:
        """Make ``msg`` visible again at once (graceful shutdown): the next receive gets it."""
        await self._update(msg, 0, "release")

    async def _update(self, msg: QueueMessage, visibility_timeout_s: int, what: str) -> str:
        try:
            updated = await self._queue.update_message(
                msg.id, pop_receipt=msg.pop_receipt, visibility_timeout=visibility_timeout_s
            )
        except HttpResponseError as e:
            if _is_lost(e):
                raise MessageLost(f"{what} {msg.id} on {self.name}: the message is no longer held") from e
            raise map_error(e, f"{what} {msg.id} on {self.name}") from e
        except Exception as e:
            raise map_error(e, f"{what} {msg.id} on {self.name}") from e
        return str(updated.pop_receipt)

    async def delete(self, msg: QueueMessage) -> None:
        try:
            await self._queue.delete_message(msg.id, pop_receipt=msg.pop_receipt)
        except HttpResponseError as e:
            if _is_lost(e):
                raise MessageLost(f"delete {msg.id} on {self.name}: the message is no longer held") from e
            raise map_error(e, f"delete {msg.id} on {self.name}") from e
        except Exception as e:
            raise map_error(e, f"delete {msg.id} on {self.name}") from e

    async def to_poison(self, msg: QueueMessage, reason: str) -> None:
        """Copy the body, the reason and the dequeue count to ``<name>-poison``, then delete it here.

        Send first, delete second: a crash in between leaves a duplicate in the poison queue, never a loss.
        """
        record = {
            "body": msg.body,
            "reason": reason[:2000],
            "dequeue_count": msg.dequeue_count,
            "message_id": msg.id,
            "queue": self.name,
            "poisoned_at": dt.datetime.now(dt.UTC).isoformat(),
        }
        try:
            await self._poison.send_message(encode_body(record))
        except Exception as e:
            raise map_error(e, f"send to {self.poison_name}") from e
        await self.delete(msg)

    async def close(self) -> None:
        await self._queue.close()
        await self._poison.close()
        await self._service.close()
