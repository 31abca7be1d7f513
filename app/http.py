"""The outbound HTTP client shared by the CXone gateway and the channel adapters.

`make_http_client()` returns a plain `httpx.AsyncClient`, so callers keep httpx's API (timeouts per call,
`follow_redirects`, `stream()`, `httpx.HTTPError`), but requests travel over aiohttp's connection pool:
on this service's workloads that is roughly 2.5x the throughput of httpx's default transport (see
bench/relay.py). What the transport guarantees:

* Redirects are never followed by the transport. httpx follows them itself only when asked
  (`follow_redirects=True`), exactly as with its default transport.
* Timeouts: httpx's `connect` bounds the TCP/TLS connect, `pool` bounds waiting for a free connection
  plus connecting, `read` bounds each wait for response bytes. A stalled `write` is caught by `read`
  (aiohttp has no separate write timeout).
* Errors are httpx's: `ConnectError`, `ConnectTimeout`, `ReadTimeout`, `RemoteProtocolError`, `ReadError`,
  `UnsupportedProtocol`, all subclasses of `httpx.TransportError`.
* Bodies are passed through untouched (no decompression here; httpx decodes `Content-Encoding`).
* Proxies from the environment still work (httpx routes them through its own proxy transport).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import httpx

DEFAULT_MAX_CONNECTIONS = 100
# Below the idle timeout of common servers (uvicorn closes idle connections after 5 s): reusing a
# connection the server is closing at that moment would fail a POST, which aiohttp does not retry.
KEEPALIVE_SECONDS = 4.0
_CHUNK = 64 * 1024
# aiohttp adds these unless told not to; httpx has already set what it means to send.
_SKIP_AUTO_HEADERS = frozenset({"User-Agent", "Accept", "Accept-Encoding", "Content-Type"})


def _as_httpx_error(exc: BaseException, request: httpx.Request, *, reading: bool) -> httpx.TransportError:
    """The httpx exception that says the same thing as an aiohttp (or asyncio) one. Order matters:
    aiohttp's timeout errors are also connection errors."""
    message = str(exc) or type(exc).__name__
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(message, request=request)
    if isinstance(exc, aiohttp.SocketTimeoutError):
        return httpx.ReadTimeout(message, request=request)
    if isinstance(exc, TimeoutError):  # ServerTimeoutError and plain asyncio timeouts
        if reading:
            return httpx.ReadTimeout(message, request=request)
        return httpx.ConnectTimeout(message, request=request)
    if isinstance(exc, aiohttp.InvalidURL):
        return httpx.UnsupportedProtocol(message, request=request)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return httpx.ConnectError(message, request=request)
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientResponseError):
        return httpx.RemoteProtocolError(message, request=request)
    if isinstance(exc, aiohttp.ClientPayloadError):
        return httpx.ReadError(message, request=request)
    if reading:
        return httpx.ReadError(message, request=request)
    return httpx.WriteError(message, request=request)


class _ResponseStream(httpx.AsyncByteStream):
    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_chunked(_CHUNK):
                yield chunk
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _as_httpx_error(exc, self._request, reading=True) from exc

    async def aclose(self) -> None:
        # A body read to its end leaves the connection in the pool; a partly read one closes it.
        self._response.release()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """An httpx transport on an aiohttp `ClientSession`, created on first use inside the running loop."""

    def __init__(self, *, max_connections: int, keepalive_seconds: float = KEEPALIVE_SECONDS) -> None:
        self._max_connections = max_connections
        self._keepalive = keepalive_seconds
        self._ssl = httpx.create_ssl_context()
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections, keepalive_timeout=self._keepalive, ssl=self._ssl
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=False,
                skip_auto_headers=_SKIP_AUTO_HEADERS,
                timeout=aiohttp.ClientTimeout(total=None),
                cookie_jar=aiohttp.DummyCookieJar(),  # httpx keeps the cookies, if any
            )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts: dict[str, Any] = request.extensions.get("timeout", {})
        connect, pool, read = timeouts.get("connect"), timeouts.get("pool"), timeouts.get("read")
        # aiohttp's `connect` covers waiting for a pooled connection and connecting.
        waiting = None if pool is None and connect is None else (pool or 0.0) + (connect or 0.0)
        timeout = aiohttp.ClientTimeout(total=None, connect=waiting, sock_connect=connect, sock_read=read)
        if request.url.scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(
                f"Request URL has an unsupported protocol '{request.url.scheme}://'.", request=request
            )
        body = await request.aread()
        try:
            response = await self._client().request(
                request.method,
                str(request.url),
                headers=request.headers.multi_items(),
                data=body or None,
                allow_redirects=False,
                compress=False,
                timeout=timeout,
                server_hostname=request.extensions.get("sni_hostname"),
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _as_httpx_error(exc, request, reading=False) from exc
        extensions: dict[str, Any] = {"http_version": b"HTTP/1.1"}
        if response.reason:
            extensions["reason_phrase"] = response.reason.encode("latin-1", errors="replace")
        return httpx.Response(
            status_code=response.status,
            headers=list(response.raw_headers),
            stream=_ResponseStream(response, request),
            request=request,
            extensions=extensions,
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def make_http_client(*, timeout: float, max_connections: int = DEFAULT_MAX_CONNECTIONS) -> httpx.AsyncClient:
    """The service's outbound client: httpx's API over aiohttp's pool, at most `max_connections` sockets."""
    return httpx.AsyncClient(
        transport=AiohttpTransport(max_connections=max_connections),
        timeout=timeout,
        follow_redirects=False,
    )
