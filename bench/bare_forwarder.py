"""The baseline: the least a relay can do. One endpoint under uvicorn that forwards each request body to
the fake provider with aiohttp, Standard-Webhooks-signed with a fresh id, and stores nothing.

    python bench/bare_forwarder.py --port 9003 --target http://127.0.0.1:9002/messages --secret whsec_...

Any POST path is forwarded; `GET /healthz` answers 200. The answer mirrors the provider's status.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import time
import uuid
from typing import Any

import aiohttp
import uvicorn
from starlette.types import Receive, Scope, Send


def _key(secret: str) -> bytes:
    encoded = secret.removeprefix("whsec_")
    return base64.b64decode(encoded + "=" * (-len(encoded) % 4))


class Forwarder:
    def __init__(self, target: str, secret: str) -> None:
        self.target = target
        self.key = _key(secret)
        self.session: aiohttp.ClientSession | None = None

    def _headers(self, body: bytes) -> dict[str, str]:
        msg_id = f"msg_{uuid.uuid4().hex}"
        timestamp = str(int(time.time()))
        digest = hmac.new(self.key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
        return {
            "webhook-id": msg_id,
            "webhook-timestamp": timestamp,
            "webhook-signature": "v1," + base64.b64encode(digest).decode(),
            "content-type": "application/json",
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["method"] != "POST":
            await _answer(send, 200, b'{"ok":true}')
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        assert self.session is not None
        try:
            async with self.session.post(self.target, data=body, headers=self._headers(body)) as response:
                answer = await response.read()
                status = response.status
        except aiohttp.ClientError:
            status, answer = 502, b'{"error":"provider unreachable"}'
        await _answer(send, status, answer)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                connector = aiohttp.TCPConnector(limit=100)
                self.session = aiohttp.ClientSession(
                    connector=connector, timeout=aiohttp.ClientTimeout(total=15)
                )
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.session is not None:
                    await self.session.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


async def _answer(send: Send, status: int, body: bytes) -> None:
    headers: list[tuple[bytes, bytes]] = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    start: dict[str, Any] = {"type": "http.response.start", "status": status, "headers": headers}
    await send(start)
    await send({"type": "http.response.body", "body": body})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--target", required=True)
    parser.add_argument("--secret", required=True)
    args = parser.parse_args()
    app = Forwarder(args.target, args.secret)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
