"""Real processes for fault tests: relay servers, delivery workers and a fake platform, each in its own
process so that a test can kill one with SIGKILL or stop it with SIGTERM and watch what survives."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import insert

from app.adapters.webhook import generate_secret
from app.db import session_scope
from app.delivery.kinds import SEND_TO_PROVIDER
from app.delivery.queue import ensure_destinations
from app.models import Channel, Delivery, Integration, Message, Thread
from app.models.base import new_uuid, utcnow
from app.runtime import Runtime
from app.schemas.admin import CxoneCredentialsIn, IntegrationCreate
from app.schemas.box import OutboundRequest
from app.services import integrations, relay
from tests.conftest import TEST_SECRET_KEY

READY_SECONDS = 30
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def process_env(database_url: str, **settings: Any) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BYOC_")}
    env.update(
        {
            "PYTHONPATH": str(ROOT),
            "BYOC_ENV": "dev",
            "BYOC_SECRET_KEY": TEST_SECRET_KEY,
            "BYOC_DATABASE_URL": database_url,
            "BYOC_LEASE_SECONDS": "2",
            "BYOC_WORKER_POLL_SECONDS": "0.05",
            "BYOC_RETRY_BASE_SECONDS": "0.05",
            "BYOC_RETRY_CAP_SECONDS": "0.5",
            "BYOC_LOG_LEVEL": "WARNING",
        }
    )
    env.update({f"BYOC_{key.upper()}": str(value) for key, value in settings.items()})
    return env


class Live:
    """One child process, its output kept in a log file for the failure message."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self._out = log.open("ab")
        # Run from the log's folder: no stray .env from the developer's checkout is read.
        self.process = subprocess.Popen(
            args, env=env, stdout=self._out, stderr=subprocess.STDOUT, cwd=log.parent
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def kill(self) -> None:
        """SIGKILL: no cleanup, no drain, exactly like a crashed machine."""
        self.process.kill()
        self.process.wait()

    def terminate(self, timeout: float = 60) -> float:
        """SIGTERM, then wait; returns how long the process took to exit."""
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=timeout)
        return time.monotonic() - started

    def close(self) -> None:
        if self.process.poll() is None:
            self.kill()
        self._out.close()


@contextmanager
def processes() -> Iterator[list[Live]]:
    """Every process started in the block is killed at its end, whatever happens."""
    started: list[Live] = []
    try:
        yield started
    finally:
        for live in started:
            live.close()


def wait_for_http(url: str, live: Live) -> None:
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        if live.process.poll() is not None:
            raise AssertionError(f"process exited early:\n{live.output()}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"{url} never answered:\n{live.output()}")


def start_provider(started: list[Live], tmp: Path, secret: str, *, port: int | None = None) -> str:
    port = port or free_port()
    live = Live(
        [
            sys.executable,
            "-m",
            "tests.fakes.provider",
            "--port",
            str(port),
            "--secret",
            secret,
            "--seed",
            "1",
        ],
        {**os.environ, "PYTHONPATH": str(ROOT)},
        tmp / f"provider-{port}.log",
    )
    started.append(live)
    url = f"http://127.0.0.1:{port}"
    wait_for_http(f"{url}/_fake/stats", live)
    return url


def start_worker(started: list[Live], tmp: Path, env: dict[str, str], name: str = "worker") -> Live:
    live = Live([sys.executable, "-m", "app.cli", "worker"], env, tmp / f"{name}-{len(started)}.log")
    started.append(live)
    return live


def start_relay(
    started: list[Live], tmp: Path, env: dict[str, str], *, port: int, worker: bool = True
) -> Live:
    args = [sys.executable, "-m", "app.cli", "serve", "--port", str(port)]
    if not worker:
        args.append("--no-worker")
    live = Live(args, env, tmp / f"relay-{port}-{len(started)}.log")
    started.append(live)
    wait_for_http(f"http://127.0.0.1:{port}/healthz", live)
    return live


def provider_stats(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}/_fake/stats", timeout=5) as response:
        stats: dict[str, Any] = json.loads(response.read())
    return stats


def provider_deliveries(url: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{url}/_fake/deliveries", timeout=30) as response:
        deliveries: list[dict[str, Any]] = json.loads(response.read())
    return deliveries


def wait_until(check: Any, *, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {within}s: {what}")
        time.sleep(0.05)


async def set_up_channel(
    runtime: Runtime, provider_url: str, secret: str
) -> tuple[Integration, Channel, str]:
    """An integration and a webhook channel, written directly: fault tests exercise delivery, not CXone."""
    async with session_scope(runtime.sessions) as session:
        integration, client_secret = await integrations.create_integration(
            session,
            IntegrationCreate(
                name="Fault tests",
                cxone=CxoneCredentialsIn.model_validate({"bearer_token": "unused"}),
                cxone_issuer_url="http://127.0.0.1:9",
                cxone_integration_id="fault-tests",
            ),
            settings=runtime.settings,
            credential_box=runtime.credential_box,
        )
        channel = Channel(
            id="byoc_faults",
            integration_id=integration.id,
            name="Fault tests",
            adapter="webhook",
            config={"url": f"{provider_url}/messages", "timeout_seconds": 10},
            secrets_sealed=runtime.credential_box.seal({"secret": secret}),
        )
        session.add(channel)
    return integration, channel, client_secret


async def seed_replies(
    runtime: Runtime,
    integration: Integration,
    channel_id: str,
    *,
    threads: int,
    per_thread: int,
    batch: int = 500,
    attachments: list[dict[str, str]] | None = None,
) -> list[str]:
    """Agent replies stored through the relay's own use case, as the box stores them; returns their ids in
    the order they were accepted (thread by thread interleaved, like concurrent conversations)."""
    ids: list[str] = []
    pending = [(t, n) for n in range(per_thread) for t in range(threads)]
    async with runtime.reads() as session:
        channel = await session.get(Channel, channel_id)
    assert channel is not None
    assert channel.integration_id == integration.id
    for start in range(0, len(pending), batch):
        replies: list[relay.Unit] = [
            relay.AgentReply(
                channel,
                OutboundRequest.model_validate(
                    {
                        "thread": {"idOnExternalPlatform": f"conv-{thread_no}"},
                        "messageContent": {"type": "TEXT", "payload": {"text": f"{thread_no}:{n}"}},
                        "endUserRecipients": [{"idOnExternalPlatform": f"user-{thread_no}"}],
                        "attachments": attachments or [],
                    }
                ),
                request_key=None,
            )
            for thread_no, n in pending[start : start + batch]
        ]
        async with session_scope(runtime.sessions) as session:
            for accepted in await relay.store(session, replies, runtime.registry, runtime.files):
                assert isinstance(accepted, relay.AcceptedReply)
                ids.append(accepted.message.id)
    return ids


async def seed_replies_fast(
    runtime: Runtime, integration: Integration, channel: Channel, *, threads: int, per_thread: int
) -> list[str]:
    """The same rows `seed_replies` writes, inserted in bulk: for runs of thousands, where how the work was
    stored is not what the test is about. Thread by thread interleaved; returns the message ids."""
    adapter = runtime.registry.get(channel.adapter)
    destination = adapter.destination(channel.config)
    now = utcnow()
    thread_rows = [
        {
            "id": new_uuid(),
            "channel_id": channel.id,
            "external_id": f"conv-{t}",
            "end_user_id": f"user-{t}",
            "created_at": now,
            "last_message_at": now,
        }
        for t in range(threads)
    ]
    messages: list[dict[str, Any]] = []
    deliveries: list[dict[str, Any]] = []
    for n in range(per_thread):
        for t, thread in enumerate(thread_rows):
            message_id = new_uuid()
            messages.append(
                {
                    "id": message_id,
                    "channel_id": channel.id,
                    "thread_id": thread["id"],
                    "direction": "outbound",
                    "text": f"{t}:{n}",
                    "attachments": [],
                    "end_user_id": thread["end_user_id"],
                    "status": "queued",
                    "created_at": now,
                }
            )
            deliveries.append(
                {
                    "kind": SEND_TO_PROVIDER,
                    "channel_id": channel.id,
                    "message_id": message_id,
                    "ordering_key": f"provider:{thread['id']}",
                    "destination": destination,
                    "idempotency_key": message_id,
                    "payload": {},
                    "status": "pending",
                    "attempts": 0,
                    "budget_from_attempt": 0,
                    "budget_from": now,
                    "replays": 0,
                    "next_attempt_at": now,
                    "created_at": now,
                    "updated_at": now,
                }
            )
    async with session_scope(runtime.sessions) as session:
        await ensure_destinations(session, {destination})
        await session.execute(insert(Thread), thread_rows)
        for start in range(0, len(messages), 2000):
            await session.execute(insert(Message), messages[start : start + 2000])
            await session.execute(insert(Delivery), deliveries[start : start + 2000])
    return [m["id"] for m in messages]


@dataclass(frozen=True)
class Platform:
    """A fake platform running in its own process, and the webhook channel that leads to it."""

    url: str
    secret: str
    integration: Integration
    channel: Channel
    client_secret: str


async def start_platform(started: list[Live], tmp: Path, runtime: Runtime) -> Platform:
    secret = generate_secret()
    url = start_provider(started, tmp, secret)
    integration, channel, client_secret = await set_up_channel(runtime, url, secret)
    return Platform(url, secret, integration, channel, client_secret)
