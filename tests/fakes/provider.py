"""A fake in-house messaging platform: the far end of the `webhook` channel adapter.

It behaves like a real platform and asserts nothing: it checks the Standard Webhooks signature of
every call (with the reference `standardwebhooks` library, so it shares no code with our adapter),
dedupes on `webhook-id`, answers with its own message ids, and records everything for tests to read.
Failures, outages and latency can be switched on from Python or over HTTP under `/_fake/`.

Latency is applied after the call has been processed and recorded, like a platform that is slow to
answer: a client that times out may still have delivered the message, and its retry is a duplicate.
Failure injection applies to message calls only; typing calls are checked, recorded and answered 200.

Standalone (benchmarks, crash tests):
    python -m tests.fakes.provider --host 127.0.0.1 --port 0 --secret whsec_...
prints `fake provider listening on http://HOST:PORT` once it accepts connections.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import sys
import time
import uuid
from collections import Counter, deque
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


@dataclass(frozen=True)
class Attempt:
    """One call to `POST /messages`, whatever became of it."""

    webhook_id: str | None
    body: Any
    monotonic: float
    wall: float
    status: int
    duplicate: bool = False


@dataclass(frozen=True)
class Delivery:
    """The first successful delivery of one `webhook-id`."""

    webhook_id: str
    provider_id: str
    thread_id: str | None
    text: str | None
    at: float  # wall clock, unix seconds
    monotonic: float


@dataclass(frozen=True)
class TypingCall:
    webhook_id: str | None
    body: Any
    wall: float


@dataclass(frozen=True)
class _Failure:
    status: int
    retry_after: str | None


def _retry_after(value: float | str | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return str(int(value)) if float(value).is_integer() else str(value)


class FakeProvider:
    def __init__(self, secret: str, *, seed: int | None = None) -> None:
        self.secret = secret
        self.seed = seed
        self._webhook = Webhook(secret)
        self.attempts: list[Attempt] = []
        self.pings = 0
        self.deliveries: list[Delivery] = []
        self.typing: list[TypingCall] = []
        self.duplicates = 0
        self.rejected = 0
        self._provider_ids: dict[str, str] = {}
        self._failures: deque[_Failure] = deque()
        self._outage_until = 0.0
        self._outage = _Failure(503, None)
        self._fail_ratio = 0.0
        self._fail_ratio_status = 503
        self._random = random.Random(seed)
        self._latency = 0.0
        self.files: dict[str, bytes] = {}  # name -> content, served at /files/{name}
        self.redirects: dict[str, str] = {}  # name -> where /files/{name} redirects
        self.downloads = 0
        self.app = Starlette(
            routes=[
                Route("/files/{name}", self._file, methods=["GET"]),
                Route("/messages", self._messages, methods=["POST"]),
                Route("/typing", self._typing, methods=["POST"]),
                Route("/_fake/behaviour", self._behaviour, methods=["POST"]),
                Route("/_fake/stats", self._stats, methods=["GET"]),
                Route("/_fake/deliveries", self._deliveries, methods=["GET"]),
            ]
        )

    # Behaviour controls ---------------------------------------------------------------------------

    def rotate_secret_to_unknown(self) -> None:
        """The platform starts checking a secret the relay does not have: every call is then refused 401."""
        self._webhook = Webhook("whsec_" + base64.b64encode(os.urandom(32)).decode())

    def fail_next(self, status: int, times: int = 1, retry_after: float | str | None = None) -> None:
        """The next `times` message calls answer `status` (queued after earlier fail_next calls)."""
        self._failures.extend(_Failure(status, _retry_after(retry_after)) for _ in range(times))

    def outage(
        self, status: int = 503, seconds: float = 60.0, retry_after: float | str | None = None
    ) -> None:
        """Every message call answers `status` until `seconds` have passed."""
        self._outage = _Failure(status, _retry_after(retry_after))
        self._outage_until = time.monotonic() + seconds

    def fail_ratio(self, ratio: float, status: int = 503) -> None:
        """Each message call fails with probability `ratio`, drawn from the seeded generator."""
        if not 0.0 <= ratio <= 1.0:
            raise ValueError("ratio must be between 0 and 1")
        self._fail_ratio = ratio
        self._fail_ratio_status = status

    def latency(self, seconds: float) -> None:
        """Wait this long before answering each call."""
        self._latency = max(0.0, seconds)

    def reset(self) -> None:
        """Back to a healthy platform with nothing recorded, the generator re-seeded."""
        self._failures.clear()
        self._outage_until = 0.0
        self._fail_ratio = 0.0
        self._latency = 0.0
        self._random = random.Random(self.seed)
        self.attempts.clear()
        self.deliveries.clear()
        self.typing.clear()
        self.duplicates = 0
        self.rejected = 0
        self._provider_ids.clear()

    def delivered_ids(self) -> list[str]:
        """The webhook-ids delivered so far, in delivery order, each once."""
        return [delivery.webhook_id for delivery in self.deliveries]

    def stats(self) -> dict[str, Any]:
        per_second = Counter(int(delivery.at) for delivery in self.deliveries)
        return {
            "attempts": len(self.attempts),
            "deliveries": len(self.deliveries),
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "delivered_ids_count": len(self._provider_ids),
            "file_downloads": self.downloads,
            "per_second": dict(sorted(per_second.items())),
        }

    # Acting as the platform toward the relay's webhook ---------------------------------------------

    def signed_headers(
        self,
        body: bytes,
        *,
        msg_id: str | None = None,
        timestamp: int | None = None,
        secret: str | None = None,
    ) -> dict[str, str]:
        msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
        timestamp = int(time.time()) if timestamp is None else timestamp
        signer = self._webhook if secret is None else Webhook(secret)
        signature = signer.sign(msg_id, datetime.fromtimestamp(timestamp, UTC), body.decode())
        return {
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature,
            "content-type": "application/json",
        }

    @staticmethod
    def message_event(event_id: str, sender_id: str, text: str, name: str | None = None) -> bytes:
        sender: dict[str, str] = {"id": sender_id}
        if name is not None:
            sender["name"] = name
        return json.dumps({"type": "message", "id": event_id, "from": sender, "text": text}).encode()

    def file_event(self, event_id: str, sender_id: str, name: str, content: bytes, **declared: Any) -> bytes:
        """A customer message with one file, which this platform serves at its `url`."""
        self.files[name] = content
        attachment = {"url": f"http://provider.test/files/{name}", "name": name, **declared}
        event = {"type": "message", "id": event_id, "from": {"id": sender_id}, "attachments": [attachment]}
        return json.dumps(event).encode()

    @staticmethod
    def status_event(event_id: str, message_id: str, status: str) -> bytes:
        event = {"type": "status", "id": event_id, "message_id": message_id, "status": status}
        return json.dumps(event).encode()

    # HTTP ------------------------------------------------------------------------------------------

    async def _file(self, request: Request) -> Response:
        if request.path_params["name"] in self.redirects:
            return Response(
                status_code=302, headers={"location": self.redirects[request.path_params["name"]]}
            )
        content = self.files.get(request.path_params["name"])
        if content is None:
            return JSONResponse({"error": "no such file"}, status_code=404)
        self.downloads += 1
        return Response(content, media_type="application/pdf")

    def _verified(self, request: Request, raw: bytes) -> bool:
        headers = dict(request.headers.items())
        try:
            self._webhook.verify(raw, headers, json_parse=False)
        except (WebhookVerificationError, ValueError):  # the library raises ValueError on bad tokens
            return False
        return True

    def _failure(self, now: float) -> _Failure | None:
        if now < self._outage_until:
            return self._outage
        if self._failures:
            return self._failures.popleft()
        if self._fail_ratio and self._random.random() < self._fail_ratio:
            return _Failure(self._fail_ratio_status, None)
        return None

    async def _answer(self, response: Response) -> Response:
        if self._latency:
            await asyncio.sleep(self._latency)
        return response

    async def _messages(self, request: Request) -> Response:
        raw = await request.body()
        now, wall = time.monotonic(), time.time()
        webhook_id = request.headers.get("webhook-id")
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = None
        if not self._verified(request, raw):
            self.rejected += 1
            self.attempts.append(Attempt(webhook_id, body, now, wall, 401))
            return await self._answer(JSONResponse({"error": "invalid signature"}, status_code=401))
        if isinstance(body, dict) and body.get("type") == "ping":
            self.pings += 1
            return await self._answer(JSONResponse({}))
        if isinstance(body, dict) and body.get("type") == "typing":
            self.typing.append(TypingCall(webhook_id, body, wall))
            return await self._answer(JSONResponse({}))
        if not isinstance(body, dict) or webhook_id is None:
            self.attempts.append(Attempt(webhook_id, body, now, wall, 400))
            return await self._answer(JSONResponse({"error": "expected a JSON object"}, status_code=400))
        failure = self._failure(now)
        if failure is not None:
            self.attempts.append(Attempt(webhook_id, body, now, wall, failure.status))
            headers = {"retry-after": failure.retry_after} if failure.retry_after is not None else None
            error = {"error": f"injected failure {failure.status}"}
            return await self._answer(JSONResponse(error, status_code=failure.status, headers=headers))
        provider_id = self._provider_ids.get(webhook_id)
        duplicate = provider_id is not None
        if provider_id is None:
            provider_id = f"prov-{uuid.uuid4()}"
            self._provider_ids[webhook_id] = provider_id
            self.deliveries.append(
                Delivery(webhook_id, provider_id, body.get("thread_id"), body.get("text"), wall, now)
            )
        else:
            self.duplicates += 1
        self.attempts.append(Attempt(webhook_id, body, now, wall, 200, duplicate=duplicate))
        return await self._answer(JSONResponse({"id": provider_id}))

    async def _typing(self, request: Request) -> Response:
        raw = await request.body()
        if not self._verified(request, raw):
            self.rejected += 1
            return await self._answer(JSONResponse({"error": "invalid signature"}, status_code=401))
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = None
        self.typing.append(TypingCall(request.headers.get("webhook-id"), body, time.time()))
        return await self._answer(JSONResponse({}))

    async def _behaviour(self, request: Request) -> Response:
        try:
            command = json.loads(await request.body())
            if not isinstance(command, dict) or len(command) != 1:
                raise ValueError("send exactly one of fail_next, outage, fail_ratio, latency, file, reset")
            ((key, value),) = command.items()
            if key == "fail_next":
                self.fail_next(**value)
            elif key == "outage":
                self.outage(**value)
            elif key == "fail_ratio":
                self.fail_ratio(**value)
            elif key == "latency":
                self.latency(float(value))
            elif key == "file":  # a file to serve at /files/{name}, of `size` bytes
                self.files[str(value["name"])] = bytes(index % 251 for index in range(int(value["size"])))
            elif key == "reset" and value is True:
                self.reset()
            else:
                raise ValueError(f"unknown behaviour {key!r}")
        except (ValueError, TypeError) as error:
            return JSONResponse({"error": str(error)}, status_code=400)
        return JSONResponse({"ok": True})

    async def _stats(self, request: Request) -> Response:
        return JSONResponse(self.stats())

    async def _deliveries(self, request: Request) -> Response:
        return JSONResponse([asdict(delivery) for delivery in self.deliveries])


async def _serve(host: str, port: int, provider: FakeProvider) -> None:
    import uvicorn

    config = uvicorn.Config(provider.app, host=host, port=port, access_log=False, log_level="warning")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            await task  # start-up failed: surface why
            return
        await asyncio.sleep(0.02)
    bound_port = server.servers[0].sockets[0].getsockname()[1]
    sys.stdout.write(f"fake provider listening on http://{host}:{bound_port}\n")
    sys.stdout.flush()
    await task


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A fake in-house messaging platform")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (see the ready line)")
    parser.add_argument("--secret", required=True, help="the channel's whsec_ secret")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    asyncio.run(_serve(args.host, args.port, FakeProvider(args.secret, seed=args.seed)))


if __name__ == "__main__":
    main()
