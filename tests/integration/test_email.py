"""email end to end: a real SMTP server with STARTTLS and AUTH on a local port, and SendGrid's signed
Inbound Parse and Event webhooks. A customer's e-mail with a file reaches CXone (subject as title, quoted
history cut, the file as a CXone attachment); the agent's reply goes out threaded under it with its file,
and its receipts come back; SMTP answers decide between retry and dead; forged, resent and echoed e-mails
are handled."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from app.models import Delivery, Message
from tests.conftest import Stack, Wired, rows
from tests.fakes.sendgrid import FakeInboundParse
from tests.fakes.smtp import FakeSmtp

SUPPORT = "support@shop.example"
CUSTOMER = "ada@mail.example"
PDF = b"%PDF-1.7\n" + bytes(range(256)) * 30


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[FakeSmtp]:
    with FakeSmtp(tmp_path) as server:
        yield server


async def email_channel(
    stack: Stack, headers: dict[str, str], wired: Wired, smtp: FakeSmtp
) -> tuple[str, FakeInboundParse]:
    sendgrid = FakeInboundParse()
    created = await stack.relay.post(
        "/api/v1/channels",
        headers=headers,
        json={
            "integration_id": wired.integration["id"],
            "name": "E-mail",
            "adapter": "email",
            "config": {
                "from_address": SUPPORT,
                "from_name": "Shop support",
                "smtp_host": "127.0.0.1",
                "smtp_port": smtp.port,
                "smtp_username": smtp.username,
                "smtp_password": smtp.password,
                "tls_ca_file": str(smtp.ca_file),
                "inbound_public_key": sendgrid.public_key,
            },
        },
    )
    assert created.status_code == 201, created.text
    assert "smtp_password" not in created.json()["config"]
    return str(created.json()["id"]), sendgrid


async def test_an_email_thread_both_ways_with_files(
    stack: Stack, wired: Wired, admin_headers: dict[str, str], smtp: FakeSmtp
) -> None:
    channel_id, sendgrid = await email_channel(stack, admin_headers, wired, smtp)
    body, headers, customer_message_id = sendgrid.email(
        sender=f"Ada Lovelace <{CUSTOMER}>",
        to=SUPPORT,
        subject="Broken kettle",
        text="It stopped working, receipt attached.\n\nOn Mon, 23 Nov 2026, Shop wrote:\n> Hello",
        files=[("receipt.pdf", "application/pdf", PDF)],
    )
    answer = await stack.relay.post(f"/webhooks/email/{channel_id}", content=body, headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.json()["messages"] == 1
    resent = await stack.relay.post(f"/webhooks/email/{channel_id}", content=body, headers=headers)
    assert resent.json()["duplicates"] == 1
    await stack.settle()

    [thread] = [t for t in stack.simulator.threads.values() if t.channel_id == channel_id]
    [message] = thread.messages
    assert message.text == "It stopped working, receipt attached."
    [attachment] = message.attachments
    assert attachment["friendlyName"] == "receipt.pdf"
    assert stack.simulator.attachment_at(attachment["url"]) == (PDF, "application/pdf")
    created = stack.simulator.calls_to(r"/channels/.+/messages$", method="POST", direction="in")
    assert created[0].json["title"] == "Broken kettle"
    assert created[0].json["authorEndUserIdentity"]["idOnExternalPlatform"] == CUSTOMER

    label = b"%PDF-1.7 return label"
    reply = await stack.simulator.send_agent_reply(
        channel_id=channel_id,
        text="Sorry about that. Print this label and send it back.",
        recipients=[{"idOnExternalPlatform": CUSTOMER}],
        attachments=[
            {"url": stack.simulator.host_file(label, "application/pdf"), "friendlyName": "label.pdf"}
        ],
    )
    assert reply.status == 200
    await stack.settle()
    [sent] = smtp.delivered
    assert (sent.over_tls, sent.login) == (True, smtp.username)
    assert (sent.sender, sent.recipients) == (SUPPORT, [CUSTOMER])
    mail = sent.message
    assert mail["Subject"] == "Re: Broken kettle"
    assert mail["In-Reply-To"] == customer_message_id
    assert mail["References"] == customer_message_id
    [ours] = [m for m in await rows(stack, Message) if m.direction == "outbound"]
    assert mail["Message-ID"] == f"<{ours.id}@shop.example>"
    assert ours.status == "sent"
    plain = mail.get_body(("plain",))
    assert plain is not None
    assert plain.get_content().strip() == "Sorry about that. Print this label and send it back."
    [file] = list(mail.iter_attachments())
    assert (file.get_filename(), file.get_content_type(), file.get_content()) == (
        "label.pdf",
        "application/pdf",
        label,
    )

    # SendGrid's Event Webhook reports the reply delivered, then opened: CXone hears both.
    for event in ("processed", "delivered", "open"):
        receipt_body, receipt_headers = sendgrid.events((event, mail["Message-ID"]))
        receipt = await stack.relay.post(
            f"/webhooks/email/{channel_id}", content=receipt_body, headers=receipt_headers
        )
        assert receipt.status_code == 200, receipt.text
        await stack.settle()
    assert reply.message is not None
    assert [h["status"] for h in reply.message.status_history] == ["delivered", "seen"]

    # Our own reply, copied back to the inbound address, is an echo; a forged e-mail is refused.
    echo_body, echo_headers, _ = sendgrid.email(
        sender=SUPPORT, to=SUPPORT, subject="Re: Broken kettle", text="Sorry about that."
    )
    echo = await stack.relay.post(f"/webhooks/email/{channel_id}", content=echo_body, headers=echo_headers)
    assert echo.json()["echoes"] == 1
    forged = await stack.relay.post(
        f"/webhooks/email/{channel_id}", content=body.replace(b"kettle", b"kettlf"), headers=headers
    )
    assert forged.status_code == 401
    assert forged.json()["code"] == "invalid_signature"


@pytest.mark.parametrize(
    ("mailbox", "status", "error"),
    [("unknown", "dead", "SMTP 550"), ("busy", "pending", "SMTP 451")],
)
async def test_smtp_answers_decide_between_retry_and_dead(
    stack: Stack,
    wired: Wired,
    admin_headers: dict[str, str],
    smtp: FakeSmtp,
    mailbox: str,
    status: str,
    error: str,
) -> None:
    channel_id, _ = await email_channel(stack, admin_headers, wired, smtp)
    address = f"{mailbox}@mail.example"
    getattr(smtp.handler, mailbox).add(address)
    reply = await stack.simulator.send_agent_reply(
        channel_id=channel_id, text="Hello", recipients=[{"idOnExternalPlatform": address}]
    )
    await stack.settle()
    [delivery] = await rows(stack, Delivery, Delivery.kind == "provider.send")
    assert delivery.status == status
    assert (delivery.last_error or "").startswith(error)
    if status == "dead":
        assert reply.status == 400
        assert error in reply.body["displayErrorMessage"]
    assert smtp.delivered == []


async def test_a_wrong_smtp_password_is_named_by_the_channel_check(
    stack: Stack, wired: Wired, admin_headers: dict[str, str], smtp: FakeSmtp
) -> None:
    channel_id, _ = await email_channel(stack, admin_headers, wired, smtp)
    good = await stack.relay.post(f"/api/v1/channels/{channel_id}/check", headers=admin_headers)
    assert good.json()["ok"] is True
    smtp.password = "rotated-elsewhere"
    bad = await stack.relay.post(f"/api/v1/channels/{channel_id}/check", headers=admin_headers)
    assert bad.json()["ok"] is False
    assert "535" in bad.json()["detail"]
