"""Both directions through the box, driven by the CXone simulator acting as CXone."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import func, select

from app.adapters.loopback import LoopbackAdapter
from app.models import Message, Thread
from tests.conftest import Stack, Wired, box_headers, rows, wire_integration

ISO_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
CUSTOMER = {"idOnExternalPlatform": "+15550100", "name": "Ada Lovelace"}


def loopback(stack: Stack) -> LoopbackAdapter:
    adapter = stack.runtime.registry.get("loopback")
    assert isinstance(adapter, LoopbackAdapter)
    return adapter


async def count(stack: Stack, model: type[Message] | type[Thread]) -> int:
    async with stack.runtime.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def customer_writes(
    stack: Stack, headers: dict[str, str], channel_id: str, **body: Any
) -> dict[str, Any]:
    response = await stack.relay.post(
        f"/api/v1/loopback/{channel_id}/customer-messages", headers=headers, json=body
    )
    assert response.status_code == 202, response.text
    result: dict[str, Any] = response.json()
    return result


async def test_cxone_gets_401_then_a_token_then_retries(stack: Stack, wired: Wired) -> None:
    result = await stack.simulator.send_agent_reply(
        channel_id=wired.channel_id, text="Hello from the agent", recipients=[CUSTOMER]
    )
    assert result.ok, result
    box_calls = [c for c in stack.simulator.calls if c.direction == "out"]
    assert [(c.path.rsplit("/", 1)[-1], c.status) for c in box_calls] == [
        ("outbound", 401),
        ("token", 200),
        ("outbound", 200),
    ]
    assert box_calls[0].authorization_present is False
    assert box_calls[1].json["grant_type"] == "client_credentials"
    assert box_calls[2].authorization_present is True


async def test_agent_reply_reaches_the_customer_and_the_answer_reaches_cxone_on_the_same_thread(
    stack: Stack, wired: Wired, admin_headers: dict[str, str]
) -> None:
    reply = await stack.simulator.send_agent_reply(
        channel_id=wired.channel_id, text="Your parcel ships today", recipients=[CUSTOMER]
    )
    assert reply.status == 200
    body = reply.body
    thread_id = body["thread"]["idOnExternalPlatform"]
    assert ISO_MS.match(body["message"]["createdAtWithMilliseconds"])
    assert body["recipients"] == [CUSTOMER]
    await stack.settle()

    received = loopback(stack).inbox(wired.channel_id)
    assert [(m.text, m.recipient_id, m.thread_id) for m in received] == [
        ("Your parcel ships today", "+15550100", thread_id)
    ]
    assert received[0].message_id == body["message"]["idOnExternalPlatform"]

    answer = await customer_writes(
        stack, admin_headers, wired.channel_id, **{"from": "+15550100", "text": "Thanks!"}
    )
    assert answer["thread_id"] == thread_id
    assert answer["status"] == "relayed"
    await stack.settle()

    conversation = stack.simulator.thread_messages(wired.channel_id, thread_id)
    assert [(m.direction, m.text) for m in conversation] == [
        ("outbound", "Your parcel ships today"),
        ("inbound", "Thanks!"),
    ]
    assert conversation[1].author_end_user_id == "+15550100"
    assert conversation[1].id_on_external_platform == answer["message_id"]

    second = await stack.simulator.send_agent_reply(
        channel_id=wired.channel_id, text="You're welcome", thread_id_on_external_platform=thread_id
    )
    assert second.status == 200
    assert second.body["thread"]["idOnExternalPlatform"] == thread_id
    assert await count(stack, Thread) == 1


async def test_the_conversation_is_readable_through_the_admin_api(
    stack: Stack, wired: Wired, admin_headers: dict[str, str]
) -> None:
    await customer_writes(stack, admin_headers, wired.channel_id, **{"from": "+15550100", "text": "Hi"})
    await stack.settle()
    threads = (
        await stack.relay.get(f"/api/v1/channels/{wired.channel_id}/threads", headers=admin_headers)
    ).json()
    assert len(threads["items"]) == 1
    thread = threads["items"][0]
    assert thread["cxone_thread_id"] == stack.simulator.thread(wired.channel_id, thread["external_id"]).id  # type: ignore[union-attr]
    assert thread["cxone_contact_id"]
    messages = (
        await stack.relay.get(f"/api/v1/threads/{thread['id']}/messages", headers=admin_headers)
    ).json()
    assert [(m["direction"], m["text"], m["status"]) for m in messages["items"]] == [
        ("inbound", "Hi", "relayed")
    ]
    assert messages["items"][0]["cxone_message_id"]


async def test_legacy_reply_path_uses_cxones_thread_id_as_post_id(
    stack: Stack, admin_headers: dict[str, str]
) -> None:
    wired = await wire_integration(stack, admin_headers, use_outbound_api=False)
    first = await customer_writes(
        stack, admin_headers, wired.channel_id, **{"from": "user-7", "text": "Hello?"}
    )
    await stack.settle()
    sim_thread = stack.simulator.thread(wired.channel_id, first["thread_id"])
    assert sim_thread is not None
    reply = await stack.simulator.send_agent_reply(
        channel_id=wired.channel_id,
        text="Hello, how can I help?",
        thread_id_on_external_platform=first["thread_id"],
    )
    assert reply.status == 200, reply.body
    assert set(reply.body) == {"idOnExternalPlatform"}
    assert stack.simulator.calls_to(rf"/1\.0/posts/{sim_thread.id}/messages$", direction="out")
    await stack.settle()
    assert [m.text for m in loopback(stack).inbox(wired.channel_id)] == ["Hello, how can I help?"]


async def test_scripted_customer_answers_by_itself(stack: Stack, admin_headers: dict[str, str]) -> None:
    wired = await wire_integration(stack, admin_headers, channel_config={"auto_reply": "Got it: {text}"})
    reply = await stack.simulator.send_agent_reply(
        channel_id=wired.channel_id, text="Ping", recipients=[CUSTOMER]
    )
    await stack.settle()
    thread_id = reply.body["thread"]["idOnExternalPlatform"]
    # The scripted answer can reach CXone before CXone has recorded the box's answer to the reply.
    assert sorted(
        (m.direction, m.text) for m in stack.simulator.thread_messages(wired.channel_id, thread_id)
    ) == [
        ("inbound", "Got it: Ping"),
        ("outbound", "Ping"),
    ]


async def test_the_same_customer_event_is_stored_once(
    stack: Stack, wired: Wired, admin_headers: dict[str, str]
) -> None:
    first = await customer_writes(
        stack, admin_headers, wired.channel_id, **{"from": "+15550100", "text": "Once", "event_id": "evt-1"}
    )
    again = await customer_writes(
        stack, admin_headers, wired.channel_id, **{"from": "+15550100", "text": "Once", "event_id": "evt-1"}
    )
    await stack.settle()
    assert again["duplicate"] is True
    assert again["message_id"] == first["message_id"]
    assert await count(stack, Message) == 1
    assert len(stack.simulator.calls_to(r"/channels/.+/messages$", method="POST", direction="in")) == 1


async def test_agent_typing_reaches_the_customer(stack: Stack, wired: Wired) -> None:
    reply = await stack.simulator.send_agent_reply(
        channel_id=wired.channel_id, text="Hi", recipients=[CUSTOMER]
    )
    thread_id = reply.body["thread"]["idOnExternalPlatform"]
    typing = await stack.simulator.send_typing(wired.channel_id, thread_id, True)
    assert typing.status == 204
    assert loopback(stack).agent_is_typing(wired.channel_id, "+15550100")
    await stack.simulator.send_typing(wired.channel_id, thread_id, False)
    assert not loopback(stack).agent_is_typing(wired.channel_id, "+15550100")


async def test_recipient_validation_uses_the_adapter_rules(stack: Stack, wired: Wired) -> None:
    status, body = await stack.simulator.validate_recipients(wired.channel_id, [CUSTOMER])
    assert status == 200
    assert body["status"] == "valid"
    status, body = await stack.simulator.validate_recipients(
        wired.channel_id, [CUSTOMER, {"idOnExternalPlatform": "not a number!"}]
    )
    assert status == 400
    assert body["errorCode"] == "outboundValidationFailed"
    assert body["errors"][0]["path"] == ["endUserRecipients", 1, "idOnExternalPlatform"]
    assert body["displayErrorMessage"]


async def test_a_reply_names_the_provider_message_it_answers(
    stack: Stack, wired: Wired, admin_headers: dict[str, str]
) -> None:
    question = await customer_writes(
        stack,
        admin_headers,
        wired.channel_id,
        **{"from": "+15550100", "text": "Where is it?", "event_id": "sms-9"},
    )
    await stack.settle()
    reply = await stack.relay.post(
        f"/integration/box/2.0/channel/{wired.channel_id}/outbound",
        headers=await box_headers(stack, wired),
        json={
            "thread": {"idOnExternalPlatform": question["thread_id"]},
            "messageContent": {"type": "TEXT", "payload": {"text": "On its way"}},
            "replyToMessage": {"idOnExternalPlatform": question["message_id"]},
        },
    )
    assert reply.status_code == 200, reply.text
    await stack.settle()
    assert [(m.text, m.reply_to) for m in loopback(stack).inbox(wired.channel_id)] == [
        ("On its way", "sms-9")
    ]


async def test_the_loopback_customer_reports_a_reply_delivered_then_read_and_cxone_shows_it(
    stack: Stack, wired: Wired, admin_headers: dict[str, str]
) -> None:
    reply = await stack.simulator.send_agent_reply(
        channel_id=wired.channel_id, text="Your parcel ships today", recipients=[CUSTOMER]
    )
    assert reply.status == 200
    await stack.settle()
    [received] = loopback(stack).inbox(wired.channel_id)
    for status, reference in (("delivered", received.provider_message_id), ("seen", received.message_id)):
        answer = await stack.relay.post(
            f"/api/v1/loopback/{wired.channel_id}/receipts",
            headers=admin_headers,
            json={"message_id": reference, "status": status},
        )
        assert answer.status_code == 202, answer.text
        assert answer.json()["provider_message_id"] == received.provider_message_id
        await stack.settle()
    assert reply.message is not None
    assert [h["status"] for h in reply.message.status_history] == ["delivered", "seen"]
    [stored] = await rows(stack, Message, Message.direction == "outbound")
    assert stored.status == "seen"

    unknown = await stack.relay.post(
        f"/api/v1/loopback/{wired.channel_id}/receipts",
        headers=admin_headers,
        json={"message_id": "never-sent", "status": "seen"},
    )
    assert unknown.status_code == 404
    assert unknown.json()["code"] == "message_not_received"
