"""A customer who writes STOP is sent nothing more from the integration (their message still reaches the
agent) until they write START; CXone's recipient check says so before a proactive send."""

from __future__ import annotations

from sqlalchemy import select

from app.models import Delivery, Message, Suppression
from tests.conftest import Stack, Wired, all_delivered, box_headers, eventually, reply, rows, webhook_channel
from tests.fakes.provider import FakeProvider

CUSTOMER_ID = "+15550100"


async def customer_says(
    stack: Stack, channel_id: str, provider: FakeProvider, event_id: str, text: str
) -> None:
    body = FakeProvider.message_event(event_id, CUSTOMER_ID, text)
    answer = await stack.relay.post(
        f"/webhooks/webhook/{channel_id}", content=body, headers=provider.signed_headers(body)
    )
    assert answer.status_code == 200, answer.text
    await stack.settle()


async def test_stop_suppresses_replies_until_start(
    stack: Stack, wired: Wired, admin_headers: dict[str, str]
) -> None:
    channel_id, provider = await webhook_channel(stack, admin_headers, wired)
    await customer_says(stack, channel_id, provider, "evt-1", " Arrêt! ")
    [suppression] = await rows(stack, Suppression)
    assert (suppression.address, suppression.keyword) == (CUSTOMER_ID, "ARRET")
    created = stack.simulator.calls_to(r"/channels/.+/messages$", method="POST", direction="in")
    assert len(created) == 1  # the agent still sees the customer's STOP

    refused = await reply(stack, wired, channel_id, "Are you sure?")
    assert refused.status_code == 400
    assert refused.json()["errorCode"] == "outboundValidationFailed"
    assert "opted out" in refused.json()["displayErrorMessage"]
    assert provider.attempts == []
    assert [m.direction for m in await rows(stack, Message)] == ["inbound"]  # nothing half-stored

    validation = await stack.relay.post(
        f"/integration/box/1.0/channel/{channel_id}/recipients/validation",
        headers=await box_headers(stack, wired),
        json={"endUserRecipients": [{"idOnExternalPlatform": CUSTOMER_ID}]},
    )
    assert validation.status_code == 400
    assert validation.json()["errors"][0]["path"] == ["endUserRecipients", 0, "idOnExternalPlatform"]

    await customer_says(stack, channel_id, provider, "evt-2", "start")
    assert await rows(stack, Suppression) == []
    welcome_back = await reply(stack, wired, channel_id, "Welcome back")
    assert welcome_back.status_code == 200
    await stack.settle()
    assert len(provider.deliveries) == 1


async def test_an_opt_out_covers_the_integrations_other_channels(
    stack: Stack, wired: Wired, admin_headers: dict[str, str]
) -> None:
    first, first_provider = await webhook_channel(stack, admin_headers, wired, name="first")
    second, second_provider = await webhook_channel(stack, admin_headers, wired, name="second", seed=8)
    await customer_says(stack, first, first_provider, "evt-1", "STOP")
    refused = await reply(stack, wired, second, "Hello from the other channel")
    assert refused.status_code == 400
    assert second_provider.attempts == []


async def test_a_reply_queued_before_stop_is_not_sent_after_it(
    live_wired: tuple[Stack, Wired, dict[str, str]],
) -> None:
    stack, wired, headers = live_wired
    channel_id, provider = await webhook_channel(stack, headers, wired)
    provider.outage(503, seconds=0.5)
    queued = await reply(stack, wired, channel_id, "Special offer")
    assert queued.status_code == 200
    await customer_says(stack, channel_id, provider, "evt-1", "STOP")
    await eventually(lambda: all_delivered(stack))
    assert provider.deliveries == []
    async with stack.runtime.sessions() as session:
        send = await session.scalar(select(Delivery).where(Delivery.kind == "provider.send"))
    assert send is not None
    assert send.status == "dead"
    assert "opted out (STOP)" in (send.last_error or "")
