"""The `webhook` adapter against a fake in-house platform: signing, classification, rotation, inbound."""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.adapters.base import (
    Attachment,
    ChannelAdapter,
    DeliveryReceipt,
    InboundMessage,
    InboundRequest,
    OutboundMessage,
    SignatureError,
    TypingEvent,
)
from app.adapters.webhook import WebhookAdapter, WebhookConfig, generate_secret, sign
from tests.fakes.provider import FakeProvider

SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()
OLD_SECRET = "whsec_" + base64.b64encode(bytes(range(100, 132))).decode()
PROVIDER = "http://provider.test"
URL = f"{PROVIDER}/messages"
CONFIG: dict[str, Any] = {"url": URL, "secret": SECRET}
ROTATING: dict[str, Any] = {"url": URL, "secret": SECRET, "previous_secret": OLD_SECRET}


def message(message_id: str = "m-1", **overrides: Any) -> OutboundMessage:
    values: dict[str, Any] = {
        "message_id": message_id,
        "channel_id": "ch-1",
        "thread_id": "th-1",
        "recipient_id": "cust-1",
        "recipient_name": "Ann",
        "text": "hello there",
    }
    values.update(overrides)
    return OutboundMessage(**values)


class _Raising(httpx.AsyncBaseTransport):
    def __init__(self, error: Callable[[httpx.Request], Exception]) -> None:
        self.error = error
        self.calls = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        raise self.error(request)


def offline_adapter() -> WebhookAdapter:
    """For inbound checks, which never touch the network."""
    return WebhookAdapter(httpx.AsyncClient(transport=_Raising(lambda r: httpx.ConnectError("offline"))))


@pytest.fixture
def fake() -> FakeProvider:
    return FakeProvider(SECRET, seed=7)


@pytest.fixture
async def http(fake: FakeProvider) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=fake.app), base_url=PROVIDER) as client:
        yield client


@pytest.fixture
def adapter(http: httpx.AsyncClient) -> WebhookAdapter:
    return WebhookAdapter(http)


# Outbound: delivery, idempotency --------------------------------------------------------------------


async def test_a_signed_delivery_is_accepted_and_carries_the_documented_body(
    adapter: WebhookAdapter, fake: FakeProvider
) -> None:
    outbound = message(
        attachments=(Attachment("https://files.test/a.png", "a.png", "image/png", 2048),),
        reply_to_provider_message_id="prov-earlier",
        text="héllo ✓",
    )
    result = await adapter.send(CONFIG, outbound)

    assert result.ok, result.error
    assert result.status_code == 200
    assert result.provider_message_id == fake.deliveries[0].provider_id
    assert result.provider_message_id.startswith("prov-")
    assert fake.delivered_ids() == ["m-1"]
    assert fake.rejected == 0
    body = fake.attempts[0].body
    timestamp = body.pop("timestamp")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", timestamp)
    assert body == {
        "type": "message",
        "id": "m-1",
        "channel_id": "ch-1",
        "thread_id": "th-1",
        "to": {"id": "cust-1", "name": "Ann"},
        "text": "héllo ✓",
        "attachments": [
            {"url": "https://files.test/a.png", "name": "a.png", "type": "image/png", "size": 2048}
        ],
        "reply_to": "prov-earlier",
    }


async def test_webhook_id_is_the_message_id_and_a_repeat_is_a_duplicate_not_a_second_delivery(
    adapter: WebhookAdapter, fake: FakeProvider
) -> None:
    fake.fail_next(503)
    first = await adapter.send(CONFIG, message("m-42"))
    second = await adapter.send(CONFIG, message("m-42"))
    third = await adapter.send(CONFIG, message("m-42"))

    assert not first.ok
    assert not first.permanent
    assert second.ok
    assert third.ok
    assert second.provider_message_id == third.provider_message_id
    assert [attempt.webhook_id for attempt in fake.attempts] == ["m-42"] * 3
    assert [attempt.status for attempt in fake.attempts] == [503, 200, 200]
    assert len(fake.deliveries) == 1
    assert fake.duplicates == 1


async def test_the_provider_id_falls_back_to_our_message_id() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(202, text="accepted")

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
        result = await WebhookAdapter(client).send(CONFIG, message("m-7"))
    assert result.ok
    assert result.provider_message_id == "m-7"


# Outbound: classification ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "permanent", "disable"),
    [
        (400, True, False),
        (401, True, False),
        (404, True, False),
        (408, False, False),
        (410, True, True),
        (425, False, False),
        (429, False, False),
        (500, False, False),
        (502, False, False),
        (503, False, False),
        (504, False, False),
    ],
)
async def test_failures_are_classified(
    adapter: WebhookAdapter, fake: FakeProvider, status: int, permanent: bool, disable: bool
) -> None:
    fake.fail_next(status)
    result = await adapter.send(CONFIG, message())

    assert not result.ok
    assert result.status_code == status
    assert result.permanent is permanent
    assert result.disable_destination is disable
    assert result.retry_after is None
    assert result.error is not None
    assert result.error.startswith(f"HTTP {status}")
    assert "hello there" not in result.error  # never the request body


async def test_201_is_success(adapter: WebhookAdapter, fake: FakeProvider) -> None:
    fake.fail_next(201)  # the fake answers 201 with no id
    result = await adapter.send(CONFIG, message("m-201"))
    assert result.ok
    assert result.status_code == 201
    assert result.provider_message_id == "m-201"


async def test_retry_after_in_seconds(adapter: WebhookAdapter, fake: FakeProvider) -> None:
    fake.fail_next(429, retry_after=30)
    result = await adapter.send(CONFIG, message())
    assert (result.permanent, result.retry_after, result.status_code) == (False, 30.0, 429)


async def test_retry_after_as_an_http_date(adapter: WebhookAdapter, fake: FakeProvider) -> None:
    fake.fail_next(429, retry_after=format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True))
    result = await adapter.send(CONFIG, message())
    assert not result.permanent
    assert result.retry_after is not None
    assert 115 <= result.retry_after <= 121


async def test_a_past_or_garbled_retry_after(adapter: WebhookAdapter, fake: FakeProvider) -> None:
    fake.fail_next(503, retry_after="Wed, 21 Oct 2015 07:28:00 GMT")
    fake.fail_next(503, retry_after="soon")
    past = await adapter.send(CONFIG, message())
    garbled = await adapter.send(CONFIG, message())
    assert past.retry_after == 0.0
    assert garbled.retry_after is None
    assert not past.permanent
    assert not garbled.permanent


async def test_a_wrong_secret_is_refused_by_the_platform(adapter: WebhookAdapter, fake: FakeProvider) -> None:
    result = await adapter.send({"url": URL, "secret": generate_secret()}, message())
    assert (result.ok, result.status_code, result.permanent) == (False, 401, True)
    assert fake.rejected == 1
    assert fake.deliveries == []


async def test_the_error_is_a_short_excerpt_of_the_answer() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, text="bad\n\n request " + "x" * 1000)

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
        result = await WebhookAdapter(client).send(CONFIG, message())
    assert result.error is not None
    assert result.error.startswith("HTTP 400: bad request xxx")
    assert len(result.error) <= len("HTTP 400: ") + 200


async def test_redirects_are_not_followed() -> None:
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(307, headers={"location": "http://elsewhere.test/"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer), follow_redirects=True) as client:
        result = await WebhookAdapter(client).send(CONFIG, message())
    assert seen == [URL]
    assert (result.ok, result.permanent, result.status_code) == (False, True, 307)


@pytest.mark.parametrize(
    "error",
    [
        lambda request: httpx.ConnectError("refused", request=request),
        lambda request: httpx.ReadTimeout("slow", request=request),
        lambda request: httpx.ConnectTimeout("slow", request=request),
        lambda request: httpx.RemoteProtocolError("eof", request=request),
    ],
    ids=["connect-error", "read-timeout", "connect-timeout", "protocol-error"],
)
async def test_transport_errors_and_timeouts_are_retryable(
    error: Callable[[httpx.Request], Exception],
) -> None:
    transport = _Raising(error)
    async with httpx.AsyncClient(transport=transport) as client:
        result = await WebhookAdapter(client).send(CONFIG, message())
    assert transport.calls == 1
    assert not result.ok
    assert result.permanent is False
    assert result.status_code is None
    assert result.error is not None


async def test_an_invalid_config_is_a_permanent_error_without_a_call(fake: FakeProvider) -> None:
    transport = _Raising(lambda r: httpx.ConnectError("unused"))
    async with httpx.AsyncClient(transport=transport) as client:
        result = await WebhookAdapter(client).send({"url": "ftp://x", "secret": "whsec_short"}, message())
    assert result.permanent
    assert transport.calls == 0
    assert result.error is not None
    assert "url" in result.error
    assert "secret" in result.error
    assert "whsec_short" not in result.error


@pytest.mark.parametrize("message_id", ["", "with space", "ünï", "x" * 257])
async def test_a_message_id_that_cannot_be_a_header_is_permanent(
    adapter: WebhookAdapter, fake: FakeProvider, message_id: str
) -> None:
    result = await adapter.send(CONFIG, message(message_id))
    assert result.permanent
    assert fake.attempts == []


# Rotation --------------------------------------------------------------------------------------------


async def test_during_rotation_outbound_carries_two_signatures_and_either_secret_verifies() -> None:
    for receiver_secret in (OLD_SECRET, SECRET):
        fake = FakeProvider(receiver_secret)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=fake.app)) as client:
            result = await WebhookAdapter(client).send(ROTATING, message())
        assert result.ok, (receiver_secret is SECRET, result.error)
        assert len(fake.deliveries) == 1


async def test_rotation_signature_header_shape() -> None:
    captured: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        captured.append(request)
        return httpx.Response(200, json={"id": "p-1"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
        adapter = WebhookAdapter(client)
        await adapter.send(CONFIG, message())
        await adapter.send(ROTATING, message())
    single, double = (request.headers["webhook-signature"].split(" ") for request in captured)
    assert len(single) == 1
    assert len(double) == 2
    assert all(token.startswith("v1,") for token in double)
    assert double[0] == sign(
        WebhookConfig.model_validate(CONFIG).signing_keys()[0],
        captured[1].headers["webhook-id"],
        captured[1].headers["webhook-timestamp"],
        captured[1].content,
    )
    assert captured[1].headers["content-type"] == "application/json"
    assert abs(int(captured[1].headers["webhook-timestamp"]) - time.time()) < 5


# Typing ---------------------------------------------------------------------------------------------


async def test_typing_is_signed_with_a_fresh_id_each_time(
    adapter: WebhookAdapter, fake: FakeProvider
) -> None:
    await adapter.show_typing(CONFIG, "ch-1", "cust-1", True)
    await adapter.show_typing(CONFIG, "ch-1", "cust-1", False)

    assert [call.body for call in fake.typing] == [
        {"type": "typing", "channel_id": "ch-1", "to": {"id": "cust-1"}, "typing": True},
        {"type": "typing", "channel_id": "ch-1", "to": {"id": "cust-1"}, "typing": False},
    ]
    ids = [call.webhook_id for call in fake.typing]
    assert len(set(ids)) == 2
    assert fake.rejected == 0
    assert fake.deliveries == []
    assert fake.attempts == []


async def test_typing_swallows_errors() -> None:
    async with httpx.AsyncClient(transport=_Raising(lambda r: httpx.ConnectError("down"))) as client:
        await WebhookAdapter(client).show_typing(CONFIG, "ch-1", "cust-1", True)
    async with httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(500))) as client:
        await WebhookAdapter(client).show_typing(CONFIG, "ch-1", "cust-1", True)
        await WebhookAdapter(client).show_typing({"url": "nope"}, "ch-1", "cust-1", True)


async def test_typing_uses_a_short_timeout() -> None:
    timeouts: list[Any] = []

    def answer(request: httpx.Request) -> httpx.Response:
        timeouts.append(request.extensions["timeout"])
        return httpx.Response(200)

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
        await WebhookAdapter(client).show_typing(CONFIG, "ch-1", "cust-1", True)
        await WebhookAdapter(client).send(CONFIG, message())
    assert timeouts[0]["read"] == 2.0
    assert timeouts[1]["read"] == 10.0


# Config, destination, recipients -------------------------------------------------------------------


def test_it_is_a_channel_adapter() -> None:
    adapter: ChannelAdapter = offline_adapter()
    assert adapter.name == "webhook"
    assert adapter.secret_fields == ("secret", "previous_secret")


def test_prepare_config_generates_a_secret_and_fills_defaults() -> None:
    prepared = offline_adapter().prepare_config({"url": URL})
    assert set(prepared) == {"url", "secret", "timeout_seconds"}
    assert prepared["url"] == URL
    assert prepared["timeout_seconds"] == 10
    assert isinstance(prepared["secret"], str)
    WebhookConfig.model_validate(prepared)


def test_prepare_config_keeps_given_secrets_as_plain_strings() -> None:
    prepared = offline_adapter().prepare_config({**ROTATING, "timeout_seconds": 3})
    assert prepared == {"url": URL, "secret": SECRET, "previous_secret": OLD_SECRET, "timeout_seconds": 3}


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({}, "url"),
        ({"url": "ftp://x"}, "url"),
        ({"url": URL, "secret": "whsec_x"}, "secret"),
        ({"url": URL, "auto_reply": "hi"}, "auto_reply"),
    ],
)
def test_prepare_config_says_what_is_wrong_without_echoing_secrets(
    config: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValueError, match=field) as caught:
        offline_adapter().prepare_config(config)
    assert "whsec_x" not in str(caught.value)


def test_generate_secret_is_a_valid_fresh_whsec_secret() -> None:
    first, second = generate_secret(), generate_secret()
    assert first != second
    assert first.startswith("whsec_")
    assert len(base64.b64decode(first.removeprefix("whsec_"))) == 32
    assert WebhookConfig.model_validate({"url": URL, "secret": first}).timeout_seconds == 10


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"url": "ftp://h/x", "secret": SECRET}, "url"),
        ({"url": "/relative", "secret": SECRET}, "url"),
        ({"url": "https://user:pw@h/x", "secret": SECRET}, "url"),
        ({"url": "https://h:99999/x", "secret": SECRET}, "url"),
        ({"url": URL, "secret": "not-whsec"}, "secret"),
        ({"url": URL, "secret": "whsec_***"}, "secret"),
        ({"url": URL, "secret": "whsec_" + base64.b64encode(b"short").decode()}, "secret"),
        ({"url": URL, "secret": "whsec_" + base64.b64encode(bytes(65)).decode()}, "secret"),
        ({"url": URL, "secret": SECRET, "previous_secret": "whsec_"}, "previous_secret"),
        ({"url": URL, "secret": SECRET, "timeout_seconds": 0}, "timeout_seconds"),
        ({"url": URL}, "secret"),
        ({"url": URL, "secret": SECRET, "secrett": SECRET}, "secrett"),
    ],
)
def test_config_is_validated(config: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        WebhookConfig.model_validate(config)


def test_secrets_stay_out_of_reprs_and_are_named() -> None:
    config = WebhookConfig.model_validate(ROTATING)
    assert SECRET not in repr(config)
    assert OLD_SECRET not in repr(config)
    assert WebhookAdapter.secret_fields == ("secret", "previous_secret")
    unpadded = SECRET.rstrip("=")
    assert WebhookConfig.model_validate({"url": URL, "secret": unpadded}).signing_keys()[0] == bytes(
        range(32)
    )


@pytest.mark.parametrize(
    ("url", "key"),
    [
        ("https://Hooks.Example.com/a/b?x=1", "webhook:https://hooks.example.com"),
        ("https://hooks.example.com:443/a", "webhook:https://hooks.example.com"),
        ("https://hooks.example.com:8443/a", "webhook:https://hooks.example.com:8443"),
        ("http://10.0.0.5:80/in", "webhook:http://10.0.0.5"),
        ("http://[::1]:8080/in", "webhook:http://[::1]:8080"),
        ("garbage", "webhook:invalid"),
    ],
)
def test_destination_is_scheme_host_and_port(url: str, key: str) -> None:
    assert offline_adapter().destination({"url": url, "secret": SECRET}) == key


@pytest.mark.parametrize(
    ("recipient", "problem"),
    [
        ("cust-1", None),
        ("+15551234567", None),
        ("user@example.com", None),
        ("ünïcode-ok", None),
        ("x" * 200, None),
        ("", "empty"),
        ("x" * 201, "longer than 200"),
        ("two words", "whitespace"),
        ("tab\there", "whitespace"),
        ("bell\x07", "non-printable"),
    ],
)
def test_recipient_error(recipient: str, problem: str | None) -> None:
    error = offline_adapter().recipient_error(recipient)
    if problem is None:
        assert error is None
    else:
        assert error is not None
        assert problem in error


# Inbound: verify -------------------------------------------------------------------------------------


def inbound(body: bytes, headers: dict[str, str]) -> InboundRequest:
    return InboundRequest(raw_body=body, headers=headers, url="https://relay.test/webhooks/x")


BODY = FakeProvider.message_event("ev-1", "cust-1", "hi")


def test_a_valid_signature_passes() -> None:
    fake = FakeProvider(SECRET)
    offline_adapter().verify(inbound(BODY, fake.signed_headers(BODY)), CONFIG)


def test_several_signatures_pass_when_one_matches() -> None:
    headers = FakeProvider(SECRET).signed_headers(BODY)
    other = FakeProvider(generate_secret()).signed_headers(
        BODY, msg_id=headers["webhook-id"], timestamp=int(headers["webhook-timestamp"])
    )
    headers["webhook-signature"] = f"v1a,AAAA {other['webhook-signature']} {headers['webhook-signature']}"
    offline_adapter().verify(inbound(BODY, headers), CONFIG)


def _flip_first_byte(body: bytes) -> bytes:
    return bytes([body[0] ^ 1]) + body[1:]


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        (lambda h, b: (h, _flip_first_byte(b)), "no matching signature"),
        (lambda h, b: (h, b + b" "), "no matching signature"),
        (lambda h, b: ({**h, "webhook-id": "other"}, b), "no matching signature"),
        (lambda h, b: ({**h, "webhook-timestamp": str(int(time.time()) - 360)}, b), "too old"),
        (lambda h, b: ({**h, "webhook-timestamp": str(int(time.time()) + 360)}, b), "future"),
        (lambda h, b: ({**h, "webhook-timestamp": "12.5"}, b), "webhook-timestamp"),
        (lambda h, b: ({**h, "webhook-signature": "garbage"}, b), "malformed"),
        (lambda h, b: ({**h, "webhook-signature": "v1,not-base64!!"}, b), "malformed"),
        (lambda h, b: ({**h, "webhook-signature": "v1,"}, b), "malformed"),
        (lambda h, b: ({**h, "webhook-signature": "v1,AAAA"}, b), "malformed"),
        (lambda h, b: ({**h, "webhook-signature": "v1a,AAAA"}, b), "no v1 signature"),
        (lambda h, b: ({**h, "webhook-signature": ""}, b), "missing webhook-signature"),
        (lambda h, b: ({**h, "webhook-signature": "   "}, b), "no v1 signature"),
        (lambda h, b: ({k: v for k, v in h.items() if k != "webhook-id"}, b), "missing webhook-id"),
        (lambda h, b: ({k: v for k, v in h.items() if k != "webhook-timestamp"}, b), "missing webhook-time"),
        (lambda h, b: ({k: v for k, v in h.items() if k != "webhook-signature"}, b), "missing webhook-sig"),
    ],
)
def test_anything_unproven_is_a_signature_error(
    tamper: Callable[[dict[str, str], bytes], tuple[dict[str, str], bytes]], reason: str
) -> None:
    headers, body = tamper(FakeProvider(SECRET).signed_headers(BODY), BODY)
    with pytest.raises(SignatureError, match=reason):
        offline_adapter().verify(inbound(body, headers), CONFIG)


def test_timestamps_within_five_minutes_either_way_pass() -> None:
    fake = FakeProvider(SECRET)
    for offset in (-290, 290):
        headers = fake.signed_headers(BODY, timestamp=int(time.time()) + offset)
        offline_adapter().verify(inbound(BODY, headers), CONFIG)


def test_the_old_secret_is_accepted_only_while_it_is_the_previous_secret() -> None:
    headers = FakeProvider(OLD_SECRET).signed_headers(BODY)
    offline_adapter().verify(inbound(BODY, headers), ROTATING)
    with pytest.raises(SignatureError, match="no matching signature"):
        offline_adapter().verify(inbound(BODY, headers), CONFIG)


def test_a_channel_without_a_valid_secret_refuses_everything() -> None:
    headers = FakeProvider(SECRET).signed_headers(BODY)
    with pytest.raises(SignatureError, match="secret"):
        offline_adapter().verify(inbound(BODY, headers), {"url": URL})


def test_a_body_that_is_not_utf8_is_verified_over_its_raw_bytes() -> None:
    body = b'{"x": "\xff\xfe"}'
    msg_id, timestamp = "msg_raw", str(int(time.time()))
    key = WebhookConfig.model_validate(CONFIG).signing_keys()[0]
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": timestamp,
        "webhook-signature": sign(key, msg_id, timestamp, body),
    }
    offline_adapter().verify(inbound(body, headers), CONFIG)


_ADAPTER = offline_adapter()


@settings(max_examples=300, deadline=None)
@given(
    msg_id=st.text(max_size=40),
    timestamp=st.one_of(st.text(max_size=20), st.integers(-(10**15), 10**15).map(str)),
    signature=st.one_of(
        st.text(max_size=120),
        st.lists(
            st.tuples(st.sampled_from(["v1", "v1a", "v2", ""]), st.text(max_size=50)).map(",".join),
            max_size=4,
        ).map(" ".join),
    ),
    body=st.binary(max_size=64),
)
def test_arbitrary_headers_only_ever_raise_signature_error(
    msg_id: str, timestamp: str, signature: str, body: bytes
) -> None:
    headers = {"webhook-id": msg_id, "webhook-timestamp": timestamp, "webhook-signature": signature}
    with pytest.raises(SignatureError):
        _ADAPTER.verify(inbound(body, headers), CONFIG)


@settings(max_examples=100, deadline=None)
@given(
    msg_id=st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=60),
    body=st.binary(max_size=256),
)
def test_our_signature_always_verifies_and_any_flipped_bit_never_does(msg_id: str, body: bytes) -> None:
    timestamp = str(int(time.time()))
    key = WebhookConfig.model_validate(CONFIG).signing_keys()[0]
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": timestamp,
        "webhook-signature": sign(key, msg_id, timestamp, body),
    }
    _ADAPTER.verify(inbound(body, headers), CONFIG)
    if body:
        with pytest.raises(SignatureError):
            _ADAPTER.verify(inbound(_flip_first_byte(body), headers), CONFIG)


# Inbound: parse --------------------------------------------------------------------------------------


def parse(body: Any) -> list[Any]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return list(_ADAPTER.parse(inbound(raw, {}), CONFIG))


def test_parse_a_message() -> None:
    assert parse(FakeProvider.message_event("ev-1", "cust-1", "hi", name="Ann")) == [
        InboundMessage(sender_id="cust-1", text="hi", sender_name="Ann", event_id="ev-1")
    ]


def test_parse_a_message_with_only_an_attachment() -> None:
    body = {
        "type": "message",
        "id": "ev-2",
        "from": {"id": "cust-1"},
        "attachments": [
            {"url": "https://files.test/p.jpg", "name": "p.jpg"},
            {"url": "https://files.test/q"},
        ],
        "unknown": "ignored",
    }
    assert parse(body) == [
        InboundMessage(
            sender_id="cust-1",
            text="",
            event_id="ev-2",
            attachments=(Attachment("https://files.test/p.jpg", "p.jpg"), Attachment("https://files.test/q")),
        )
    ]


@pytest.mark.parametrize(
    ("wire", "ours"), [("delivered", "delivered"), ("read", "seen"), ("failed", "failed")]
)
def test_parse_a_status(wire: str, ours: str) -> None:
    assert parse(FakeProvider.status_event("ev-3", "m-1", wire)) == [
        DeliveryReceipt(provider_message_id="m-1", status=ours, event_id="ev-3")  # type: ignore[arg-type]
    ]


def test_parse_a_failed_status_with_a_reason() -> None:
    body = {"type": "status", "id": "ev-4", "message_id": "m-1", "status": "failed", "reason": "blocked"}
    assert parse(body) == [DeliveryReceipt("m-1", "failed", reason="blocked", event_id="ev-4")]


def test_parse_typing() -> None:
    assert parse({"type": "typing", "from": {"id": "cust-1"}, "typing": True}) == [
        TypingEvent("cust-1", True)
    ]


def test_parse_a_batch() -> None:
    batch = [
        json.loads(FakeProvider.message_event("ev-1", "cust-1", "hi")),
        json.loads(FakeProvider.status_event("ev-2", "m-1", "read")),
        {"type": "typing", "from": {"id": "cust-1"}, "typing": False},
    ]
    events = parse(batch)
    assert [type(event) for event in events] == [InboundMessage, DeliveryReceipt, TypingEvent]
    assert parse([]) == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"not json", "body: not valid JSON"),
        (b"\xff\xfe", "body: not valid JSON"),
        ("a string", "body: must be a JSON object"),
        ({"id": "ev"}, "type: must be one of message, status, typing"),
        ({"type": "reaction", "id": "ev"}, "type: must be one of"),
        ({"type": "message", "id": "ev", "text": "hi"}, "from: Field required"),
        ({"type": "message", "id": "ev", "from": {}, "text": "hi"}, "from.id: Field required"),
        ({"type": "message", "id": "ev", "from": {"id": "a b"}, "text": "hi"}, "from.id: .*whitespace"),
        ({"type": "message", "from": {"id": "c"}, "text": "hi"}, "id: Field required"),
        ({"type": "message", "id": "ev", "from": {"id": "c"}}, "text: a message needs text"),
        ({"type": "message", "id": "ev", "from": {"id": "c"}, "text": ""}, "text: a message needs text"),
        (
            {"type": "message", "id": "ev", "from": {"id": "c"}, "text": 5},
            "text: Input should be a valid string",
        ),
        ({"type": "message", "id": "ev", "from": {"id": "c"}, "attachments": [{}]}, "attachments.0.url"),
        (
            {"type": "message", "id": "ev", "from": {"id": "c"}, "attachments": [{"url": "file:///etc/x"}]},
            "attachments.0.url",
        ),
        ({"type": "status", "id": "ev", "message_id": "m", "status": "lost"}, "status: Input should be"),
        ({"type": "status", "id": "ev", "status": "read"}, "message_id: Field required"),
        ({"type": "typing", "from": {"id": "c"}, "typing": "yes"}, "typing: Input should be a valid boolean"),
        ([{"type": "typing", "from": {"id": "c"}, "typing": True}, 3], r"\[1\]: must be a JSON object"),
        ([{"type": "typing", "from": {"id": "c"}, "typing": True}, {"type": "x"}], r"\[1\]\.type: must be"),
        ([{"type": "status", "id": "e", "message_id": "m"}], r"\[0\]\.status: Field required"),
        ([{"type": "typing", "from": {"id": "c"}, "typing": True}] * 501, "at most 500"),
    ],
)
def test_malformed_bodies_name_the_field(body: Any, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        parse(body)
