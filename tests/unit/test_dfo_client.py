"""DfoClient against the in-process CXone simulator: auth, discovery, typed calls and error mapping."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.cxone.client import (
    Attachment,
    ChannelSpec,
    CreatedMessage,
    DfoClient,
    DfoCredentials,
    EndUserIdentity,
    MessageContent,
    MessageThread,
    NewMessage,
    decode_jwt_claims,
    iso_ms,
)
from app.cxone.errors import (
    DfoAuthError,
    DfoConflict,
    DfoError,
    DfoNotFound,
    DfoRateLimited,
    DfoServerError,
    DfoTransportError,
    DfoValidationError,
    error_from_response,
    is_retryable,
)
from app.cxone.simulator import CxoneSimulator

CXONE = "http://cxone.test"
KEY_ID, KEY_SECRET = "demo-access-key", "demo-access-secret"
ISO_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def sim() -> CxoneSimulator:
    return CxoneSimulator(public_url=CXONE)


@pytest.fixture
async def http(sim: CxoneSimulator) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sim.app), base_url=CXONE) as client:
        yield client


def make_client(http: httpx.AsyncClient, **overrides: Any) -> DfoClient:
    clock = overrides.pop("clock", None)
    values: dict[str, Any] = {"issuer_url": CXONE, "access_key_id": KEY_ID, "access_key_secret": KEY_SECRET}
    values.update(overrides)
    if clock is not None:
        return DfoClient(DfoCredentials(**values), http=http, clock=clock)
    return DfoClient(DfoCredentials(**values), http=http)


@pytest.fixture
def client(http: httpx.AsyncClient) -> DfoClient:
    return make_client(http)


@pytest.fixture
def integration_id(sim: CxoneSimulator) -> str:
    return sim.register_byoc_integration(
        name="Relay",
        box_url="http://box.test/box",
        authorization_url="http://box.test/box/1.0/token",
        client_id="cid",
        client_secret="csecret",
    )


def spec(integration_id: str, channel_id: str = "relay_sms1", **extra: Any) -> ChannelSpec:
    return ChannelSpec(
        id=channel_id,
        id_on_external_platform=channel_id,
        channel_integration_id=integration_id,
        real_external_platform_id="custom",
        name="SMS line",
        is_private=True,
        has_tree_structure=False,
        **extra,
    )


@pytest.fixture
async def channel_id(client: DfoClient, integration_id: str) -> str:
    channel = await client.create_channel(spec(integration_id, has_reply=True, has_outbound_flow=True))
    return channel.id


def inbound(message_id: str = "m-001", thread: str = "conv-42", text: str = "Hello") -> NewMessage:
    return NewMessage(
        id_on_external_platform=message_id,
        created_at_with_milliseconds=datetime(2025, 1, 1, 10, 0, tzinfo=UTC),
        thread=MessageThread(id_on_external_platform=thread),
        message_content=MessageContent.of_text(text),
        author_end_user_identity=EndUserIdentity(
            id_on_external_platform="user-7", first_name="Ada", last_name="L"
        ),
    )


def token_calls(sim: CxoneSimulator) -> int:
    return len(sim.calls_to(r"^/auth/token$", method="POST"))


# --------------------------------------------------------------------------- auth & discovery


async def test_discovery_password_grant_and_tenant_from_id_token(
    sim: CxoneSimulator, client: DfoClient
) -> None:
    assert await client.list_channels() == []

    assert [c.path for c in sim.calls] == [
        "/.well-known/openid-configuration",
        "/auth/token",
        "/.well-known/cxone-configuration",
        "/dfo/3.0/channels",
    ]
    token_call = sim.calls[1]
    assert token_call.form == {"grant_type": "password", "username": KEY_ID, "password": "[redacted]"}
    assert not token_call.authorization_present  # no client id configured -> no Basic auth
    assert sim.calls[2].query == {"tenantId": sim.tenant_id}
    assert client.tenant_id == sim.tenant_id
    assert sim.calls[3].headers["authorization"] == "Bearer [redacted]"
    assert await client.dfo_base_url() == f"{CXONE}/dfo/3.0"


async def test_client_id_is_sent_as_basic_auth(sim: CxoneSimulator, http: httpx.AsyncClient) -> None:
    client = make_client(http, client_id="app-id", client_secret="app-secret")
    await client.list_channels()
    (token_call,) = sim.calls_to("^/auth/token$")
    assert token_call.headers["authorization"] == "Basic [redacted]"


async def test_id_token_carries_tenant_issuer_and_expiry(
    sim: CxoneSimulator, http: httpx.AsyncClient
) -> None:
    response = await http.post(
        "/auth/token", data={"grant_type": "password", "username": KEY_ID, "password": KEY_SECRET}
    )
    body = response.json()
    claims = decode_jwt_claims(body["id_token"])
    assert claims["tenantId"] == sim.tenant_id
    assert claims["iss"] == CXONE
    assert claims["exp"] > claims["iat"]
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600


async def test_token_is_reused_then_refreshed_before_expiry(
    sim: CxoneSimulator, http: httpx.AsyncClient
) -> None:
    clock = FakeClock()
    client = make_client(http, clock=clock)
    await client.list_channels()
    clock.now += 3600 - 61  # still more than the 60 s margin left
    await client.list_channels()
    assert token_calls(sim) == 1
    clock.now += 2  # now inside the margin: refresh before CXone would refuse the token
    await client.list_channels()
    assert token_calls(sim) == 2
    assert len(sim.calls_to("openid-configuration")) == 1  # discovery stays cached


async def test_concurrent_calls_without_token_make_exactly_one_token_request(
    sim: CxoneSimulator, client: DfoClient
) -> None:
    results = await asyncio.gather(*(client.list_channels() for _ in range(20)))
    assert len(results) == 20
    assert token_calls(sim) == 1
    assert len(sim.calls_to("cxone-configuration")) == 1
    assert len(sim.calls_to(r"^/dfo/3\.0/channels$")) == 20


async def test_401_refreshes_token_once_and_retries(sim: CxoneSimulator, client: DfoClient) -> None:
    await client.list_channels()
    sim.expire_tokens()
    assert await client.list_channels() == []
    assert token_calls(sim) == 2
    statuses = [c.status for c in sim.calls_to(r"^/dfo/3\.0/channels$")]
    assert statuses == [200, 401, 200]


async def test_persistent_401_raises_auth_error(sim: CxoneSimulator, client: DfoClient) -> None:
    sim.fail_next(
        "GET",
        r"^/dfo/3\.0/channels$",
        401,
        times=5,
        body={"errors": [{"message": "Token revoked", "errorCode": "Unauthorized"}]},
    )
    with pytest.raises(DfoAuthError, match="Token revoked") as info:
        await client.list_channels()
    assert info.value.status_code == 401
    assert len(sim.calls_to(r"^/dfo/3\.0/channels$")) == 2  # the call and exactly one retry
    assert token_calls(sim) == 2


async def test_wrong_access_key_secret_is_an_auth_error(sim: CxoneSimulator, http: httpx.AsyncClient) -> None:
    client = make_client(http, access_key_secret="nope")
    with pytest.raises(DfoAuthError, match="Invalid access key or secret") as info:
        await client.list_channels()
    assert info.value.status_code == 401
    assert not sim.calls_to("^/dfo/")


async def test_fixed_bearer_makes_no_token_call_and_no_retry(
    sim: CxoneSimulator, http: httpx.AsyncClient
) -> None:
    bearer = sim.issue_access_token()
    client = DfoClient(DfoCredentials(bearer_token=bearer, api_host=CXONE), http=http)
    assert await client.list_channels() == []
    sim.expire_tokens()
    with pytest.raises(DfoAuthError):
        await client.list_channels()
    assert [c.path for c in sim.calls] == ["/dfo/3.0/channels", "/dfo/3.0/channels"]


def test_credentials_are_required_and_never_printed() -> None:
    with pytest.raises(ValueError, match="access_key_id"):
        DfoClient(DfoCredentials(access_key_id="only-the-id"), http=httpx.AsyncClient())
    shown = repr(DfoCredentials(access_key_id="k", access_key_secret="s3cr3t", bearer_token="tok3n"))
    assert "s3cr3t" not in shown
    assert "tok3n" not in shown


# --------------------------------------------------------------------------- typed calls


async def test_channel_create_update_list_delete(client: DfoClient, integration_id: str) -> None:
    created = await client.create_channel(spec(integration_id, content_format="plain", has_reply=True))
    assert created.id == "relay_sms1"
    assert created.channel_integration_id == integration_id
    assert created.has_reply is True

    await client.create_channel(spec(integration_id).model_copy(update={"name": "Renamed"}))
    listed = await client.list_channels()
    assert [(c.id, c.name) for c in listed] == [("relay_sms1", "Renamed")]

    await client.create_channel(spec(integration_id, "relay_sms2"))
    assert [c.id for c in await client.list_channels(page=2, size=1)] == ["relay_sms2"]

    await client.delete_channel("relay_sms1")
    assert [c.id for c in await client.list_channels()] == ["relay_sms2"]
    with pytest.raises(DfoNotFound, match="Channel not found"):
        await client.delete_channel("relay_sms1")


async def test_channel_body_is_camel_case_without_nones(
    sim: CxoneSimulator, client: DfoClient, integration_id: str
) -> None:
    await client.create_channel(spec(integration_id, has_ability_to_send_files=False))
    (call,) = sim.calls_to(r"^/dfo/3\.0/channels$", method="POST")
    assert call.json == {
        "id": "relay_sms1",
        "idOnExternalPlatform": "relay_sms1",
        "channelIntegrationId": integration_id,
        "realExternalPlatformId": "custom",
        "name": "SMS line",
        "isPrivate": True,
        "hasTreeStructure": False,
        "hasAbilityToSendFiles": False,
    }


async def test_channel_with_unknown_integration_keeps_cxone_message(client: DfoClient) -> None:
    with pytest.raises(DfoValidationError) as info:
        await client.create_channel(spec("not-a-registered-integration"))
    assert str(info.value) == "Channel integration not found"
    assert info.value.errors[0]["field"] == "channelIntegrationId"
    assert info.value.status_code == 400


async def test_create_message_is_idempotent_on_id_on_external_platform(
    sim: CxoneSimulator, client: DfoClient, channel_id: str
) -> None:
    first = await client.create_message(channel_id, inbound())
    second = await client.create_message(channel_id, inbound())

    assert isinstance(first, CreatedMessage)
    assert first.consumer_contact_id is not None
    assert first.consumer_contact_id.isdigit()
    assert first.message_id
    assert first.thread_id
    assert (second.consumer_contact_id, second.thread_id, second.message_id) == (
        first.consumer_contact_id,
        first.thread_id,
        first.message_id,
    )
    assert first.thread_id_on_external_platform == "conv-42"
    assert first.contact_status == "new"
    thread = sim.thread(channel_id, "conv-42")
    assert thread is not None
    assert thread.id == first.thread_id
    messages = sim.thread_messages(channel_id, "conv-42")
    assert [(m.direction, m.text, m.author_end_user_id) for m in messages] == [("inbound", "Hello", "user-7")]


async def test_create_message_sends_the_contract_body(
    sim: CxoneSimulator, client: DfoClient, channel_id: str
) -> None:
    message = inbound().model_copy(
        update={"attachments": [Attachment(friendly_name="a.png", url="https://files.test/a.png")]}
    )
    await client.create_message(channel_id, message)
    (call,) = sim.calls_to(r"/messages$")
    assert call.json == {
        "idOnExternalPlatform": "m-001",
        "direction": "inbound",
        "createdAtWithMilliseconds": "2025-01-01T10:00:00.000Z",
        "thread": {"idOnExternalPlatform": "conv-42"},
        "messageContent": {"type": "TEXT", "payload": {"text": "Hello"}},
        "authorEndUserIdentity": {"idOnExternalPlatform": "user-7", "firstName": "Ada", "lastName": "L"},
        "attachments": [{"friendlyName": "a.png", "url": "https://files.test/a.png"}],
    }


async def test_create_message_on_unknown_channel_is_not_found(client: DfoClient) -> None:
    with pytest.raises(DfoNotFound):
        await client.create_message("nope", inbound())


async def test_ids_with_reserved_characters_are_percent_encoded(
    sim: CxoneSimulator, client: DfoClient, channel_id: str
) -> None:
    awkward = "whatsapp:+33 6/12?x#y"
    await client.create_message(channel_id, inbound(thread=awkward, message_id="a/b c"))
    await client.update_thread(channel_id, awkward, can_add_more_messages=False)
    await client.update_message_status(channel_id, "a/b c", "seen", datetime(2025, 1, 1, tzinfo=UTC))
    thread = sim.thread(channel_id, awkward)
    assert thread is not None
    assert thread.can_add_more_messages is False
    assert thread.messages[0].status == "seen"


async def test_update_message_status(sim: CxoneSimulator, client: DfoClient, channel_id: str) -> None:
    await client.create_message(channel_id, inbound())
    when = datetime(2025, 1, 1, 12, 30, 15, 123456, tzinfo=timezone(timedelta(hours=2)))
    await client.update_message_status(channel_id, "m-001", "failed", when, reason="carrier rejected")
    (message,) = sim.thread_messages(channel_id, "conv-42")
    assert message.status == "failed"
    assert message.status_history == [
        {"status": "failed", "updatedAt": "2025-01-01T10:30:15.123Z", "reason": "carrier rejected"}
    ]
    with pytest.raises(DfoNotFound, match="Message not found"):
        await client.update_message_status(channel_id, "unknown", "delivered", when)


async def test_sender_action_and_thread_update(
    sim: CxoneSimulator, client: DfoClient, channel_id: str
) -> None:
    await client.create_message(channel_id, inbound())
    await client.send_sender_action(channel_id, "conv-42", "isTypingOn")
    await client.send_sender_action(channel_id, "conv-42", "isTypingOff")
    await client.update_thread(channel_id, "conv-42", can_add_more_messages=False)
    thread = sim.thread(channel_id, "conv-42")
    assert thread is not None
    assert thread.sender_actions == ["isTypingOn", "isTypingOff"]
    assert thread.can_add_more_messages is False
    assert sim.calls_to("sender-actions$")[0].json == {"action": "isTypingOn"}
    with pytest.raises(DfoNotFound):
        await client.update_thread(channel_id, "no-such-thread", can_add_more_messages=True)


async def test_closing_a_contact_opens_a_new_one_on_the_next_message(
    sim: CxoneSimulator, client: DfoClient, channel_id: str
) -> None:
    first = await client.create_message(channel_id, inbound("m-1"))
    same = await client.create_message(channel_id, inbound("m-2"))
    assert same.consumer_contact_id == first.consumer_contact_id  # one contact per open thread
    assert first.consumer_contact_id is not None
    await client.update_contact_status(first.consumer_contact_id, "closed", updated_by_user_id=7)
    assert sim.contacts[first.consumer_contact_id].status == "closed"
    later = await client.create_message(channel_id, inbound("m-3"))
    assert later.consumer_contact_id != first.consumer_contact_id
    assert later.thread_id == first.thread_id
    with pytest.raises(DfoNotFound):
        await client.update_contact_status("999", "closed")


async def test_temporary_attachment_round_trip(client: DfoClient, http: httpx.AsyncClient) -> None:
    content = bytes(range(256))
    attachment = await client.create_temporary_attachment(content, "application/octet-stream")
    assert attachment.id
    assert attachment.expire_at is not None
    assert attachment.expire_at > datetime.now(UTC)
    downloaded = await http.get(attachment.url)
    assert downloaded.content == content
    assert downloaded.headers["content-type"] == "application/octet-stream"


async def test_one_time_token_verification_and_reuse_refused(
    sim: CxoneSimulator, client: DfoClient, http: httpx.AsyncClient
) -> None:
    token = sim.issue_one_time_token(brand_id=1234, user_id=42)
    info = await client.verify_one_time_token(brand_id=1234, user_id=42, token=token)
    assert info.brand.id == 1234
    assert info.brand.tenant_id == sim.tenant_id
    assert info.user.id == 42
    # The access token is a real CXone bearer usable on DFO.
    admin = DfoClient(DfoCredentials(bearer_token=info.access_token, api_host=CXONE), http=http)
    assert await admin.list_channels() == []
    (verification,) = sim.calls_to("one-time-token/verification")
    assert verification.json == {
        "brandId": 1234,
        "userId": 42,
        "purpose": "channel-integration",
        "token": "[redacted]",
    }

    with pytest.raises(DfoAuthError, match="already used"):
        await client.verify_one_time_token(brand_id=1234, user_id=42, token=token)
    other = sim.issue_one_time_token(brand_id=1234, user_id=42)
    with pytest.raises(DfoAuthError):
        await client.verify_one_time_token(brand_id=9999, user_id=42, token=other)


# --------------------------------------------------------------------------- error mapping


@pytest.mark.parametrize(
    ("status", "exc_type"),
    [
        (400, DfoValidationError),
        (403, DfoAuthError),
        (404, DfoNotFound),
        (409, DfoConflict),
        (422, DfoValidationError),
        (500, DfoServerError),
        (503, DfoServerError),
        (408, DfoError),
    ],
)
async def test_http_errors_map_to_typed_exceptions(
    sim: CxoneSimulator, client: DfoClient, status: int, exc_type: type[DfoError]
) -> None:
    body = {
        "errors": [
            {
                "field": "name",
                "message": "Name is too long",
                "errorCode": "TooLong",
                "parameters": {"max": 3},
            },
            {"message": "Second problem"},
        ],
        "uid": "req-123",
    }
    sim.fail_next("GET", r"^/dfo/3\.0/channels$", status, body=body)
    with pytest.raises(exc_type) as info:
        await client.list_channels()
    exc = info.value
    assert type(exc) is exc_type
    assert str(exc) == "Name is too long; Second problem"
    assert exc.status_code == status
    assert exc.uid == "req-123"
    assert exc.errors[0]["errorCode"] == "TooLong"
    assert is_retryable(exc) == (status >= 500 or status == 408)


async def test_rate_limit_keeps_retry_after(sim: CxoneSimulator, client: DfoClient) -> None:
    sim.fail_next(
        "GET",
        r"^/dfo/3\.0/channels$",
        429,
        headers={"Retry-After": "7"},
        body={"errors": [{"message": "Too many requests"}]},
    )
    with pytest.raises(DfoRateLimited) as info:
        await client.list_channels()
    assert info.value.retry_after == 7.0
    assert str(info.value) == "Too many requests"
    assert is_retryable(info.value)


async def test_non_json_error_body_and_transport_errors() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/html"):
            raise httpx.ConnectError("boom", request=request)
        if "timeout" in request.url.path:
            raise httpx.ReadTimeout("slow", request=request)
        return httpx.Response(502, text="<html>Bad gateway</html>")

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        client = DfoClient(DfoCredentials(bearer_token="t", api_host="https://api.test"), http=http)
        with pytest.raises(DfoServerError) as info:
            await client.list_channels()
        assert info.value.status_code == 502
        assert "502" in str(info.value)
        with pytest.raises(DfoTransportError) as transport:
            await client.delete_channel("html")
        assert transport.value.status_code is None
        assert is_retryable(transport.value)
        with pytest.raises(DfoTransportError):
            await client.delete_channel("timeout")


async def test_path_segments_are_encoded_on_the_wire() -> None:
    seen: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.raw_path)
        return httpx.Response(204)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        client = DfoClient(DfoCredentials(bearer_token="t", api_host="https://api.test/"), http=http)
        await client.send_sender_action("ch 1", "a/b?c#d", "isTypingOn")
        await client.delete_channel("..")
    assert seen == [
        b"/dfo/3.0/channels/ch%201/threads/a%2Fb%3Fc%23d/sender-actions",
        b"/dfo/3.0/channels/%2E%2E",
    ]


# --------------------------------------------------------------------------- properties


@given(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.timezones()))
def test_iso_ms_format_and_round_trip(dt: datetime) -> None:
    text = iso_ms(dt)
    assert ISO_MS.match(text), text
    parsed = datetime.fromisoformat(text)
    expected = dt.astimezone(UTC)
    assert parsed == expected.replace(microsecond=expected.microsecond // 1000 * 1000)


@given(st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)))
def test_iso_ms_treats_naive_as_utc(dt: datetime) -> None:
    assert datetime.fromisoformat(iso_ms(dt)) == dt.replace(
        tzinfo=UTC, microsecond=dt.microsecond // 1000 * 1000
    )


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@given(
    status=st.integers(min_value=100, max_value=599),
    content=st.one_of(st.binary(max_size=200), json_values.map(lambda v: json.dumps(v).encode())),
    retry_after=st.one_of(st.none(), st.text(max_size=40)),
)
def test_error_mapping_never_raises(status: int, content: bytes, retry_after: str | None) -> None:
    headers = {"retry-after": retry_after} if retry_after is not None else {}
    exc = error_from_response(status, content, headers)
    assert isinstance(exc, DfoError)
    assert exc.status_code == status
    assert isinstance(str(exc), str)
    assert str(exc)
    assert all(isinstance(e, dict) for e in exc.errors)
    if isinstance(exc, DfoRateLimited):
        assert exc.retry_after is None or exc.retry_after >= 0


@given(st.lists(st.text(min_size=1, max_size=30), min_size=1, max_size=5))
def test_error_message_keeps_every_cxone_message(messages: list[str]) -> None:
    body = json.dumps({"errors": [{"message": m} for m in messages]}).encode()
    exc = error_from_response(400, body)
    for message in messages:
        assert message in str(exc)


def test_token_endpoint_client_errors_are_auth_errors() -> None:
    assert type(error_from_response(400, b'{"error":"invalid_grant"}', token_endpoint=True)) is DfoAuthError
    assert type(error_from_response(503, b"", token_endpoint=True)) is DfoServerError
    assert type(error_from_response(429, b"", {"Retry-After": "1"}, token_endpoint=True)) is DfoRateLimited
