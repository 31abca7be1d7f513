"""The outbox at work in one process: delivery, classification, retries, dead letters and replay,
breakers, disabled destinations, receipts, idempotency keys, metrics and readiness."""

from __future__ import annotations

import asyncio
import statistics
import time
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from app.main import build_runtime, create_app
from app.models import BoxToken, Delivery, DeliveryAttempt, IdempotencyKey, Message
from app.models.base import utcnow
from app.services import relay
from app.services.api_keys import Role
from tests.conftest import (
    CUSTOMER,
    FAST_RETRIES,
    Stack,
    Wired,
    all_delivered,
    box_headers,
    eventually,
    make_settings,
    new_api_key,
    reply,
    rows,
    running_stack,
    webhook_channel,
    wire_integration,
)
from tests.fakes.provider import FakeProvider


async def test_a_reply_is_delivered_to_the_platform_once_with_its_idempotency_key(
    stack: Stack, wired: Wired, admin_headers: dict[str, str]
) -> None:
    channel_id, provider = await webhook_channel(stack, admin_headers, wired)
    answer = await reply(stack, wired, channel_id, "Your order shipped")
    assert answer.status_code == 200, answer.text
    await stack.settle()
    message_id = answer.json()["message"]["idOnExternalPlatform"]
    assert provider.delivered_ids() == [message_id]
    assert provider.deliveries[0].text == "Your order shipped"
    [message] = await rows(stack, Message, Message.id == message_id)
    assert (message.status, message.provider_message_id) == ("sent", provider.deliveries[0].provider_id)
    [delivery] = await rows(stack, Delivery, Delivery.message_id == message_id)
    assert (delivery.status, delivery.attempts, delivery.idempotency_key) == ("delivered", 1, message_id)


async def test_nothing_is_stored_or_sent_when_the_transaction_fails(
    stack: Stack, wired: Wired, admin_headers: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    channel_id, provider = await webhook_channel(stack, admin_headers, wired)

    async def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError("the outbox insert failed")

    monkeypatch.setattr(relay, "enqueue", broken)
    answer = await reply(stack, wired, channel_id, "never")
    assert answer.status_code == 500
    assert answer.json()["code"] == "internal_error"
    await stack.settle()
    assert await rows(stack, Message) == []
    assert await rows(stack, Delivery) == []
    assert provider.attempts == []


async def test_a_permanent_error_is_answered_to_cxone_at_once_and_replay_delivers_once(
    stack: Stack, wired: Wired, admin_headers: dict[str, str]
) -> None:
    channel_id, provider = await webhook_channel(stack, admin_headers, wired)
    provider.fail_next(400)
    answer = await reply(stack, wired, channel_id, "bad request at the platform")
    assert answer.status_code == 400
    assert answer.json()["errorCode"] == "outboundDeliveryFailed"
    await stack.settle()
    [delivery] = await rows(stack, Delivery, Delivery.kind == "provider.send")
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("dead", 1, 400)
    dead = await stack.relay.get("/api/v1/deliveries", params={"status": "dead"}, headers=admin_headers)
    assert [d["id"] for d in dead.json()["items"]] == [delivery.id]

    replayed = await stack.relay.post(f"/api/v1/deliveries/{delivery.id}/replay", headers=admin_headers)
    assert replayed.status_code == 200
    await stack.runtime.worker.deliver_inline([delivery.id], 5)
    await stack.settle()
    assert provider.delivered_ids() == [delivery.idempotency_key]
    assert [a.status for a in provider.attempts] == [400, 200]
    detail = (await stack.relay.get(f"/api/v1/deliveries/{delivery.id}", headers=admin_headers)).json()
    assert detail["status"] == "delivered"
    assert [a["outcome"] for a in detail["attempt_log"]] == ["dead", "delivered"]
    again = await stack.relay.post(f"/api/v1/deliveries/{delivery.id}/replay", headers=admin_headers)
    assert again.status_code == 409


async def test_transient_failures_are_retried_no_earlier_than_retry_after(
    live_wired: tuple[Stack, Wired, dict[str, str]],
) -> None:
    stack, wired, headers = live_wired
    channel_id, provider = await webhook_channel(stack, headers, wired)
    provider.outage(503, seconds=1.5, retry_after=1)
    for n in range(3):
        answer = await reply(
            stack, wired, channel_id, f"m{n}", recipient={"idOnExternalPlatform": f"user-{n}"}
        )
        assert answer.status_code == 200
    await eventually(lambda: all_delivered(stack))
    assert len(provider.delivered_ids()) == 3
    by_id: dict[str, list[float]] = {}
    for attempt in provider.attempts:
        assert attempt.webhook_id is not None
        by_id.setdefault(attempt.webhook_id, []).append(attempt.monotonic)
    gaps = [b - a for times in by_id.values() for a, b in zip(times, times[1:], strict=False)]
    assert gaps
    assert min(gaps) >= 0.99


async def test_backoff_is_jittered(database_url: str) -> None:
    # A base large enough that the jitter, not the worker's own latency, decides when a retry leaves.
    settings = make_settings(
        database_url, **{**FAST_RETRIES, "retry_base_seconds": 0.5, "retry_cap_seconds": 1}
    )
    async with running_stack(settings) as stack:
        headers = {"Authorization": f"Bearer {await new_api_key(stack.runtime, Role.admin)}"}
        wired = await wire_integration(stack, headers)
        channel_id, provider = await webhook_channel(stack, headers, wired)
        provider.fail_next(503, times=8)
        for n in range(8):
            await reply(stack, wired, channel_id, f"j{n}", recipient={"idOnExternalPlatform": f"user-{n}"})
        await eventually(lambda: all_delivered(stack))
        attempts = await rows(stack, DeliveryAttempt)
        starts: dict[int, list[float]] = {}
        for attempt in attempts:
            starts.setdefault(attempt.delivery_id, []).append(attempt.started_at.timestamp())
        second_gaps = [times[1] - times[0] for times in starts.values() if len(times) > 1]
        assert len(second_gaps) >= 5
        assert statistics.pstdev(second_gaps) / statistics.mean(second_gaps) > 0.2


async def test_an_exhausted_agent_reply_is_marked_failed_in_cxone(
    database_url: str,
) -> None:
    settings = make_settings(database_url, **{**FAST_RETRIES, "retry_max_attempts": 2})
    async with running_stack(settings) as stack:
        headers = {"Authorization": f"Bearer {await new_api_key(stack.runtime, Role.admin)}"}
        wired = await wire_integration(stack, headers)
        channel_id, provider = await webhook_channel(stack, headers, wired)
        provider.outage(503, seconds=60)
        result = await stack.simulator.send_agent_reply(
            channel_id=channel_id, text="lost?", recipients=[CUSTOMER]
        )
        assert result.status == 200
        await eventually(lambda: all_delivered(stack))
        [delivery] = await rows(stack, Delivery, Delivery.kind == "provider.send")
        assert (delivery.status, delivery.attempts) == ("dead", 2)
        assert result.message is not None
        assert result.message.status == "failed"
        assert "503" in (result.message.status_history[-1].get("reason") or "")


async def test_a_410_disables_the_destination_until_it_is_enabled(
    stack: Stack, wired: Wired, admin_headers: dict[str, str]
) -> None:
    channel_id, provider = await webhook_channel(stack, admin_headers, wired)
    provider.fail_next(410)
    assert (await reply(stack, wired, channel_id, "gone")).status_code == 400
    await stack.settle()
    destinations = (await stack.relay.get("/api/v1/destinations", headers=admin_headers)).json()["items"]
    [webhook] = [d for d in destinations if d["key"].startswith("webhook:")]
    assert webhook["disabled_at"] is not None
    second = await reply(stack, wired, channel_id, "held back", recipient={"idOnExternalPlatform": "other"})
    assert second.status_code == 200
    await stack.settle()
    assert len(provider.attempts) == 1
    enabled = await stack.relay.patch(
        f"/api/v1/destinations/{webhook['key']}", json={"enabled": True}, headers=admin_headers
    )
    assert enabled.json()["disabled_at"] is None
    assert await stack.runtime.worker.queue.claim("test", 10)


async def test_a_failing_destination_opens_its_breaker_and_a_probe_closes_it(database_url: str) -> None:
    settings = make_settings(
        database_url, **{**FAST_RETRIES, "breaker_failure_threshold": 3, "breaker_cooldown_seconds": 1.0}
    )
    async with running_stack(settings) as stack:
        headers = {"Authorization": f"Bearer {await new_api_key(stack.runtime, Role.admin)}"}
        wired = await wire_integration(stack, headers)
        channel_id, provider = await webhook_channel(stack, headers, wired)
        provider.outage(503, seconds=2.0)
        for n in range(6):
            await reply(stack, wired, channel_id, f"b{n}", recipient={"idOnExternalPlatform": f"user-{n}"})

        async def breaker(state: str) -> bool:
            items = (await stack.relay.get("/api/v1/destinations", headers=headers)).json()["items"]
            return any(d["key"].startswith("webhook:") and d["breaker_state"] == state for d in items)

        await eventually(lambda: breaker("open"), within=5)
        opened_attempts = len(provider.attempts)
        await asyncio.sleep(0.3)
        assert len(provider.attempts) == opened_attempts  # open: nothing is sent during the cool-down
        await eventually(lambda: all_delivered(stack))
        assert await breaker("closed")
        assert len(provider.delivered_ids()) == 6


async def test_a_receipt_moves_the_message_on_and_reaches_cxone(
    stack: Stack, wired: Wired, admin_headers: dict[str, str]
) -> None:
    channel_id, provider = await webhook_channel(stack, admin_headers, wired)
    result = await stack.simulator.send_agent_reply(channel_id=channel_id, text="Hi", recipients=[CUSTOMER])
    await stack.settle()
    message_id = result.body["message"]["idOnExternalPlatform"]
    for event_id in ("r1", "r1", "r2"):
        body = FakeProvider.status_event(event_id, message_id, "delivered" if event_id == "r1" else "read")
        answer = await stack.relay.post(
            f"/webhooks/webhook/{channel_id}", content=body, headers=provider.signed_headers(body)
        )
        assert answer.status_code == 200
        # No background worker here: let each status reach CXone before the next one is queued behind it.
        await stack.settle()
    [message] = await rows(stack, Message, Message.id == message_id)
    assert message.status == "seen"
    assert result.message is not None
    assert [h["status"] for h in result.message.status_history] == ["delivered", "seen"]


async def test_the_same_signed_event_fifty_times_at_once_is_stored_once(
    stack: Stack, wired: Wired, admin_headers: dict[str, str]
) -> None:
    channel_id, provider = await webhook_channel(stack, admin_headers, wired)
    body = FakeProvider.message_event("evt-storm", "+15550100", "Hello?")
    headers = provider.signed_headers(body)
    answers = await asyncio.gather(
        *(
            stack.relay.post(f"/webhooks/webhook/{channel_id}", content=body, headers=headers)
            for _ in range(50)
        )
    )
    assert sorted({a.status_code for a in answers}) == [200]
    assert sum(a.json()["messages"] for a in answers) == 1
    await stack.settle()
    assert len(await rows(stack, Message)) == 1
    assert len(stack.simulator.calls_to(r"/channels/.+/messages$", method="POST", direction="in")) == 1


@pytest.mark.parametrize(
    "tamper",
    ["flip", "stale", "garbage"],
)
async def test_a_bad_signature_is_401_and_writes_nothing(
    stack: Stack, wired: Wired, admin_headers: dict[str, str], tamper: str
) -> None:
    channel_id, provider = await webhook_channel(stack, admin_headers, wired)
    body = FakeProvider.message_event("evt-1", "+15550100", "Hello")
    headers = provider.signed_headers(body, timestamp=int(time.time()) - 400 if tamper == "stale" else None)
    if tamper == "flip":
        body = body.replace(b"Hello", b"Hellp")
    if tamper == "garbage":
        headers["webhook-signature"] = "v1,@@@"
    answer = await stack.relay.post(f"/webhooks/webhook/{channel_id}", content=body, headers=headers)
    assert answer.status_code == 401
    assert answer.json()["code"] == "invalid_signature"
    assert await rows(stack, Message) == []


async def test_a_repeated_cxone_request_creates_one_message(
    stack: Stack, wired: Wired, admin_headers: dict[str, str]
) -> None:
    channel_id, provider = await webhook_channel(stack, admin_headers, wired)
    first = await reply(stack, wired, channel_id, "once", headers={"Idempotency-Key": "cx-1"})
    second = await reply(stack, wired, channel_id, "once", headers={"Idempotency-Key": "cx-1"})
    body_key = await reply(stack, wired, channel_id, "twice", id="cx-2")
    body_key_again = await reply(stack, wired, channel_id, "twice", id="cx-2")
    await stack.settle()
    assert first.json()["message"] == second.json()["message"]
    assert body_key.json()["message"] == body_key_again.json()["message"]
    assert len(await rows(stack, Message)) == 2
    assert len(provider.delivered_ids()) == 2


async def test_idempotency_key_on_admin_posts(
    stack: Stack, wired: Wired, admin_headers: dict[str, str]
) -> None:
    body = {"integration_id": wired.integration["id"], "name": "Second", "adapter": "loopback"}
    headers = {**admin_headers, "Idempotency-Key": "create-second"}
    first = await stack.relay.post("/api/v1/channels", json=body, headers=headers)
    again = await stack.relay.post("/api/v1/channels", json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    other = await stack.relay.post("/api/v1/channels", json={**body, "name": "Third"}, headers=headers)
    assert other.status_code == 409
    assert other.json()["code"] == "idempotency_key_reused"
    channels = (await stack.relay.get("/api/v1/channels", headers=admin_headers)).json()["items"]
    assert [c["name"] for c in channels].count("Second") == 1


async def test_an_idempotent_integration_create_replays_its_secret_and_stores_it_sealed(
    stack: Stack, admin_headers: dict[str, str]
) -> None:
    body = {"name": "Acme", "cxone": {"bearer_token": "t0k3n-value"}}
    headers = {**admin_headers, "Idempotency-Key": "acme-1"}
    first = await stack.relay.post("/api/v1/integrations", json=body, headers=headers)
    again = await stack.relay.post("/api/v1/integrations", json=body, headers=headers)
    assert again.json()["cxone_form"]["Client Secret"] == first.json()["cxone_form"]["Client Secret"]
    [stored] = await rows(stack, IdempotencyKey)
    assert first.json()["cxone_form"]["Client Secret"] not in (stored.response_sealed or "")


async def test_metrics_show_the_queue_and_readyz_the_worker(
    live_wired: tuple[Stack, Wired, dict[str, str]],
) -> None:
    stack, wired, headers = live_wired
    channel_id, provider = await webhook_channel(stack, headers, wired)
    provider.fail_next(400)
    await reply(stack, wired, channel_id, "dead one")
    await reply(stack, wired, channel_id, "fine", recipient={"idOnExternalPlatform": "u2"})
    await eventually(lambda: all_delivered(stack))
    metrics = (await stack.relay.get("/metrics")).text
    assert 'byoc_outbox_rows{kind="provider.send",status="dead"} 1.0' in metrics
    assert "byoc_dead_letters 1.0" in metrics
    assert 'byoc_delivery_attempts_total{kind="provider.send",outcome="delivered"}' in metrics
    assert "byoc_breaker_state{destination=" in metrics
    ready = await stack.relay.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "database": "up", "worker": "up"}


async def test_readyz_is_503_when_the_worker_is_not_running(stack: Stack) -> None:
    assert (await stack.relay.get("/readyz")).status_code == 200  # this stack runs no worker here
    stack.runtime.settings = stack.runtime.settings.model_copy(update={"worker": True})
    answer = await stack.relay.get("/readyz")
    assert answer.status_code == 503
    assert answer.json()["worker"] == "down"


async def test_housekeeping_forgets_old_idempotency_keys_and_expired_tokens(
    stack: Stack, wired: Wired, admin_headers: dict[str, str]
) -> None:
    await box_headers(stack, wired)
    async with stack.runtime.sessions() as session, session.begin():
        session.add(
            IdempotencyKey(
                scope="admin-api", key="old", request_hash="x", created_at=utcnow() - timedelta(days=2)
            )
        )
        session.add(IdempotencyKey(scope="admin-api", key="new", request_hash="x"))
        await session.execute(update(BoxToken).values(expires_at=utcnow() - timedelta(seconds=1)))
    await stack.runtime.housekeeping()
    assert [k.key for k in await rows(stack, IdempotencyKey)] == ["new"]
    assert await rows(stack, BoxToken) == []


async def test_an_unreachable_database_is_503_not_500(database_url: str) -> None:
    settings = make_settings("postgresql+asyncpg://postgres@127.0.0.1:1/nowhere")
    app = create_app(settings, runtime=build_runtime(settings))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://relay.test") as client:
        ready = await client.get("/readyz")
        listed = await client.get("/api/v1/channels", headers={"Authorization": "Bearer byoc_x_y"})
        token = await client.post(
            "/integration/box/1.0/token",
            json={"grant_type": "client_credentials", "client_id": "c", "client_secret": "s"},
        )
    await app.state.runtime.close()
    assert ready.status_code == 503
    assert (listed.status_code, listed.json()["code"]) == (503, "database_unavailable")
    assert (token.status_code, token.headers["retry-after"]) == (503, "5")
