"""The gateway's upstream client over real TCP: keep-alive, answers passed through as sent,
and each way an upstream can fail mapped to unreachable (502) or timed out (504)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import uvicorn
from starlette.types import Receive, Scope, Send

from courseredis.local.ports import free_ports
from courseredis.services.upstream import (
    Origin,
    UpstreamPool,
    UpstreamTimeout,
    UpstreamUnreachable,
)


def pool(timeout_s: float = 5.0) -> UpstreamPool:
    return UpstreamPool(timeout_s=timeout_s, max_connections=8, keepalive_s=2.0)


async def echo(scope: Scope, receive: Receive, send: Send) -> None:
    """Answers with what it received, in two body chunks (so chunked), and two cookies."""
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    seen = {
        "method": scope["method"],
        "path": scope["raw_path"].decode(),
        "query": scope["query_string"].decode(),
        "body": body.decode(),
        "headers": [[k.decode(), v.decode()] for k, v in scope["headers"]],
        "peer": scope["client"][1],
    }
    headers = [(b"set-cookie", b"a=1"), (b"set-cookie", b"b=2")]
    await send({"type": "http.response.start", "status": 201, "headers": headers})
    encoded = json.dumps(seen).encode()
    await send({"type": "http.response.body", "body": encoded[:10], "more_body": True})
    await send({"type": "http.response.body", "body": encoded[10:]})


@contextlib.asynccontextmanager
async def uvicorn_upstream() -> AsyncIterator[Origin]:
    # Listening before uvicorn starts: connections wait in the backlog until it accepts.
    listening = socket.create_server(("127.0.0.1", 0))
    port = listening.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(echo, log_level="warning"))
    task = asyncio.create_task(server.serve(sockets=[listening]))
    try:
        yield Origin.parse(f"http://127.0.0.1:{port}/")
    finally:
        server.should_exit = True
        await task


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def raw_upstream(handler: Handler) -> AsyncIterator[Origin]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield Origin.parse(f"http://127.0.0.1:{port}")
    finally:
        server.close()


async def read_request(reader: asyncio.StreamReader) -> bytes:
    return await reader.readuntil(b"\r\n\r\n")


OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"


async def test_requests_go_as_sent_and_answers_come_back_as_sent_over_one_connection():
    client = pool()
    async with uvicorn_upstream() as origin:
        replies = [
            await client.send(
                "POST", origin, "/auth/login?next=%2Fx", [(b"x-test", b"1")], b'{"a": 1}'
            ),
            await client.send("GET", origin, "/courses/%31", [], b""),
        ]
        await client.aclose()
    assert [reply.status for reply in replies] == [201, 201]
    posted, got = (json.loads(reply.body) for reply in replies)
    assert posted["method"] == "POST" and posted["body"] == '{"a": 1}'
    assert posted["path"] == "/auth/login" and posted["query"] == "next=%2Fx"
    assert ["x-test", "1"] in posted["headers"] and ["content-length", "8"] in posted["headers"]
    assert ["host", origin.netloc] in posted["headers"]
    assert got["path"] == "/courses/%31"  # the client's escapes reach the upstream as they came
    assert got["peer"] == posted["peer"]  # kept alive: one connection for both
    cookies = [v for k, v in replies[0].headers if k.lower() == b"set-cookie"]
    assert cookies == [b"a=1", b"b=2"]


async def test_an_upstream_nobody_listens_on_is_unreachable():
    (port,) = free_ports(1, "127.0.0.1")
    with pytest.raises(UpstreamUnreachable):
        await pool().send("GET", Origin.parse(f"http://127.0.0.1:{port}"), "/", [], b"")


async def test_an_upstream_that_does_not_answer_in_time_is_a_timeout():
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await reader.read()  # until the client gives up and closes

    async with raw_upstream(silent) as origin:
        with pytest.raises(UpstreamTimeout):
            await pool(timeout_s=0.2).send("GET", origin, "/", [], b"")


async def test_a_malformed_answer_is_unreachable():
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"SMTP ready\r\n\r\n")
        await writer.drain()
        writer.close()

    async with raw_upstream(garbage) as origin:
        with pytest.raises(UpstreamUnreachable):
            await pool().send("GET", origin, "/", [], b"")


async def test_an_interim_answer_is_skipped_for_the_final_one():
    async def continuing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n" + OK)
        await writer.drain()
        await reader.read()

    async with raw_upstream(continuing) as origin:
        client = pool()
        reply = await client.send("POST", origin, "/", [], b"")
        await client.aclose()
    assert (reply.status, reply.body) == (200, b"ok")


async def test_a_kept_alive_connection_found_closed_is_replaced_only_for_idempotent_requests():
    # Each connection answers its first request and drops the next one unanswered, as an
    # upstream closing an idle connection under a request being sent would.
    async def one_per_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        await read_request(reader)
        writer.write(OK)
        await writer.drain()
        await read_request(reader)
        writer.close()

    async with raw_upstream(one_per_connection) as origin:
        client = pool()
        first = await client.send("GET", origin, "/", [], b"")
        again = await client.send("GET", origin, "/", [], b"")  # sent anew on a fresh one
        with pytest.raises(UpstreamUnreachable):  # a POST is never sent twice
            await client.send("POST", origin, "/", [], b"")
        await client.aclose()
    assert (first.status, again.status) == (200, 200)


def test_an_upstream_is_an_http_url_with_a_host():
    assert Origin.parse("http://courses:8000/api/").url == "http://courses:8000/api"
    assert Origin.parse("https://[::1]/").netloc == "[::1]:443"
    with pytest.raises(ValueError, match="http"):
        Origin.parse("courses:8000")
