"""Our own messages, echoed back by a platform, are never taken for the customer's: not stored, not
created in CXone, and counted as echoes in the webhook's answer."""

from __future__ import annotations

import json

from app.models import Message
from tests.conftest import Stack, Wired, reply, rows, webhook_channel
from tests.fakes.provider import FakeProvider

CUSTOMER_ID = "+15550100"


def inbound_creates(stack: Stack) -> int:
    return len(stack.simulator.calls_to(r"/channels/.+/messages$", method="POST", direction="in"))


async def post(stack: Stack, channel_id: str, provider: FakeProvider, body: bytes) -> dict[str, int]:
    answer = await stack.relay.post(
        f"/webhooks/webhook/{channel_id}", content=body, headers=provider.signed_headers(body)
    )
    assert answer.status_code == 200, answer.text
    await stack.settle()
    counts: dict[str, int] = answer.json()
    return counts


async def test_an_echo_of_our_reply_is_not_ingested(
    stack: Stack, wired: Wired, admin_headers: dict[str, str]
) -> None:
    channel_id, provider = await webhook_channel(stack, admin_headers, wired)
    sent = await reply(stack, wired, channel_id, "Your order has shipped")
    assert sent.status_code == 200
    await stack.settle()
    [delivery] = provider.deliveries
    our_id = sent.json()["message"]["idOnExternalPlatform"]
    before = inbound_creates(stack)

    by_provider_id = FakeProvider.message_event(delivery.provider_id, CUSTOMER_ID, "Your order has shipped")
    by_our_id = FakeProvider.message_event(our_id, CUSTOMER_ID, "Your order has shipped")
    assert await post(stack, channel_id, provider, by_provider_id) == {
        "messages": 0,
        "duplicates": 0,
        "echoes": 1,
        "other_events": 0,
    }
    assert (await post(stack, channel_id, provider, by_our_id))["echoes"] == 1
    assert [m.direction for m in await rows(stack, Message)] == ["outbound"]
    assert inbound_creates(stack) == before


async def test_a_message_the_platform_marks_as_an_echo_is_not_ingested(
    stack: Stack, wired: Wired, admin_headers: dict[str, str]
) -> None:
    channel_id, provider = await webhook_channel(stack, admin_headers, wired)
    echo = json.dumps(
        {"type": "message", "id": "evt-9", "from": {"id": CUSTOMER_ID}, "text": "sent by us", "echo": True}
    ).encode()
    real = FakeProvider.message_event("evt-10", CUSTOMER_ID, "sent by the customer")
    batch = b"[" + echo + b"," + real + b"]"
    assert await post(stack, channel_id, provider, batch) == {
        "messages": 1,
        "duplicates": 0,
        "echoes": 1,
        "other_events": 0,
    }
    [message] = await rows(stack, Message)
    assert message.text == "sent by the customer"
    assert inbound_creates(stack) == 1
