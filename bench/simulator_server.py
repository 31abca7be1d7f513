"""The CXone simulator as its own uvicorn process, for benchmarks.

    python bench/simulator_server.py --port 9001 [--public-url http://127.0.0.1:9001]

Serves `CxoneSimulator(...).app` plus `GET /_bench/stats`: messages the simulator accepted
(`POST /dfo/3.0/channels/{id}/messages` answered 200), counted per wall-clock second, so a benchmark
reads throughput at the far end from the far end's own counter.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections import Counter

import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.cxone.simulator import CxoneSimulator

_MESSAGES = re.compile(r"^/dfo/3\.0/channels/[^/]+/messages$")


class CountingApp:
    """Wraps the simulator: counts accepted messages and answers `/_bench/stats` itself."""

    def __init__(self, inner: ASGIApp, simulator: CxoneSimulator) -> None:
        self.inner = inner
        self.simulator = simulator
        self.per_second: Counter[int] = Counter()
        self.accepted = 0
        self.other_status = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.inner(scope, receive, send)
            return
        path = scope["path"]
        if path == "/_bench/stats":
            await self._stats(send)
            return
        if path == "/_bench/forget" and scope["method"] == "POST":
            self.simulator.calls.clear()  # keeps memory flat across long runs; nothing reads it here
            await self._json(send, {"ok": True})
            return
        if scope["method"] != "POST" or not _MESSAGES.match(path):
            await self.inner(scope, receive, send)
            return

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                if message["status"] == 200:
                    self.accepted += 1
                    self.per_second[int(time.time())] += 1
                else:
                    self.other_status += 1
            await send(message)

        await self.inner(scope, receive, counting_send)

    async def _stats(self, send: Send) -> None:
        body = {
            "accepted": self.accepted,
            "other_status": self.other_status,
            "per_second": {str(k): v for k, v in sorted(self.per_second.items())},
        }
        await self._json(send, body)

    @staticmethod
    async def _json(send: Send, body: object) -> None:
        raw = json.dumps(body).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": raw})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--public-url", default=None)
    args = parser.parse_args()
    public_url = args.public_url or f"http://{args.host}:{args.port}"
    simulator = CxoneSimulator(public_url=public_url)
    app = CountingApp(simulator.app, simulator)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
