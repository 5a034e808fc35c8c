"""Connection limits in front of aiohttp: slowloris and connection floods end at the socket.

aiohttp bounds idle keep-alive connections but not the time a client may take to send its first request's
headers, nor how many connections one address holds; with the TLS handshake left to asyncio's 60 s default, nine
connections trickling headers (or sending nothing) stayed open for minutes. Each accepted connection is wrapped
in a ``GuardedProtocol`` that:

- closes it when the request headers (up to the blank line) have not all arrived ``header_timeout_s`` after
  the connection was made (the TLS handshake has its own ``ssl_handshake_timeout``, set on the server);
- refuses a connection from an address that already holds ``max_per_client`` connections.

After the first request's headers the connection belongs to aiohttp (its keep-alive timeout closes it when idle;
a WebSocket stays as long as it is used). Only HTTP(S) connections pass through here: the cameras' media arrives
over WebRTC's UDP sockets and never meets this code.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import Counter
from dataclasses import dataclass
from typing import Any, cast

from aiohttp import web

log = logging.getLogger(__name__)

_END_OF_HEADERS = b"\r\n\r\n"


@dataclass(frozen=True)
class ConnectionLimits:
    header_timeout_s: float = 10.0
    tls_handshake_timeout_s: float = 10.0
    max_per_client: int = 32


class ConnectionRegistry:
    """Open connections per client address, shared by all sites of one hub."""

    def __init__(self) -> None:
        self.open: Counter[str] = Counter()
        self.refused = 0
        self.timed_out = 0


class GuardedProtocol(asyncio.Protocol):
    def __init__(self, inner: Any, limits: ConnectionLimits, registry: ConnectionRegistry) -> None:
        self._inner = inner  # aiohttp's RequestHandler
        self._limits = limits
        self._registry = registry
        self._peer: str | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._tail = b""  # the last bytes seen, so a blank line split across reads is still found
        self._passed = False  # the first request's headers are complete: aiohttp's own timeouts from here
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        stream = cast(asyncio.Transport, transport)  # a TCP server's protocol is handed a stream transport
        peername = transport.get_extra_info("peername")
        peer = str(peername[0]) if isinstance(peername, tuple) and peername else "?"
        if self._registry.open[peer] >= self._limits.max_per_client:
            self._registry.refused += 1
            log.warning("connection refused: too many from one address",
                        extra={"client": peer, "limit": self._limits.max_per_client})
            stream.abort()
            return
        self._peer = peer
        self._registry.open[peer] += 1
        self._transport = stream
        self._timer = asyncio.get_running_loop().call_later(self._limits.header_timeout_s, self._too_slow)
        self._inner.connection_made(transport)

    def _too_slow(self) -> None:
        self._timer = None
        if not self._passed and self._transport is not None:
            self._registry.timed_out += 1
            log.info("connection closed: request headers too slow",
                     extra={"client": self._peer, "timeout_s": self._limits.header_timeout_s})
            self._transport.abort()  # connection_lost follows, and tells aiohttp

    def data_received(self, data: bytes) -> None:
        if not self._passed:
            seen = self._tail + data
            if _END_OF_HEADERS in seen:
                self._passed = True
                if self._timer is not None:
                    self._timer.cancel()
                    self._timer = None
            else:
                self._tail = seen[-3:]
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        if self._peer is None:
            return None
        result: bool | None = self._inner.eof_received()
        return result

    def connection_lost(self, exc: Exception | None) -> None:
        if self._peer is None:  # refused at connection_made: aiohttp never saw it
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._registry.open[self._peer] -= 1
        if self._registry.open[self._peer] <= 0:
            del self._registry.open[self._peer]
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._peer is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._peer is not None:
            self._inner.resume_writing()


class GuardedSite(web.TCPSite):
    """A TCPSite whose connections pass through ``GuardedProtocol``."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, *, limits: ConnectionLimits,
                 registry: ConnectionRegistry, ssl_context: ssl.SSLContext | None = None) -> None:
        super().__init__(runner, host, port, ssl_context=ssl_context)
        self._limits = limits
        self._registry = registry

    async def start(self) -> None:
        # BaseSite.start registers the site with the runner; TCPSite.start would create its own server.
        await web.BaseSite.start(self)
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: GuardedProtocol(server(), self._limits, self._registry),
            self._host, self._port, ssl=self._ssl_context,
            ssl_handshake_timeout=self._limits.tls_handshake_timeout_s if self._ssl_context else None,
            backlog=self._backlog, reuse_address=self._reuse_address, reuse_port=self._reuse_port,
        )
        sockets = self._server.sockets
        self._bound_port = sockets[0].getsockname()[1] if sockets else self._port
