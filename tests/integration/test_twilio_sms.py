"""twilio_sms end to end against a fake Twilio: CXone's agent reply goes out as an SMS with a status
callback, Twilio's delivery report reaches CXone as the message status, a customer's SMS reaches CXone,
and Twilio's error codes decide between retry and dead."""

from __future__ import annotations

import pytest

from app.models import Delivery, Message
from tests.conftest import Stack, Wired, rows
from tests.fakes.twilio import FakeTwilio

TWILIO_URL = "http://api.twilio.test"
SHOP_NUMBER = "+15005550006"
CUSTOMER = {"idOnExternalPlatform": "+15551230001", "name": "Ada"}


async def twilio_channel(stack: Stack, headers: dict[str, str], wired: Wired) -> tuple[str, FakeTwilio]:
    twilio = FakeTwilio(FakeTwilio.new_account_sid(), "auth-token-1234567890", SHOP_NUMBER)
    stack.hosts.add(TWILIO_URL, twilio.app)
    created = await stack.relay.post(
        "/api/v1/channels",
        headers=headers,
        json={
            "integration_id": wired.integration["id"],
            "name": "SMS",
            "adapter": "twilio_sms",
            "config": {
                "account_sid": twilio.account_sid,
                "auth_token": twilio.auth_token,
                "from_number": SHOP_NUMBER,
                "api_base": TWILIO_URL,
            },
        },
    )
    assert created.status_code == 201, created.text
    assert "auth_token" not in created.json()["config"]
    return str(created.json()["id"]), twilio


async def test_a_reply_goes_out_as_sms_and_its_delivery_report_reaches_cxone(
    stack: Stack, wired: Wired, admin_headers: dict[str, str]
) -> None:
    channel_id, twilio = await twilio_channel(stack, admin_headers, wired)
    result = await stack.simulator.send_agent_reply(
        channel_id=channel_id, text="Your parcel is on its way", recipients=[CUSTOMER]
    )
    assert result.status == 200
    await stack.settle()
    [sms] = twilio.sent
    assert (sms.to, sms.sender, sms.body) == (
        CUSTOMER["idOnExternalPlatform"],
        SHOP_NUMBER,
        "Your parcel is on its way",
    )
    assert sms.status_callback == f"http://relay.test/webhooks/twilio_sms/{channel_id}"
    message_id = result.body["message"]["idOnExternalPlatform"]
    [message] = await rows(stack, Message, Message.id == message_id)
    assert (message.status, message.provider_message_id) == ("sent", sms.sid)

    for status in ("sent", "delivered", "delivered"):  # "sent" is not news to CXone; the repeat is ignored
        body, headers = twilio.status_callback(sms, status)
        answer = await stack.relay.post(f"/webhooks/twilio_sms/{channel_id}", content=body, headers=headers)
        assert answer.status_code == 200, answer.text
        # No background worker here: let each status reach CXone before the next one is queued behind it.
        await stack.settle()
    assert result.message is not None
    assert [h["status"] for h in result.message.status_history] == ["delivered"]


async def test_a_customer_sms_reaches_cxone_and_an_echo_or_forgery_does_not(
    stack: Stack, wired: Wired, admin_headers: dict[str, str]
) -> None:
    channel_id, twilio = await twilio_channel(stack, admin_headers, wired)
    url = f"http://relay.test/webhooks/twilio_sms/{channel_id}"
    body, headers = twilio.incoming(url, sender=CUSTOMER["idOnExternalPlatform"], body="Where is my parcel?")
    answer = await stack.relay.post(f"/webhooks/twilio_sms/{channel_id}", content=body, headers=headers)
    assert answer.json()["messages"] == 1
    echo_body, echo_headers = twilio.incoming(url, sender=SHOP_NUMBER, body="Your parcel is on its way")
    echo = await stack.relay.post(
        f"/webhooks/twilio_sms/{channel_id}", content=echo_body, headers=echo_headers
    )
    assert echo.json()["echoes"] == 1
    forged = await stack.relay.post(
        f"/webhooks/twilio_sms/{channel_id}", content=body.replace(b"parcel", b"parcal"), headers=headers
    )
    assert forged.status_code == 401
    await stack.settle()
    [message] = await rows(stack, Message)
    assert (message.text, message.status) == ("Where is my parcel?", "relayed")
    created = stack.simulator.calls_to(r"/channels/.+/messages$", method="POST", direction="in")
    assert len(created) == 1


@pytest.mark.parametrize(
    ("setup", "status", "error"),
    [
        ("unsubscribed", "dead", "Twilio 21610"),
        ("landline", "dead", "Twilio 21614"),
        ("throttled", "retry", None),
    ],
)
async def test_twilio_error_codes_decide_between_retry_and_dead(
    stack: Stack, wired: Wired, admin_headers: dict[str, str], setup: str, status: str, error: str | None
) -> None:
    channel_id, twilio = await twilio_channel(stack, admin_headers, wired)
    number = CUSTOMER["idOnExternalPlatform"]
    if setup == "unsubscribed":
        twilio.unsubscribed.add(number)
    elif setup == "landline":
        twilio.landlines.add(number)
    else:
        twilio.throttle_next = 1
    result = await stack.simulator.send_agent_reply(
        channel_id=channel_id, text="Hello", recipients=[CUSTOMER]
    )
    await stack.settle()
    if status == "dead":
        assert result.status == 400  # answered to CXone at once: no retry can fix it
        assert error is not None
        assert error in result.body["displayErrorMessage"]
        [delivery] = await rows(stack, Delivery, Delivery.kind == "provider.send")
        assert (delivery.status, delivery.attempts) == ("dead", 1)
    else:
        assert result.status == 200
        [delivery] = await rows(stack, Delivery, Delivery.kind == "provider.send")
        assert delivery.status == "pending"  # throttled: back off and try again
        assert delivery.last_error is not None
        assert "20429" in delivery.last_error


async def test_mms_media_reaches_cxone_and_an_agents_file_goes_as_a_relay_link(
    stack: Stack, wired: Wired, admin_headers: dict[str, str]
) -> None:
    channel_id, twilio = await twilio_channel(stack, admin_headers, wired)
    url = f"http://relay.test/webhooks/twilio_sms/{channel_id}"
    photo = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8
    body, headers = twilio.incoming(
        url,
        sender=CUSTOMER["idOnExternalPlatform"],
        body="The damage",
        media=[(photo, "image/jpeg")],
        api_base=TWILIO_URL,
    )
    answer = await stack.relay.post(f"/webhooks/twilio_sms/{channel_id}", content=body, headers=headers)
    assert answer.json()["messages"] == 1
    await stack.settle()
    [thread] = [t for t in stack.simulator.threads.values() if t.channel_id == channel_id]
    [attachment] = thread.messages[0].attachments
    assert stack.simulator.attachment_at(attachment["url"]) == (photo, "image/jpeg")
    assert attachment["friendlyName"] == "attachment.jpg"

    label = b"%PDF-1.7 return label"
    reply = await stack.simulator.send_agent_reply(
        channel_id=channel_id,
        text="Print this label",
        recipients=[CUSTOMER],
        attachments=[
            {"url": stack.simulator.host_file(label, "application/pdf"), "friendlyName": "label.pdf"}
        ],
    )
    assert reply.status == 200
    await stack.settle()
    [sms] = twilio.sent
    [link] = sms.media
    assert link.startswith("http://relay.test/files/")
    assert link.endswith("/label.pdf")
    served = await stack.relay.get(link)
    assert served.status_code == 200
    assert (served.content, served.headers["content-type"]) == (label, "application/pdf")
    file_id, key, name = link.rsplit("/", 3)[1:]
    wrong_key = await stack.relay.get(f"/files/{file_id}/{'0' * len(key)}/{name}")
    assert wrong_key.status_code == 404
    assert wrong_key.json()["code"] == "file_not_found"
    assert twilio.downloads == 1  # the customer's photo was fetched once
