"""Files through the relay, on a `webhook` channel: a customer's file is fetched once, under the size
cap, and handed to CXone as a temporary attachment, whatever fails along the way; one that cannot come
reaches the agent as a note, never silently. An agent's file is fetched once from CXone's short-lived
link and offered to the platform as a link the relay serves, or refused with a reason CXone is told."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import update

from app.config import Settings
from app.delivery.kinds import CREATE_IN_CXONE
from app.models import Delivery, Destination, Message, StoredFile
from app.services.files import prune
from tests.conftest import (
    FAST_RETRIES,
    Stack,
    Wired,
    all_delivered,
    eventually,
    make_settings,
    rows,
    webhook_channel,
)
from tests.fakes.provider import FakeProvider
from tests.fakes.sendgrid import FakeInboundParse

CAP = 4096
ATTEMPTS = 4
CUSTOMER_ID = "cust-42"


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(
        database_url,
        max_attachment_bytes=CAP,
        max_webhook_body_bytes=4 * CAP,
        **{**FAST_RETRIES, "retry_max_attempts": ATTEMPTS},
    )


def pdf(size: int) -> bytes:
    return (b"%PDF-1.7\n" + bytes(index % 251 for index in range(size)))[:size]


async def customer_sends(stack: Stack, channel_id: str, provider: FakeProvider, body: bytes) -> None:
    answer = await stack.relay.post(
        f"/webhooks/webhook/{channel_id}", content=body, headers=provider.signed_headers(body)
    )
    assert answer.status_code == 200, answer.text
    await eventually(lambda: all_delivered(stack))


def cxone_messages(stack: Stack, channel_id: str) -> list[tuple[str | None, list[bytes]]]:
    """What the agent sees: each message's text and its files' bytes."""
    found = []
    for thread in stack.simulator.threads.values():
        if thread.channel_id == channel_id:
            for message in thread.messages:
                files = [stack.simulator.attachment_at(a["url"]) for a in message.attachments]
                found.append((message.text, [f[0] for f in files if f is not None]))
    return found


async def test_a_file_within_the_cap_arrives_and_one_over_it_becomes_a_note(
    stack: Stack, wired: Wired, admin_headers: dict[str, str]
) -> None:
    channel_id, provider = await webhook_channel(stack, admin_headers, wired)
    await customer_sends(
        stack, channel_id, provider, provider.file_event("e1", CUSTOMER_ID, "ok.pdf", pdf(CAP))
    )
    await customer_sends(
        stack,
        channel_id,
        provider,
        provider.file_event("e2", CUSTOMER_ID, "declared.pdf", pdf(CAP + 1), size=CAP + 1),
    )
    await customer_sends(
        stack, channel_id, provider, provider.file_event("e3", CUSTOMER_ID, "big.pdf", pdf(CAP + 1))
    )
    assert cxone_messages(stack, channel_id) == [
        ("ok.pdf", [pdf(CAP)]),
        (
            "[File “declared.pdf” not forwarded: "
            "declared.pdf is 4,097 bytes; at most 4,096 bytes is accepted]",
            [],
        ),
        ("[File “big.pdf” not forwarded: big.pdf is 4,097 bytes; at most 4,096 bytes is accepted]", []),
    ]
    assert provider.downloads == 2  # the declared size was refused without a download
    statuses = [m.status for m in await rows(stack, Message)]
    assert statuses == ["relayed"] * 3


@pytest.mark.parametrize(
    ("failing", "path"),
    [
        ("the upload to CXone", r"/attachments/temporary$"),
        ("the message to CXone", r"/channels/.+/messages$"),
    ],
)
async def test_a_failure_after_the_fetch_never_fetches_or_uploads_twice(
    stack: Stack, wired: Wired, admin_headers: dict[str, str], failing: str, path: str
) -> None:
    channel_id, provider = await webhook_channel(stack, admin_headers, wired)
    stack.simulator.fail_next("POST", path, 503, times=2)
    await customer_sends(
        stack, channel_id, provider, provider.file_event("e1", CUSTOMER_ID, "a.pdf", pdf(1000))
    )
    assert cxone_messages(stack, channel_id) == [("a.pdf", [pdf(1000)])]
    assert provider.downloads == 1
    uploads = stack.simulator.calls_to(r"/attachments/temporary$", method="POST", direction="in")
    assert [call.status for call in uploads] == ([503, 503, 200] if "upload" in failing else [200])
    [message] = await rows(stack, Message)
    assert message.status == "relayed"
    [entry] = message.attachments
    assert {"fileId", "cxoneUrl", "cxoneExpireAt"} <= entry.keys()


async def test_a_file_the_platform_no_longer_has_becomes_a_note(
    stack: Stack, wired: Wired, admin_headers: dict[str, str]
) -> None:
    channel_id, provider = await webhook_channel(stack, admin_headers, wired)
    body = provider.file_event("e1", CUSTOMER_ID, "gone.pdf", pdf(10))
    provider.files.clear()
    await customer_sends(stack, channel_id, provider, body)
    assert cxone_messages(stack, channel_id) == [
        ("[File “gone.pdf” not forwarded: the file could not be fetched (HTTP 404)]", [])
    ]


async def test_an_agents_file_is_fetched_once_and_offered_as_a_relay_link_until_it_expires(
    stack: Stack, wired: Wired, admin_headers: dict[str, str]
) -> None:
    channel_id, provider = await webhook_channel(stack, admin_headers, wired)
    provider.fail_next(503)  # the first send fails: the retry must not need CXone's link again
    link = stack.simulator.host_file(pdf(2000), "application/pdf")
    answer = await stack.simulator.send_agent_reply(
        channel_id=channel_id,
        text="Your invoice",
        recipients=[{"idOnExternalPlatform": CUSTOMER_ID}],
        attachments=[{"url": link, "friendlyName": "invoice.pdf"}],
    )
    assert answer.status == 200
    stack.simulator.attachments.clear()  # CXone's short-lived link is gone
    await eventually(lambda: all_delivered(stack))
    [delivered] = [attempt.body for attempt in provider.attempts if attempt.status == 200]
    [offered] = delivered["attachments"]
    assert (offered["name"], offered["type"], offered["size"]) == ("invoice.pdf", "application/pdf", 2000)
    served = await stack.relay.get(offered["url"])
    assert served.content == pdf(2000)
    assert stack.simulator.attachment_downloads == 1

    async with stack.runtime.sessions() as session, session.begin():
        await session.execute(update(StoredFile).values(expires_at=StoredFile.created_at))
    assert (await stack.relay.get(offered["url"])).status_code == 404
    async with stack.runtime.sessions() as session, session.begin():
        assert await prune(session) == 1


async def test_an_agents_file_too_large_or_gone_fails_the_reply_with_the_reason(
    stack: Stack, wired: Wired, admin_headers: dict[str, str]
) -> None:
    channel_id, provider = await webhook_channel(stack, admin_headers, wired)
    large = await stack.simulator.send_agent_reply(
        channel_id=channel_id,
        text="Big one",
        recipients=[{"idOnExternalPlatform": CUSTOMER_ID}],
        attachments=[
            {"url": stack.simulator.host_file(pdf(CAP + 1), "application/pdf"), "friendlyName": "b.pdf"}
        ],
    )
    assert large.status == 400
    assert (
        "Attachment refused: b.pdf is 4,097 bytes; at most 4,096 bytes is accepted"
        in (large.body["displayErrorMessage"])
    )
    gone = await stack.simulator.send_agent_reply(
        channel_id=channel_id,
        text="Expired one",
        recipients=[{"idOnExternalPlatform": CUSTOMER_ID}],
        attachments=[{"url": "http://cxone.test/_sim/attachments/expired", "friendlyName": "old.pdf"}],
    )
    assert gone.status == 400
    assert "the file could not be fetched (HTTP 404)" in gone.body["displayErrorMessage"]
    assert provider.attempts == []
    dead = await rows(stack, Delivery, Delivery.status == "dead")
    assert len(dead) == 2


async def test_a_relay_link_never_serves_a_page_of_our_origin(
    stack: Stack, wired: Wired, admin_headers: dict[str, str]
) -> None:
    channel_id, provider = await webhook_channel(stack, admin_headers, wired)
    page = b"<script>fetch('/api/v1/channels')</script>"
    photo = b"\x89PNG\r\n\x1a\n" + bytes(64)
    answer = await stack.simulator.send_agent_reply(
        channel_id=channel_id,
        text="Three files",
        recipients=[{"idOnExternalPlatform": CUSTOMER_ID}],
        attachments=[
            {"url": stack.simulator.host_file(page, "text/html"), "friendlyName": "page.html"},
            {"url": stack.simulator.host_file(photo, "image/png"), "friendlyName": "stamp.png"},
            {"url": stack.simulator.host_file(pdf(100), "application/pdf"), "friendlyName": "1/2 report.pdf"},
        ],
    )
    assert answer.status == 200
    await eventually(lambda: all_delivered(stack))
    [delivered] = [attempt.body for attempt in provider.attempts if attempt.status == 200]
    html, image, document = [await stack.relay.get(offered["url"]) for offered in delivered["attachments"]]
    assert html.headers["content-disposition"].startswith("attachment;")
    assert image.headers["content-disposition"].startswith("inline;")
    assert document.headers["content-disposition"] == "attachment; filename*=UTF-8''1%2F2%20report.pdf"
    assert document.content == pdf(100)  # a name with a slash still makes a working link
    for served in (html, image, document):
        assert served.headers["content-security-policy"] == "sandbox; default-src 'none'"
        assert served.headers["x-content-type-options"] == "nosniff"
    file_id = delivered["attachments"][0]["url"].split("/")[4]
    odd_key = await stack.relay.get(f"/files/{file_id}/%C3%A9t%C3%A9/page.html")
    assert odd_key.status_code == 404


async def test_a_webhook_body_over_its_cap_is_refused_before_anything_is_written(
    stack: Stack, wired: Wired, admin_headers: dict[str, str]
) -> None:
    channel_id, provider = await webhook_channel(stack, admin_headers, wired)
    body = provider.message_event("e1", CUSTOMER_ID, "x" * (4 * CAP))
    answer = await stack.relay.post(
        f"/webhooks/webhook/{channel_id}", content=body, headers=provider.signed_headers(body)
    )
    assert answer.status_code == 413
    assert answer.json()["code"] == "payload_too_large"
    assert await rows(stack, Message) == []


async def test_an_emailed_file_over_the_cap_is_refused_where_it_arrives_and_the_email_still_comes(
    stack: Stack, wired: Wired, admin_headers: dict[str, str]
) -> None:
    sendgrid = FakeInboundParse()
    created = await stack.relay.post(
        "/api/v1/channels",
        headers=admin_headers,
        json={
            "integration_id": wired.integration["id"],
            "name": "E-mail",
            "adapter": "email",
            "config": {
                "from_address": "support@shop.example",
                "smtp_host": "smtp.shop.example",
                "inbound_public_key": sendgrid.public_key,
            },
        },
    )
    assert created.status_code == 201, created.text
    channel_id = created.json()["id"]
    body, headers, _ = sendgrid.email(
        sender="ada@mail.example",
        to="support@shop.example",
        subject="Two scans",
        text="Both pages",
        files=[("page1.pdf", "application/pdf", pdf(CAP)), ("page2.pdf", "application/pdf", pdf(CAP + 1))],
    )
    answer = await stack.relay.post(f"/webhooks/email/{channel_id}", content=body, headers=headers)
    assert answer.status_code == 200, answer.text
    await eventually(lambda: all_delivered(stack))
    assert cxone_messages(stack, channel_id) == [
        (
            "Both pages\n"
            "[File “page2.pdf” not forwarded: page2.pdf is 4,097 bytes; at most 4,096 bytes is accepted]",
            [pdf(CAP)],
        )
    ]
    kept = await rows(stack, StoredFile)
    assert [(f.name, f.size) for f in kept] == [("page1.pdf", CAP)]  # the refused one was never stored


async def post_unreachable_file(stack: Stack, channel_id: str, provider: FakeProvider) -> None:
    event = {
        "type": "message",
        "id": "e1",
        "from": {"id": CUSTOMER_ID},
        "text": "See attached",
        "attachments": [{"url": "http://files.down.test/scan.pdf", "name": "scan.pdf"}],
    }
    body = json.dumps(event).encode()
    answer = await stack.relay.post(
        f"/webhooks/webhook/{channel_id}", content=body, headers=provider.signed_headers(body)
    )
    assert answer.status_code == 200


def gave_up_on_the_file(stack: Stack, channel_id: str) -> None:
    [(text, files)] = cxone_messages(stack, channel_id)
    assert (text or "").startswith(
        "See attached\n[File “scan.pdf” not forwarded: the file could not be fetched ("
    )
    assert files == []


async def test_a_file_unreachable_until_the_last_try_stops_holding_its_message_back(
    stack: Stack, wired: Wired, admin_headers: dict[str, str]
) -> None:
    channel_id, provider = await webhook_channel(stack, admin_headers, wired)
    await post_unreachable_file(stack, channel_id, provider)
    await eventually(lambda: all_delivered(stack))
    gave_up_on_the_file(stack, channel_id)
    [delivery] = await rows(stack, Delivery, Delivery.kind == CREATE_IN_CXONE)
    assert (delivery.status, delivery.attempts) == ("delivered", ATTEMPTS)
    [destination] = await rows(stack, Destination, Destination.key == delivery.destination)
    assert destination.breaker_state == "closed"  # the file's host was down, not CXone


@pytest.mark.parametrize("how", ["named", "as IPv6", "redirected"])
async def test_a_file_url_never_reaches_a_link_local_address(
    stack: Stack, wired: Wired, admin_headers: dict[str, str], how: str
) -> None:
    """A cloud's metadata service lives at 169.254.169.254: a webhook must not make the relay fetch it."""
    channel_id, provider = await webhook_channel(stack, admin_headers, wired)
    metadata = "http://169.254.169.254/latest/meta-data/iam"
    url = {
        "named": metadata,
        "as IPv6": "http://[::ffff:169.254.169.254]/latest/meta-data/iam",
        "redirected": "http://provider.test/files/creds.txt",
    }[how]
    provider.redirects["creds.txt"] = metadata
    event = {
        "type": "message",
        "id": "e1",
        "from": {"id": CUSTOMER_ID},
        "attachments": [{"url": url, "name": "creds.txt"}],
    }
    body = json.dumps(event).encode()
    answer = await stack.relay.post(
        f"/webhooks/webhook/{channel_id}", content=body, headers=provider.signed_headers(body)
    )
    assert answer.status_code == 200
    await eventually(lambda: all_delivered(stack))
    assert cxone_messages(stack, channel_id) == [
        ("[File “creds.txt” not forwarded: the file's address is not allowed (link-local)]", [])
    ]


async def test_a_file_cxone_refuses_becomes_a_note_and_the_message_still_goes(
    stack: Stack, wired: Wired, admin_headers: dict[str, str]
) -> None:
    channel_id, provider = await webhook_channel(stack, admin_headers, wired)
    stack.simulator.fail_next("POST", r"/attachments/temporary$", 400)
    await customer_sends(
        stack, channel_id, provider, provider.file_event("e1", CUSTOMER_ID, "odd.bin", pdf(10))
    )
    [(text, files)] = cxone_messages(stack, channel_id)
    assert (text or "").startswith("[File “odd.bin” not forwarded: CXone refused it (")
    assert files == []
