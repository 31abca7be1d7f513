"""Crashes and shutdowns of real processes: nothing lost, nothing doubled.

The fake platform dedupes on `webhook-id` (our message id), as a real one should; "0 duplicate effects"
means every message id was delivered exactly once there, while raw re-sends after a crash are counted
and bounded by what was in flight."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import ColumnElement, func, select

from app.main import build_runtime
from app.models import Delivery, DeliveryAttempt, Destination, Message, StoredFile
from app.runtime import Runtime
from app.schemas.deliveries import DestinationUpdate
from app.services.deliveries import update_destination
from tests.conftest import database_kind, make_settings
from tests.fakes.provider import FakeProvider
from tests.faults.live import (
    free_port,
    process_env,
    processes,
    provider_deliveries,
    provider_stats,
    seed_replies,
    seed_replies_fast,
    start_platform,
    start_relay,
    start_worker,
    wait_until,
)

postgres_only = pytest.mark.skipif(database_kind() != "postgres", reason="several workers need PostgreSQL")


@pytest.fixture
async def runtime(database_url: str) -> AsyncIterator[Runtime]:
    """In-process access to the same database, to seed work and to read the outcome."""
    runtime = build_runtime(make_settings(database_url))
    yield runtime
    await runtime.close()


async def count(runtime: Runtime, *where: ColumnElement[bool]) -> int:
    async with runtime.reads() as session:
        return int(await session.scalar(select(func.count()).select_from(Delivery).where(*where)) or 0)


async def settled(runtime: Runtime, where: ColumnElement[bool], expected: int, *, within: float) -> None:
    """Poll the database until `expected` rows match."""
    deadline = time.monotonic() + within
    while (found := await count(runtime, where)) != expected:
        assert time.monotonic() < deadline, f"{found} rows match, {expected} expected"
        await asyncio.sleep(0.1)


async def wait(check: object, *, within: float, what: str) -> None:
    await asyncio.to_thread(wait_until, check, within=within, what=what)


def behave(provider_url: str, command: dict[str, object]) -> None:
    httpx.post(f"{provider_url}/_fake/behaviour", json=command, timeout=5).raise_for_status()


async def test_kill_9_of_a_worker_mid_run_loses_and_doubles_nothing(
    runtime: Runtime, database_url: str, tmp_path: Path
) -> None:
    total, concurrency = 10_000, 32
    with processes() as started:
        platform = await start_platform(started, tmp_path, runtime)
        provider, integration, channel = platform.url, platform.integration, platform.channel
        ids = await seed_replies_fast(runtime, integration, channel, threads=100, per_thread=total // 100)
        env = process_env(database_url, worker_concurrency=concurrency)
        worker = start_worker(started, tmp_path, env)
        await wait(
            lambda: provider_stats(provider)["deliveries"] >= total // 2, within=180, what="half delivered"
        )
        worker.kill()
        start_worker(started, tmp_path, env)
        await wait(lambda: provider_stats(provider)["deliveries"] >= total, within=240, what="all delivered")
        await settled(runtime, Delivery.status != "delivered", 0, within=30)
        delivered = [d["webhook_id"] for d in provider_deliveries(provider)]
        stats = provider_stats(provider)
    assert len(delivered) == total  # nothing lost
    assert sorted(delivered) == sorted(ids)  # each message exactly once: no duplicate effect
    assert stats["duplicates"] <= concurrency  # raw re-sends: at most what was in flight at the kill


async def test_a_crash_after_commit_before_the_answer_creates_no_duplicate(
    runtime: Runtime, database_url: str, tmp_path: Path
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with processes() as started:
        platform = await start_platform(started, tmp_path, runtime)
        provider, integration, channel = platform.url, platform.integration, platform.channel
        env = process_env(database_url, public_url=base)

        relay = start_relay(started, tmp_path, {**env, "BYOC_CRASH_AT": "box.after_commit"}, port=port)
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            token = (
                await http.post(
                    "/integration/box/1.0/token",
                    json={
                        "grant_type": "client_credentials",
                        "client_id": integration.box_client_id,
                        "client_secret": platform.client_secret,
                    },
                )
            ).json()["access_token"]
            path = f"/integration/box/2.0/channel/{channel.id}/outbound"
            headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": "cxone-send-1"}
            body = {
                "messageContent": {"type": "TEXT", "payload": {"text": "crash-proof"}},
                "endUserRecipients": [{"idOnExternalPlatform": "+15550100"}],
            }
            with pytest.raises(httpx.TransportError):
                await http.post(path, json=body, headers=headers)
            assert relay.process.wait(timeout=10) == 137
            relay = start_relay(started, tmp_path, env, port=port)
            retried = await http.post(path, json=body, headers=headers)
            assert retried.status_code == 200, retried.text
            await wait(lambda: provider_stats(provider)["deliveries"] >= 1, within=30, what="reply delivered")

            relay.kill()
            relay = start_relay(
                started, tmp_path, {**env, "BYOC_CRASH_AT": "inbound.after_commit"}, port=port
            )
            event = FakeProvider.message_event("evt-crash", "+15550100", "are you there?")
            signed = FakeProvider(platform.secret).signed_headers(event)
            with pytest.raises(httpx.TransportError):
                await http.post(f"/webhooks/webhook/{channel.id}", content=event, headers=signed)
            relay.process.wait(timeout=10)
            start_relay(started, tmp_path, env, port=port)
            again = await http.post(f"/webhooks/webhook/{channel.id}", content=event, headers=signed)
        assert again.status_code == 200, again.text
        assert again.json()["duplicates"] == 1
        await asyncio.sleep(0.5)
        stats = provider_stats(provider)
    async with runtime.sessions() as session:
        directions = list(await session.scalars(select(Message.direction).order_by(Message.created_at)))
    assert directions == ["outbound", "inbound"]  # one of each, however the crashes fell
    assert stats["deliveries"] == 1


async def test_sigterm_lets_in_flight_work_finish_within_the_grace_period(
    runtime: Runtime, database_url: str, tmp_path: Path
) -> None:
    with processes() as started:
        platform = await start_platform(started, tmp_path, runtime)
        provider, integration, channel = platform.url, platform.integration, platform.channel
        behave(provider, {"latency": 1.5})
        await seed_replies(runtime, integration, channel.id, threads=20, per_thread=1)
        worker = start_worker(started, tmp_path, process_env(database_url, shutdown_grace_seconds=10))
        await wait(lambda: provider_stats(provider)["attempts"] >= 20, within=30, what="all in flight")
        took = worker.terminate()
        assert worker.process.returncode == 0, worker.output()
        assert took < 10
        assert provider_stats(provider)["deliveries"] == 20
    assert await count(runtime, Delivery.status == "delivered") == 20
    assert await count(runtime, Delivery.status == "in_flight") == 0


async def test_sigterm_past_the_grace_period_hands_work_back_for_the_next_worker(
    runtime: Runtime, database_url: str, tmp_path: Path
) -> None:
    with processes() as started:
        platform = await start_platform(started, tmp_path, runtime)
        provider, integration, channel = platform.url, platform.integration, platform.channel
        behave(provider, {"latency": 30})
        ids = await seed_replies(runtime, integration, channel.id, threads=10, per_thread=1)
        env = process_env(database_url, shutdown_grace_seconds=1, lease_seconds=60)
        worker = start_worker(started, tmp_path, env)
        await wait(lambda: provider_stats(provider)["attempts"] >= 10, within=30, what="all in flight")
        took = worker.terminate()
        assert took < 10, worker.output()
        assert await count(runtime, Delivery.status == "in_flight") == 0  # released, not left to a 60 s lease
        behave(provider, {"latency": 0})
        start_worker(started, tmp_path, env)
        await settled(runtime, Delivery.status == "delivered", 10, within=30)
        delivered = [d["webhook_id"] for d in provider_deliveries(provider)]
    assert sorted(delivered) == sorted(ids)


@postgres_only
async def test_four_workers_claim_each_job_once_per_attempt(
    runtime: Runtime, database_url: str, tmp_path: Path
) -> None:
    total = 2000
    with processes() as started:
        platform = await start_platform(started, tmp_path, runtime)
        provider, integration, channel = platform.url, platform.integration, platform.channel
        ids = await seed_replies_fast(runtime, integration, channel, threads=total, per_thread=1)
        env = process_env(database_url, worker_concurrency=16)
        for _ in range(4):
            start_worker(started, tmp_path, env)
        await settled(runtime, Delivery.status == "delivered", total, within=120)
        stats = provider_stats(provider)
    async with runtime.sessions() as session:
        claims = (await session.execute(select(DeliveryAttempt.delivery_id, DeliveryAttempt.worker))).all()
        attempts = list(await session.scalars(select(Delivery.attempts)))
    assert len(claims) == total  # one claim per job: no job was claimed twice
    assert len({delivery_id for delivery_id, _ in claims}) == total
    assert set(attempts) == {1}
    assert len({worker for _, worker in claims}) == 4  # all four took part
    assert stats["deliveries"] == len(ids)
    assert stats["duplicates"] == 0


@postgres_only
async def test_a_rate_limit_holds_across_four_workers(
    runtime: Runtime, database_url: str, tmp_path: Path
) -> None:
    rate, total = 10, 45
    with processes() as started:
        platform = await start_platform(started, tmp_path, runtime)
        provider, integration, channel = platform.url, platform.integration, platform.channel
        await seed_replies(runtime, integration, channel.id, threads=total, per_thread=1)
        async with runtime.sessions() as session, session.begin():
            [key] = list(await session.scalars(select(Destination.key)))
            await update_destination(session, key, DestinationUpdate(rate_per_second=rate, burst=1))
        env = process_env(database_url, worker_concurrency=16)
        for _ in range(4):
            start_worker(started, tmp_path, env)
        await wait(lambda: provider_stats(provider)["deliveries"] >= total, within=60, what="all delivered")
        arrivals = sorted(d["at"] for d in provider_deliveries(provider))
    async with runtime.sessions() as session:
        claims = sorted(a.timestamp() for a in await session.scalars(select(DeliveryAttempt.started_at)))
    budget = rate + 1  # the rate, plus the burst of one token that may be saved up
    for times in (claims, arrivals):
        busiest = max(sum(1 for t in times if start <= t < start + 1.0) for start in times)
        assert busiest <= budget + (1 if times is arrivals else 0), json.dumps(times)
    assert claims[-1] - claims[0] >= (total - 1 - 1) / rate * 0.95  # paced, not bursted


async def test_transient_failures_never_reorder_a_thread(
    runtime: Runtime, database_url: str, tmp_path: Path
) -> None:
    threads, per_thread = 100, 50
    with processes() as started:
        platform = await start_platform(started, tmp_path, runtime)
        provider, integration, channel = platform.url, platform.integration, platform.channel
        await seed_replies_fast(runtime, integration, channel, threads=threads, per_thread=per_thread)
        behave(provider, {"fail_ratio": {"ratio": 0.2, "status": 503}})
        start_worker(
            started, tmp_path, process_env(database_url, worker_concurrency=32, retry_max_attempts=50)
        )
        await settled(runtime, Delivery.status == "delivered", threads * per_thread, within=300)
        deliveries = provider_deliveries(provider)
        stats = provider_stats(provider)
    assert stats["attempts"] > threads * per_thread  # failures did happen, and were retried
    order: dict[str, list[int]] = {}
    for delivery in deliveries:
        order.setdefault(delivery["thread_id"], []).append(int(delivery["text"].split(":")[1]))
    assert len(order) == threads
    assert all(sequence == list(range(per_thread)) for sequence in order.values())  # 0 inversions


async def test_a_crash_between_the_send_and_its_record_is_resent_without_a_second_effect(
    runtime: Runtime, database_url: str, tmp_path: Path
) -> None:
    with processes() as started:
        platform = await start_platform(started, tmp_path, runtime)
        ids = await seed_replies(runtime, platform.integration, platform.channel.id, threads=5, per_thread=1)
        env = process_env(database_url)
        crashing = start_worker(started, tmp_path, {**env, "BYOC_CRASH_AT": "worker.after_perform"})
        assert crashing.process.wait(timeout=30) == 137  # died after sending, before recording
        assert await count(runtime, Delivery.status == "delivered") == 0
        start_worker(started, tmp_path, env)
        await settled(runtime, Delivery.status == "delivered", len(ids), within=30)
        delivered = [d["webhook_id"] for d in provider_deliveries(platform.url)]
        stats = provider_stats(platform.url)
    assert sorted(delivered) == sorted(ids)  # each exactly once at the platform
    assert stats["duplicates"] >= 1  # the resend happened, and was recognised by its idempotency key


async def test_a_crash_after_an_agents_file_is_kept_sends_it_without_fetching_it_again(
    runtime: Runtime, database_url: str, tmp_path: Path
) -> None:
    with processes() as started:
        platform = await start_platform(started, tmp_path, runtime)
        async with httpx.AsyncClient() as http:
            served = {"file": {"name": "label.pdf", "size": 50_000}}
            assert (await http.post(f"{platform.url}/_fake/behaviour", json=served)).status_code == 200
        attachment = {"url": f"{platform.url}/files/label.pdf", "friendlyName": "label.pdf"}
        ids = await seed_replies(
            runtime,
            platform.integration,
            platform.channel.id,
            threads=1,
            per_thread=1,
            attachments=[attachment],
        )
        env = process_env(database_url)
        crashing = start_worker(started, tmp_path, {**env, "BYOC_CRASH_AT": "attachment.after_keep"})
        assert crashing.process.wait(timeout=30) == 137  # died with the file kept, before sending
        async with runtime.reads() as session:
            assert await session.scalar(select(func.count()).select_from(StoredFile)) == 1
        start_worker(started, tmp_path, env)
        await settled(runtime, Delivery.status == "delivered", len(ids), within=30)
        stats = provider_stats(platform.url)
    assert stats["deliveries"] == 1
    assert stats["file_downloads"] == 1  # the second worker sent the kept bytes' link, not a new fetch
