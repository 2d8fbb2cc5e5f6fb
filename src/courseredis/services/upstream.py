"""The gateway's client of the upstream services: HTTP/1.1 over pooled keep-alive
connections, bodies passed through as the bytes the upstream sent.

The gateway is CPU-bound, and a general-purpose client spends most of its time on what a
proxy to known internal services never needs (redirects, cookies, decoding, URL objects).
Measured per request on a cached course read: httpx cost the gateway about 1.5 ms of CPU,
more than all its other work together; aiohttp about 0.1 ms. `UpstreamPool` writes the
request in one piece and parses the answer with httptools, uvicorn's own compiled parser:
about 0.025 ms.

The in-process test platform reaches the upstreams' ASGI apps through an httpx transport
instead (`HttpxUpstream`); both answer alike, failures included.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from typing import Protocol, cast
from urllib.parse import urlsplit

import httptools
import httpx

# Header lists as ASGI carries them: in order, names as sent, duplicates (Set-Cookie) kept.
RawHeaders = list[tuple[bytes, bytes]]

# Sent again on a fresh connection when a kept-alive one turns out closed: the upstream
# cannot have acted on a request twice where that matters (RFC 9110 9.2.2).
_IDEMPOTENT = frozenset({"GET", "PUT", "DELETE", "OPTIONS"})
_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})


@dataclass(frozen=True)
class Origin:
    """Where an upstream is: its scheme, host and port, and a path prefix if any."""

    scheme: str
    host: str
    port: int
    prefix: str  # without a trailing slash

    @classmethod
    def parse(cls, url: str) -> Origin:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"an upstream is an http(s) URL with a host, not {url!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return cls(parts.scheme, parts.hostname, port, parts.path.rstrip("/"))

    @property
    def netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.netloc}{self.prefix}"


@dataclass(frozen=True)
class UpstreamReply:
    status: int
    headers: RawHeaders
    body: bytes  # as sent: never decoded, so its Content-Encoding still applies


class UpstreamTimeout(Exception):
    """The upstream did not answer in time: 504."""


class UpstreamUnreachable(Exception):
    """No answer from the upstream (refused, reset, malformed): 502."""


class Upstream(Protocol):
    async def send(
        self, method: str, origin: Origin, target: str, headers: RawHeaders, body: bytes
    ) -> UpstreamReply:
        """`target`: the percent-encoded path (after the origin's prefix) and query.
        `headers`: end-to-end ones only; the client sets Host and Content-Length."""
        ...

    async def aclose(self) -> None: ...


class _Connection(asyncio.Protocol):
    """One keep-alive connection: one request at a time, its answer parsed as it comes."""

    def __init__(self) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self._reply: asyncio.Future[UpstreamReply] | None = None
        self._headers: RawHeaders = []
        self._body: list[bytes] = []
        self.reusable = True
        self.idle_since = 0.0

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not subclasses of asyncio's, only alike.
        self._transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        # uvicorn frames every answer (Content-Length or chunked): one the close cut short
        # is a failure, never a body that ends there.
        self._fail("upstream closed the connection")

    def data_received(self, data: bytes) -> None:
        if self._reply is None or self._reply.done():
            self._fail("upstream sent bytes nobody asked for")
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as error:
            self._fail(f"malformed answer: {error}")

    # httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        status = self._parser.get_status_code()
        if status < 200:  # an interim answer (100 Continue): the final one follows
            self._headers, self._body = [], []
            return
        self.reusable = self.reusable and self._parser.should_keep_alive()
        if self._reply is not None and not self._reply.done():
            self._reply.set_result(UpstreamReply(status, self._headers, b"".join(self._body)))

    # the pool's side

    async def exchange(self, request: bytes) -> UpstreamReply:
        assert self._transport is not None and self.reusable
        self._headers, self._body = [], []
        self._reply = asyncio.get_running_loop().create_future()
        self._transport.write(request)
        return await self._reply

    def close(self) -> None:
        self.reusable = False
        if self._transport is not None:
            self._transport.close()

    def _fail(self, why: str) -> None:
        self.close()
        if self._reply is not None and not self._reply.done():
            self._reply.set_exception(UpstreamUnreachable(why))


class UpstreamPool:
    """Keep-alive connections per origin, reused newest first; at most `max_connections`
    requests in flight, the rest wait their turn.

    No HEAD: its answer declares a body it does not carry, which the parser cannot tell
    (the gateway routes none)."""

    def __init__(self, *, timeout_s: float, max_connections: int, keepalive_s: float) -> None:
        self._timeout_s = timeout_s
        self._keepalive_s = keepalive_s
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: dict[Origin, list[_Connection]] = {}
        self._tls: ssl.SSLContext | None = None

    async def send(
        self, method: str, origin: Origin, target: str, headers: RawHeaders, body: bytes
    ) -> UpstreamReply:
        if method == "HEAD":
            raise ValueError("UpstreamPool sends no HEAD requests")
        request = _encode(method, origin, target, headers, body)
        async with self._slots:
            connection = self._reuse(origin)
            try:
                async with asyncio.timeout(self._timeout_s):
                    if connection is None:
                        connection = await self._connect(origin)
                        reply = await connection.exchange(request)
                    else:
                        try:
                            reply = await connection.exchange(request)
                        except UpstreamUnreachable:
                            if method not in _IDEMPOTENT:
                                raise
                            connection = await self._connect(origin)
                            reply = await connection.exchange(request)
            except BaseException as error:
                if connection is not None:
                    connection.close()  # its state is unknown: never reused
                if isinstance(error, TimeoutError):
                    raise UpstreamTimeout from None
                if isinstance(error, OSError):  # refused, reset, no route, bad name
                    raise UpstreamUnreachable(str(error) or type(error).__name__) from None
                raise
            if connection.reusable:
                connection.idle_since = asyncio.get_running_loop().time()
                self._idle.setdefault(origin, []).append(connection)
            else:
                connection.close()
            return reply

    async def aclose(self) -> None:
        for connections in self._idle.values():
            for connection in connections:
                connection.close()
        self._idle.clear()

    def _reuse(self, origin: Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        now = asyncio.get_running_loop().time()
        while idle:
            connection = idle.pop()
            if connection.reusable and now - connection.idle_since < self._keepalive_s:
                return connection
            connection.close()
        return None

    async def _connect(self, origin: Origin) -> _Connection:
        tls: ssl.SSLContext | None = None
        if origin.scheme == "https":
            tls = self._tls = self._tls or ssl.create_default_context()
        _, connection = await asyncio.get_running_loop().create_connection(
            _Connection, origin.host, origin.port, ssl=tls
        )
        return connection


def _encode(method: str, origin: Origin, target: str, headers: RawHeaders, body: bytes) -> bytes:
    parts = [f"{method} {origin.prefix}{target} HTTP/1.1\r\nhost: {origin.netloc}\r\n".encode()]
    for name, value in headers:
        parts += (name, b": ", value, b"\r\n")
    if body or method in _WITH_BODY:
        parts.append(b"content-length: %d\r\n" % len(body))
    parts += (b"\r\n", body)
    return b"".join(parts)


class HttpxUpstream:
    """Over an httpx transport: the test platform's in-process ASGI apps."""

    def __init__(self, transport: httpx.AsyncBaseTransport, *, timeout_s: float) -> None:
        self._client = httpx.AsyncClient(transport=transport, timeout=timeout_s)

    async def send(
        self, method: str, origin: Origin, target: str, headers: RawHeaders, body: bytes
    ) -> UpstreamReply:
        try:
            request = self._client.build_request(
                method, origin.url + target, headers=headers, content=body
            )
            response = await self._client.send(request, stream=True)
            try:
                content = b"".join([chunk async for chunk in response.aiter_raw()])
            finally:
                await response.aclose()
        except httpx.TimeoutException:
            raise UpstreamTimeout from None
        except httpx.HTTPError as error:
            raise UpstreamUnreachable(str(error) or type(error).__name__) from None
        return UpstreamReply(response.status_code, list(response.headers.raw), content)

    async def aclose(self) -> None:
        await self._client.aclose()
