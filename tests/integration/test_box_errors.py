"""Every way a box call can be wrong gets a precise 4xx, and nothing is half-stored."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from app.models import Delivery, Message, Thread
from tests.conftest import Stack, Wired, box_headers, wire_integration

BOX = "/integration/box"


@pytest.fixture
async def bearer(stack: Stack, wired: Wired) -> dict[str, str]:
    return await box_headers(stack, wired)


async def stored_rows(stack: Stack) -> tuple[int, int, int]:
    async with stack.runtime.sessions() as session:
        counts = [
            int(await session.scalar(select(func.count()).select_from(model)) or 0)
            for model in (Message, Thread, Delivery)
        ]
    return counts[0], counts[1], counts[2]


def reply(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "thread": {"idOnExternalPlatform": "conv-1"},
        "messageContent": {"type": "TEXT", "payload": {"text": "Hello"}},
        "endUserRecipients": [{"idOnExternalPlatform": "+15550100"}],
    }
    body.update(overrides)
    return body


async def test_unknown_channel_is_404_with_a_clear_body(
    stack: Stack, wired: Wired, bearer: dict[str, str]
) -> None:
    response = await stack.relay.post(f"{BOX}/2.0/channel/byoc_nope/outbound", json=reply(), headers=bearer)
    assert response.status_code == 404
    assert response.json() == {"code": "channel_not_found", "message": "No channel with id 'byoc_nope'."}
    typing = await stack.relay.post(
        f"{BOX}/1.0/channel/byoc_nope/thread/t1/sender-action",
        json={"senderAction": {"action": "isTypingOn"}},
        headers=bearer,
    )
    assert typing.status_code == 404
    assert await stored_rows(stack) == (0, 0, 0)


async def test_another_integrations_channel_is_unknown(
    stack: Stack, wired: Wired, admin_headers: dict[str, str], bearer: dict[str, str]
) -> None:
    other = await wire_integration(stack, admin_headers)
    response = await stack.relay.post(
        f"{BOX}/2.0/channel/{other.channel_id}/outbound", json=reply(), headers=bearer
    )
    assert response.status_code == 404
    assert await stored_rows(stack) == (0, 0, 0)


async def test_malformed_json_is_422(stack: Stack, wired: Wired, bearer: dict[str, str]) -> None:
    response = await stack.relay.post(
        f"{BOX}/2.0/channel/{wired.channel_id}/outbound",
        content=b'{"thread": ',
        headers={**bearer, "Content-Type": "application/json"},
    )
    assert response.status_code == 422
    assert response.json()["code"] == "malformed_json"


@pytest.mark.parametrize(
    ("path", "body", "field_path"),
    [
        ("/1.0/channel/{ch}/thread/t1/sender-action", {"brand": {}}, "body.senderAction"),
        (
            "/1.0/channel/{ch}/thread/t1/sender-action",
            {"senderAction": {"action": "dancing"}},
            "body.senderAction.action",
        ),
        (
            "/2.0/channel/{ch}/outbound",
            reply(endUserRecipients=[{"name": "no id"}]),
            "body.endUserRecipients.0.idOnExternalPlatform",
        ),
        ("/2.0/channel/{ch}/outbound", reply(attachments=[{"friendlyName": "x"}]), "body.attachments.0.url"),
        ("/1.0/channel/{ch}/recipients/validation", {}, "body"),
    ],
)
async def test_a_missing_or_wrong_field_is_422_with_its_path(
    stack: Stack, wired: Wired, bearer: dict[str, str], path: str, body: dict[str, Any], field_path: str
) -> None:
    response = await stack.relay.post(BOX + path.format(ch=wired.channel_id), json=body, headers=bearer)
    assert response.status_code == 422, response.text
    error = response.json()
    assert error["code"] == "validation_error"
    assert field_path in [detail["path"] for detail in error["details"]]
    assert await stored_rows(stack) == (0, 0, 0)


async def test_an_empty_reply_is_refused(stack: Stack, wired: Wired, bearer: dict[str, str]) -> None:
    empty = reply(messageContent={"type": "TEXT", "payload": {"text": "   "}})
    response = await stack.relay.post(
        f"{BOX}/2.0/channel/{wired.channel_id}/outbound", json=empty, headers=bearer
    )
    assert response.status_code == 422
    assert response.json()["code"] == "empty_message"
    assert await stored_rows(stack) == (0, 0, 0)


async def test_a_new_conversation_needs_a_recipient(
    stack: Stack, wired: Wired, bearer: dict[str, str]
) -> None:
    response = await stack.relay.post(
        f"{BOX}/2.0/channel/{wired.channel_id}/outbound", json=reply(endUserRecipients=[]), headers=bearer
    )
    assert response.status_code == 422
    assert response.json()["code"] == "recipient_required"
    assert await stored_rows(stack) == (0, 0, 0)


async def test_an_invalid_recipient_gets_cxones_validation_body(
    stack: Stack, wired: Wired, bearer: dict[str, str]
) -> None:
    response = await stack.relay.post(
        f"{BOX}/2.0/channel/{wired.channel_id}/outbound",
        json=reply(endUserRecipients=[{"idOnExternalPlatform": "has spaces"}]),
        headers=bearer,
    )
    assert response.status_code == 400
    assert response.json()["errorCode"] == "outboundValidationFailed"
    assert await stored_rows(stack) == (0, 0, 0)


async def test_legacy_reply_to_an_unknown_post_is_404(
    stack: Stack, wired: Wired, bearer: dict[str, str]
) -> None:
    response = await stack.relay.post(
        f"{BOX}/1.0/posts/no-such-thread/messages", json=reply(), headers=bearer
    )
    assert response.status_code == 404
    assert response.json()["code"] == "thread_not_found"
    assert await stored_rows(stack) == (0, 0, 0)


async def test_liberal_input_shapes_are_accepted(stack: Stack, wired: Wired, bearer: dict[str, str]) -> None:
    """`recipients` instead of `endUserRecipients`, a fallback text, unknown fields: all fine."""
    body = {
        "recipients": [{"idOnExternalPlatform": "+15550100", "isPrimary": True}],
        "messageContent": {"type": "PLUGIN", "payload": {"postback": "x"}, "fallbackText": "Fallback"},
        "somethingNew": {"nested": [1, 2]},
        "replyToMessage": {"idOnExternalPlatform": "m-1"},
    }
    response = await stack.relay.post(
        f"{BOX}/2.0/channel/{wired.channel_id}/outbound", json=body, headers=bearer
    )
    assert response.status_code == 200, response.text
    out = response.json()
    assert set(out) == {"message", "thread", "recipients"}
    assert set(out["message"]) == {"idOnExternalPlatform", "createdAtWithMilliseconds", "url"}
    assert out["recipients"][0]["idOnExternalPlatform"] == "+15550100"
    await stack.settle()
    messages = await stack.relay.get(out["message"]["url"].replace("http://relay.test", ""), headers=bearer)
    assert messages.status_code == 401  # the box bearer is not an admin key
