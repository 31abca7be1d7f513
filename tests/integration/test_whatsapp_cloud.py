"""whatsapp_cloud end to end against a fake Cloud API: Meta's hub.challenge handshake, a reply as free
text inside the 24-hour window and as the approved template outside it, statuses as receipts reaching
CXone, a customer's message reaching CXone, and forged or throttled calls handled."""

from __future__ import annotations

from app.models import Delivery, Message
from tests.conftest import Stack, Wired, rows
from tests.fakes.whatsapp import FakeWhatsApp

GRAPH_URL = "http://graph.test"
PHONE_ID = "106540352242922"
CUSTOMER = "15551230001"
PDF = b"%PDF-1.7\n" + bytes(range(256)) * 40


async def whatsapp_channel(
    stack: Stack, headers: dict[str, str], wired: Wired
) -> tuple[str, FakeWhatsApp, str]:
    graph = FakeWhatsApp(PHONE_ID, "EAAG-access-token", "app-secret-1234")
    stack.hosts.add(GRAPH_URL, graph.app)
    created = await stack.relay.post(
        "/api/v1/channels",
        headers=headers,
        json={
            "integration_id": wired.integration["id"],
            "name": "WhatsApp",
            "adapter": "whatsapp_cloud",
            "config": {
                "phone_number_id": PHONE_ID,
                "access_token": graph.access_token,
                "app_secret": graph.app_secret,
                "template": {"name": "agent_follow_up", "language": "en_US"},
                "api_base": GRAPH_URL,
            },
        },
    )
    assert created.status_code == 201, created.text
    return str(created.json()["id"]), graph, created.json()["secrets"]["verify_token"]


async def test_meta_subscription_handshake(stack: Stack, wired: Wired, admin_headers: dict[str, str]) -> None:
    channel_id, _, verify_token = await whatsapp_channel(stack, admin_headers, wired)
    url = f"/webhooks/whatsapp_cloud/{channel_id}"
    good = {"hub.mode": "subscribe", "hub.verify_token": verify_token, "hub.challenge": "1158201444"}
    answer = await stack.relay.get(url, params=good)
    assert (answer.status_code, answer.text) == (200, "1158201444")
    wrong = await stack.relay.get(url, params={**good, "hub.verify_token": "guess"})
    assert wrong.status_code == 403


async def test_free_text_in_the_window_a_template_outside_and_receipts(
    stack: Stack, wired: Wired, admin_headers: dict[str, str]
) -> None:
    channel_id, graph, _ = await whatsapp_channel(stack, admin_headers, wired)
    customer = {"idOnExternalPlatform": CUSTOMER}
    cold = await stack.simulator.send_agent_reply(
        channel_id=channel_id, text="Your order shipped", recipients=[customer]
    )
    assert cold.status == 200
    await stack.settle()
    [template] = graph.sent
    assert template["type"] == "template"
    assert template["template"]["name"] == "agent_follow_up"
    assert template["template"]["components"][0]["parameters"] == [
        {"type": "text", "text": "Your order shipped"}
    ]

    body, headers = graph.customer_writes(CUSTOMER, "Thanks, when will it arrive?")
    answer = await stack.relay.post(f"/webhooks/whatsapp_cloud/{channel_id}", content=body, headers=headers)
    assert answer.json()["messages"] == 1
    warm = await stack.simulator.send_agent_reply(
        channel_id=channel_id, text="Tomorrow", recipients=[customer]
    )
    await stack.settle()
    assert graph.sent[-1]["type"] == "text"
    assert graph.sent[-1]["text"]["body"] == "Tomorrow"

    for status in ("sent", "delivered", "read"):
        body, headers = graph.status(graph.sent[-1]["wamid"], status, CUSTOMER)
        answer = await stack.relay.post(
            f"/webhooks/whatsapp_cloud/{channel_id}", content=body, headers=headers
        )
        assert answer.status_code == 200
        # No background worker here: let each status reach CXone before the next one is queued behind it.
        await stack.settle()
    assert warm.message is not None
    assert [h["status"] for h in warm.message.status_history] == ["delivered", "seen"]
    inbound = [m.text for m in await rows(stack, Message) if m.direction == "inbound"]
    assert inbound == ["Thanks, when will it arrive?"]


async def test_a_forged_webhook_is_refused_and_throttling_is_retried(
    stack: Stack, wired: Wired, admin_headers: dict[str, str]
) -> None:
    channel_id, graph, _ = await whatsapp_channel(stack, admin_headers, wired)
    body, headers = graph.customer_writes(CUSTOMER, "Hello")
    forged = await stack.relay.post(
        f"/webhooks/whatsapp_cloud/{channel_id}", content=body.replace(b"Hello", b"Hellp"), headers=headers
    )
    assert forged.status_code == 401
    assert await rows(stack, Message) == []
    graph.throttle_next = 1
    graph.window_open.add(CUSTOMER)
    reply = await stack.simulator.send_agent_reply(
        channel_id=channel_id, text="Hi", recipients=[{"idOnExternalPlatform": CUSTOMER}]
    )
    assert reply.status == 200
    await stack.settle()
    [send] = await rows(stack, Delivery, Delivery.kind == "provider.send")
    assert send.status == "pending"
    assert "130429" in (send.last_error or "")


async def test_files_both_ways_are_fetched_once_and_carried_as_files(
    stack: Stack, wired: Wired, admin_headers: dict[str, str]
) -> None:
    channel_id, graph, _ = await whatsapp_channel(stack, admin_headers, wired)
    body, headers = graph.customer_sends_file(CUSTOMER, PDF, "claim.pdf", caption="My claim form")
    answer = await stack.relay.post(f"/webhooks/whatsapp_cloud/{channel_id}", content=body, headers=headers)
    assert answer.status_code == 200, answer.text
    await stack.settle()
    [thread] = [t for t in stack.simulator.threads.values() if t.channel_id == channel_id]
    [message] = thread.messages
    assert message.text == "My claim form"
    [attachment] = message.attachments
    assert attachment["friendlyName"] == "claim.pdf"
    assert stack.simulator.attachment_at(attachment["url"]) == (PDF, "application/pdf")
    assert graph.downloads == 1

    photo = b"\x89PNG\r\n\x1a\n" + bytes(2048)
    reply = await stack.simulator.send_agent_reply(
        channel_id=channel_id,
        text="Here is the signed copy",
        recipients=[{"idOnExternalPlatform": CUSTOMER}],
        attachments=[
            {"url": stack.simulator.host_file(PDF, "application/pdf"), "friendlyName": "signed.pdf"},
            {"url": stack.simulator.host_file(photo, "image/png"), "friendlyName": "stamp.png"},
        ],
    )
    assert reply.status == 200
    await stack.settle()
    text, document, image = graph.sent
    assert text["text"]["body"] == "Here is the signed copy"
    assert document["type"] == "document"
    assert document["document"]["filename"] == "signed.pdf"
    assert graph.uploaded(document["document"]["id"]) == (PDF, "application/pdf", "signed.pdf")
    assert image["type"] == "image"
    assert graph.uploaded(image["image"]["id"]) == (photo, "image/png", "stamp.png")


async def test_outside_the_window_the_template_goes_once_and_the_files_fail_with_the_reason(
    stack: Stack, wired: Wired, admin_headers: dict[str, str]
) -> None:
    channel_id, graph, _ = await whatsapp_channel(stack, admin_headers, wired)
    reply = await stack.simulator.send_agent_reply(
        channel_id=channel_id,
        text="Your contract",
        recipients=[{"idOnExternalPlatform": CUSTOMER}],
        attachments=[
            {"url": stack.simulator.host_file(PDF, "application/pdf"), "friendlyName": "contract.pdf"}
        ],
    )
    await stack.settle()
    assert [sent["type"] for sent in graph.sent] == ["template"]  # once, never a second template
    assert reply.status == 400
    assert "files can only follow once the customer writes again" in reply.body["displayErrorMessage"]
