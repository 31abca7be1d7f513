"""telegram end to end against a fake Bot API: creating the channel registers our webhook with a secret,
an agent reply becomes sendMessage (and sendDocument for a file), typing becomes sendChatAction, a
customer's message reaches CXone, and an update without the secret is refused."""

from __future__ import annotations

import json

import httpx

from app.adapters.base import InboundMessage, InboundRequest
from app.adapters.telegram import TelegramAdapter
from app.models import Delivery, Message
from tests.conftest import Stack, Wired, rows
from tests.fakes.telegram import FakeTelegram

TELEGRAM_URL = "http://api.telegram.test"
CHAT = 777000111
TOKEN = "123456789:AAbbCCddEEffGGhhIIjjKKllMMnnOOpp"
PDF = b"%PDF-1.7\n" + bytes(range(256)) * 40


async def telegram_channel(stack: Stack, headers: dict[str, str], wired: Wired) -> tuple[str, FakeTelegram]:
    bot = FakeTelegram(TOKEN)
    stack.hosts.add(TELEGRAM_URL, bot.app)
    created = await stack.relay.post(
        "/api/v1/channels",
        headers=headers,
        json={
            "integration_id": wired.integration["id"],
            "name": "Telegram",
            "adapter": "telegram",
            "config": {"bot_token": TOKEN, "api_base": TELEGRAM_URL},
        },
    )
    assert created.status_code == 201, created.text
    channel_id = str(created.json()["id"])
    assert bot.webhook_url == f"http://relay.test/webhooks/telegram/{channel_id}"
    assert bot.secret_token == created.json()["secrets"]["webhook_secret"]  # shown once, here
    return channel_id, bot


async def test_creating_the_channel_fails_cleanly_when_telegram_refuses_the_token(
    stack: Stack, wired: Wired, admin_headers: dict[str, str]
) -> None:
    stack.hosts.add(TELEGRAM_URL, FakeTelegram("999:another-token-entirely-xx").app)
    answer = await stack.relay.post(
        "/api/v1/channels",
        headers=admin_headers,
        json={
            "integration_id": wired.integration["id"],
            "name": "Telegram",
            "adapter": "telegram",
            "config": {"bot_token": TOKEN, "api_base": TELEGRAM_URL},
        },
    )
    assert answer.status_code == 422
    assert answer.json()["code"] == "provider_connect_failed"
    assert "Unauthorized" in answer.json()["message"]
    listed = await stack.relay.get("/api/v1/channels", headers=admin_headers)
    assert [c["adapter"] for c in listed.json()["items"]] == ["loopback"]  # the wired one only


async def test_reply_file_typing_and_the_customers_answer(
    stack: Stack, wired: Wired, admin_headers: dict[str, str]
) -> None:
    channel_id, bot = await telegram_channel(stack, admin_headers, wired)
    customer = {"idOnExternalPlatform": str(CHAT)}
    result = await stack.simulator.send_agent_reply(
        channel_id=channel_id,
        text="Here is your invoice",
        recipients=[customer],
        attachments=[
            {"url": stack.simulator.host_file(PDF, "application/pdf"), "friendlyName": "invoice.pdf"}
        ],
    )
    assert result.status == 200
    await stack.settle()
    assert bot.sent("sendMessage") == []  # the text rides as the file's caption: one message, one call
    [document] = bot.sent("sendDocument")
    assert document == {
        "chat_id": str(CHAT),
        "caption": "Here is your invoice",
        "document": {"name": "invoice.pdf", "type": "application/pdf", "content": PDF},
    }
    thread_id = result.body["thread"]["idOnExternalPlatform"]
    assert (await stack.simulator.send_typing(channel_id, thread_id, True)).status == 204
    assert bot.sent("sendChatAction") == [{"chat_id": str(CHAT), "action": "typing"}]

    body, headers = bot.update(CHAT, "Thanks!")
    answer = await stack.relay.post(f"/webhooks/telegram/{channel_id}", content=body, headers=headers)
    assert answer.json()["messages"] == 1
    forged = await stack.relay.post(
        f"/webhooks/telegram/{channel_id}", content=body, headers={"content-type": "application/json"}
    )
    assert forged.status_code == 401
    await stack.settle()
    inbound = [m for m in await rows(stack, Message) if m.direction == "inbound"]
    assert [(m.text, m.end_user_id, m.status) for m in inbound] == [("Thanks!", str(CHAT), "relayed")]


async def test_a_customers_document_reaches_the_agent_as_a_cxone_attachment(
    stack: Stack, wired: Wired, admin_headers: dict[str, str]
) -> None:
    channel_id, bot = await telegram_channel(stack, admin_headers, wired)
    body, headers = bot.update(CHAT, "My receipt", document=("receipt.pdf", PDF))
    answer = await stack.relay.post(f"/webhooks/telegram/{channel_id}", content=body, headers=headers)
    assert answer.status_code == 200, answer.text
    await stack.settle()
    [thread] = [t for t in stack.simulator.threads.values() if t.channel_id == channel_id]
    [message] = thread.messages
    assert message.text == "My receipt"
    [attachment] = message.attachments
    assert attachment["friendlyName"] == "receipt.pdf"
    assert stack.simulator.attachment_at(attachment["url"]) == (PDF, "application/pdf")
    assert bot.downloads == 1


async def test_a_blocked_bot_is_final_and_flood_control_is_retried(
    stack: Stack, wired: Wired, admin_headers: dict[str, str]
) -> None:
    channel_id, bot = await telegram_channel(stack, admin_headers, wired)
    bot.blocked.add(CHAT)
    blocked = await stack.simulator.send_agent_reply(
        channel_id=channel_id, text="Hello?", recipients=[{"idOnExternalPlatform": str(CHAT)}]
    )
    assert blocked.status == 400
    assert "bot was blocked by the user" in blocked.body["displayErrorMessage"]
    bot.flood_next = 1
    flooded = await stack.simulator.send_agent_reply(
        channel_id=channel_id, text="Hello!", recipients=[{"idOnExternalPlatform": "777000222"}]
    )
    assert flooded.status == 200
    await stack.settle()
    pending = await rows(stack, Delivery, Delivery.status == "pending", Delivery.kind == "provider.send")
    assert [d.last_status_code for d in pending] == [429]


def test_of_a_photo_the_largest_size_is_taken_and_a_voice_note_keeps_its_type() -> None:
    sizes = [
        {"file_id": f"p{width}", "width": width, "height": width, "file_size": width * 10}
        for width in (90, 320, 1280)
    ]
    update = {
        "update_id": 1,
        "message": {
            "message_id": 7,
            "from": {"id": CHAT, "is_bot": False, "first_name": "Ada"},
            "chat": {"id": CHAT, "type": "private"},
            "photo": sizes,
            "caption": "The box arrived like this",
            "voice": {"file_id": "v1", "mime_type": "audio/ogg", "file_size": 4000, "duration": 3},
        },
    }
    request = InboundRequest(json.dumps(update).encode(), {}, "https://relay.test/x")
    [message] = TelegramAdapter(httpx.AsyncClient()).parse(request, {})
    assert isinstance(message, InboundMessage)
    assert message.text == "The box arrived like this"
    assert [(a.url, a.friendly_name, a.mime_type, a.size) for a in message.attachments] == [
        ("p1280", "photo.jpg", "image/jpeg", 12800),
        ("v1", None, "audio/ogg", 4000),
    ]
