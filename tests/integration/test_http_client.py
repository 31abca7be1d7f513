"""The outbound HTTP client against a real local server (sockets, not ASGITransport): what the relay's
retry classification and signing rely on."""

from __future__ import annotations

import asyncio
import gzip
import socket
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from aiohttp import web

from app.http import make_http_client


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    def __init__(self) -> None:
        self.concurrent = 0
        self.peak = 0
        self.base = ""

    async def echo(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"body": (await request.read()).decode(), "sig": request.headers.get("webhook-signature")}
        )

    async def slow(self, request: web.Request) -> web.Response:
        await asyncio.sleep(float(request.query.get("s", "2")))
        return web.Response(text="late")

    async def gz(self, _: web.Request) -> web.Response:
        return web.Response(body=gzip.compress(b"hello gzip"), headers={"Content-Encoding": "gzip"})

    async def redirect(self, _: web.Request) -> web.Response:
        raise web.HTTPFound("/echo")

    async def big(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        for _ in range(64):
            await response.write(b"x" * 65536)
        await response.write_eof()
        return response

    async def held(self, _: web.Request) -> web.Response:
        self.concurrent += 1
        self.peak = max(self.peak, self.concurrent)
        await asyncio.sleep(0.05)
        self.concurrent -= 1
        return web.Response(text="ok")


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    state = Server()
    app = web.Application()
    app.add_routes(
        [
            web.post("/echo", state.echo),
            web.get("/echo", state.echo),
            web.get("/slow", state.slow),
            web.get("/gz", state.gz),
            web.get("/redirect", state.redirect),
            web.get("/big", state.big),
            web.get("/held", state.held),
        ]
    )
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    state.base = f"http://127.0.0.1:{port}"
    yield state
    await runner.cleanup()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    http = make_http_client(timeout=1.0, max_connections=4)
    yield http
    await http.aclose()


async def test_bytes_and_headers_arrive_exactly_as_signed(server: Server, client: httpx.AsyncClient) -> None:
    answer = await client.post(
        f"{server.base}/echo", content=b'{"a":1}', headers={"webhook-signature": "v1,abc"}
    )
    assert answer.json() == {"body": '{"a":1}', "sig": "v1,abc"}


async def test_gzip_is_decoded_once(server: Server, client: httpx.AsyncClient) -> None:
    assert (await client.get(f"{server.base}/gz")).text == "hello gzip"


async def test_redirects_are_followed_only_when_asked(server: Server, client: httpx.AsyncClient) -> None:
    answer = await client.get(f"{server.base}/redirect")
    assert (answer.status_code, answer.headers["location"]) == (302, "/echo")
    assert (await client.get(f"{server.base}/redirect", follow_redirects=True)).status_code == 200


async def test_timeouts_raise_read_timeout(server: Server, client: httpx.AsyncClient) -> None:
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        await client.get(f"{server.base}/slow?s=3")
    assert 0.9 < time.monotonic() - started < 2.0
    with pytest.raises(httpx.ReadTimeout):
        await client.get(f"{server.base}/slow?s=3", timeout=0.3)
    assert (await client.get(f"{server.base}/slow?s=0.2", timeout=5.0)).text == "late"


async def test_a_refused_connection_is_a_transport_error(client: httpx.AsyncClient) -> None:
    with pytest.raises(httpx.TransportError):
        await client.get(f"http://127.0.0.1:{free_port()}/")


async def test_a_partly_read_stream_gives_its_connection_back(
    server: Server, client: httpx.AsyncClient
) -> None:
    for _ in range(6):  # more than the pool holds: a leak would hang here
        async with client.stream("GET", f"{server.base}/big") as response:
            async for _chunk in response.aiter_bytes():
                break
    assert (await client.get(f"{server.base}/echo")).status_code == 200


async def test_the_pool_limit_holds(server: Server, client: httpx.AsyncClient) -> None:
    await asyncio.gather(*(client.get(f"{server.base}/held") for _ in range(20)))
    assert server.peak <= 4


async def test_a_malformed_answer_is_an_httpx_transport_error_not_an_aiohttp_one() -> None:
    """Adapters promise never to raise for a provider's trouble: they catch httpx's errors, so every
    failure of the transport must be one."""

    async def answer_badly(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: zz\r\n\r\nhello")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer_badly, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with make_http_client(timeout=5) as http:
            with pytest.raises(httpx.TransportError):
                await http.get(f"http://127.0.0.1:{port}/")
    finally:
        server.close()
        await server.wait_closed()
