"""Behaviour checks of `app.http.make_http_client` against a real local HTTP server (no ASGITransport).

    .venv/bin/python bench/check_http_client.py

Each check prints `ok` or raises. Checked: body/headers round trip, gzip decoded once, redirects not
followed unless asked, read timeout -> httpx.ReadTimeout, refused connection -> httpx.ConnectError,
a partly read stream releases its connection, pool limit respected, per-call timeout override.
"""

from __future__ import annotations

import asyncio
import gzip
import socket
import time

import httpx
from aiohttp import web

from app.http import make_http_client


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _server() -> tuple[web.AppRunner, str, dict[str, int]]:
    state = {"concurrent": 0, "peak": 0}

    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        return web.json_response(
            {
                "body": body.decode(),
                "sig": request.headers.get("webhook-signature"),
                "ctype": request.headers.get("content-type"),
            }
        )

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(float(request.query.get("s", "2")))
        return web.Response(text="late")

    async def gz(request: web.Request) -> web.Response:
        return web.Response(body=gzip.compress(b"hello gzip"), headers={"Content-Encoding": "gzip"})

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound("/echo")

    async def big(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        for _ in range(64):
            await response.write(b"x" * 65536)
        await response.write_eof()
        return response

    async def held(request: web.Request) -> web.Response:
        state["concurrent"] += 1
        state["peak"] = max(state["peak"], state["concurrent"])
        await asyncio.sleep(0.05)
        state["concurrent"] -= 1
        return web.Response(text="ok")

    app = web.Application()
    app.add_routes(
        [
            web.post("/echo", echo),
            web.get("/echo", echo),
            web.get("/slow", slow),
            web.get("/gz", gz),
            web.get("/redirect", redirect),
            web.get("/big", big),
            web.get("/held", held),
        ]
    )
    runner = web.AppRunner(app)
    await runner.setup()
    port = _free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}", state


async def main() -> None:
    runner, base, state = await _server()
    client = make_http_client(timeout=1.0, max_connections=4)
    try:
        r = await client.post(
            f"{base}/echo",
            content=b'{"a":1}',
            headers={"webhook-signature": "v1,abc", "content-type": "application/json"},
        )
        assert r.status_code == 200, r.status_code
        assert r.json() == {"body": '{"a":1}', "sig": "v1,abc", "ctype": "application/json"}, r.json()
        print("ok  body and headers round trip")

        r = await client.post(f"{base}/echo", json={"k": "é"})
        assert r.json()["body"] == '{"k":"é"}', r.json()
        assert r.json()["ctype"] == "application/json", r.json()
        print("ok  json= body")

        r = await client.get(f"{base}/gz")
        assert r.text == "hello gzip", r.content
        print("ok  gzip decoded once (by httpx)")

        r = await client.get(f"{base}/redirect")
        assert r.status_code == 302, r.status_code
        assert r.headers["location"] == "/echo", r.headers
        r = await client.get(f"{base}/redirect", follow_redirects=True)
        assert r.status_code == 200, r.status_code
        assert len(r.history) == 1, r.history
        print("ok  redirects: not followed by default, followed when asked")

        started = time.monotonic()
        try:
            await client.get(f"{base}/slow?s=3")
        except httpx.ReadTimeout:
            elapsed = time.monotonic() - started
            assert 0.9 < elapsed < 1.6, elapsed
        else:
            raise AssertionError("no ReadTimeout")
        started = time.monotonic()
        try:
            await client.get(f"{base}/slow?s=3", timeout=0.3)
        except httpx.ReadTimeout:
            assert time.monotonic() - started < 0.8
        else:
            raise AssertionError("no ReadTimeout with per-call timeout")
        r = await client.get(f"{base}/slow?s=0.2", timeout=httpx.Timeout(5.0))
        assert r.text == "late"
        print("ok  read timeout (client default and per call) -> httpx.ReadTimeout")

        try:
            await client.get(f"http://127.0.0.1:{_free_port()}/")
        except httpx.ConnectError:
            pass
        else:
            raise AssertionError("no ConnectError")
        print("ok  refused connection -> httpx.ConnectError (a TransportError)")

        try:
            await client.get("ftp://127.0.0.1/x")
        except httpx.UnsupportedProtocol:
            pass
        else:
            raise AssertionError("no UnsupportedProtocol")
        print("ok  unsupported scheme -> httpx.UnsupportedProtocol")

        async with client.stream("GET", f"{base}/big") as response:
            async for _chunk in response.aiter_bytes():
                break  # stop early: the connection must be released, not leaked
        r = await client.get(f"{base}/echo")
        assert r.status_code == 200
        print("ok  partly read stream released")

        await asyncio.gather(*(client.get(f"{base}/held") for _ in range(20)))
        assert state["peak"] <= 4, state
        print(f"ok  pool limit respected (peak {state['peak']} concurrent of max 4)")
    finally:
        await client.aclose()
        await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
