"""The CXone simulator on the wire: DFO-style validation, and CXone's calls toward a box (401 dance)."""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from app.cxone.client import (
    ChannelSpec,
    CreatedMessage,
    DfoClient,
    DfoCredentials,
    EndUserIdentity,
    MessageContent,
    MessageThread,
    NewMessage,
)
from app.cxone.simulator import CxoneSimulator, SimulatorError

CXONE = "http://cxone.test"
BOX = "http://box.test"
CLIENT_ID, CLIENT_SECRET = "box-client", "box-client-secret-value"


# --------------------------------------------------------------------------- a tiny box (contract §2)


@dataclass
class TinyBox:
    """Answers like a BYOC middleware: 401 without a bearer it issued, JSON client-credentials token call."""

    tokens: set[str] = field(default_factory=set)
    token_requests: list[dict[str, Any]] = field(default_factory=list)
    received: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    app: FastAPI = field(default_factory=FastAPI)

    def __post_init__(self) -> None:
        self.app.add_api_route("/box/1.0/token", self.token, methods=["POST"])
        self.app.add_api_route("/box/2.0/channel/{channel_id}/outbound", self.outbound, methods=["POST"])
        self.app.add_api_route("/box/1.0/posts/{post_id}/messages", self.legacy_reply, methods=["POST"])
        self.app.add_api_route(
            "/box/1.0/channel/{channel_id}/thread/{thread_id:path}/sender-action",
            self.typing,
            methods=["POST"],
        )
        self.app.add_api_route(
            "/box/1.0/channel/{channel_id}/recipients/validation", self.validate, methods=["POST"]
        )

    def _authorized(self, request: Request) -> bool:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        return scheme == "Bearer" and value in self.tokens

    async def token(self, request: Request) -> Response:
        body = json.loads(await request.body())  # CXone posts JSON, not a form
        self.token_requests.append(body)
        if body.get("grant_type") != "client_credentials":
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        if body.get("client_id") != CLIENT_ID or body.get("client_secret") != CLIENT_SECRET:
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        token = secrets.token_urlsafe(16)
        self.tokens.add(token)
        return JSONResponse({"access_token": token, "token_type": "Bearer", "expires_in": 3600})

    async def outbound(self, request: Request, channel_id: str) -> Response:
        if not self._authorized(request):
            return JSONResponse({"error": "invalid_token"}, status_code=401)
        body = await request.json()
        self.received.append((request.url.path, body))
        thread_id = body.get("thread", {}).get("idOnExternalPlatform") or "conv-started-by-box"
        return JSONResponse(
            {
                "message": {
                    "idOnExternalPlatform": f"box-msg-{len(self.received)}",
                    "createdAtWithMilliseconds": "2025-01-01T10:00:01.000Z",
                    "url": "https://platform.test/m",
                },
                "thread": {"idOnExternalPlatform": thread_id},
                "recipients": body.get("endUserRecipients", []),
            }
        )

    async def legacy_reply(self, request: Request, post_id: str) -> Response:
        if not self._authorized(request):
            return JSONResponse({"error": "invalid_token"}, status_code=401)
        self.received.append((request.url.path, await request.json()))
        return JSONResponse({"idOnExternalPlatform": f"legacy-{post_id[:8]}"})

    async def typing(self, request: Request, channel_id: str, thread_id: str) -> Response:
        if not self._authorized(request):
            return JSONResponse({"error": "invalid_token"}, status_code=401)
        self.received.append((request.url.path, await request.json()))
        return Response(status_code=204)

    async def validate(self, request: Request, channel_id: str) -> Response:
        if not self._authorized(request):
            return JSONResponse({"error": "invalid_token"}, status_code=401)
        body = await request.json()
        if all(str(r.get("idOnExternalPlatform", "")).startswith("+") for r in body["endUserRecipients"]):
            return JSONResponse({"status": "valid"})
        return JSONResponse(
            {
                "displayErrorMessage": "Invalid recipient format",
                "errorCode": "outboundValidationFailed",
                "errors": [{"path": ["idOnExternalPlatform"], "message": "Invalid recipient format"}],
            },
            status_code=400,
        )


@dataclass
class World:
    sim: CxoneSimulator
    box: TinyBox
    cxone: httpx.AsyncClient
    client: DfoClient

    def register(self, *, use_outbound_api: bool = True, secret: str = CLIENT_SECRET) -> str:
        return self.sim.register_byoc_integration(
            name="Tiny box",
            box_url=f"{BOX}/box",
            authorization_url=f"{BOX}/box/1.0/token",
            client_id=CLIENT_ID,
            client_secret=secret,
            use_outbound_api=use_outbound_api,
            action_url=f"{BOX}/box/action",
        )

    async def channel(self, integration_id: str, channel_id: str = "tiny_ch1") -> str:
        await self.client.create_channel(
            ChannelSpec(
                id=channel_id,
                id_on_external_platform=channel_id,
                channel_integration_id=integration_id,
                real_external_platform_id="custom",
                name="Tiny",
                is_private=True,
                has_tree_structure=False,
            )
        )
        return channel_id

    async def inbound(
        self, channel_id: str, message_id: str = "m-1", thread: str = "conv-42"
    ) -> CreatedMessage:
        return await self.client.create_message(
            channel_id,
            NewMessage(
                id_on_external_platform=message_id,
                created_at_with_milliseconds=datetime(2025, 1, 1, 10, tzinfo=UTC),
                thread=MessageThread(id_on_external_platform=thread),
                message_content=MessageContent.of_text("Hi there"),
                author_end_user_identity=EndUserIdentity(
                    id_on_external_platform="user-7", first_name="Ada", last_name="L"
                ),
            ),
        )


@pytest.fixture
async def world() -> AsyncIterator[World]:
    box = TinyBox()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=box.app), base_url=BOX) as box_http:
        sim = CxoneSimulator(public_url=CXONE, box_http=box_http)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sim.app), base_url=CXONE) as cxone:
            client = DfoClient(
                DfoCredentials(
                    issuer_url=CXONE, access_key_id="demo-access-key", access_key_secret="demo-access-secret"
                ),
                http=cxone,
            )
            yield World(sim=sim, box=box, cxone=cxone, client=client)


async def bearer(world: World) -> dict[str, str]:
    return {"Authorization": f"Bearer {await world.client.access_token()}"}


# --------------------------------------------------------------------------- CXone side: auth & validation


async def test_token_endpoint_refuses_bad_grants_and_keys(world: World) -> None:
    wrong_grant = await world.cxone.post("/auth/token", data={"grant_type": "client_credentials"})
    assert wrong_grant.status_code == 400
    assert wrong_grant.json()["error"] == "unsupported_grant_type"
    bad_secret = await world.cxone.post(
        "/auth/token", data={"grant_type": "password", "username": "demo-access-key", "password": "x"}
    )
    assert bad_secret.status_code == 401
    assert bad_secret.json()["error"] == "invalid_grant"
    unknown_tenant = await world.cxone.get("/.well-known/cxone-configuration", params={"tenantId": "other"})
    assert unknown_tenant.status_code == 404


async def test_dfo_requires_a_live_bearer(world: World) -> None:
    assert (await world.cxone.get("/dfo/3.0/channels")).status_code == 401
    assert (
        await world.cxone.get("/dfo/3.0/channels", headers={"Authorization": "Bearer forged"})
    ).status_code == 401
    headers = await bearer(world)
    assert (await world.cxone.get("/dfo/3.0/channels", headers=headers)).status_code == 200
    world.sim.expire_tokens()
    refused = await world.cxone.get("/dfo/3.0/channels", headers=headers)
    assert refused.status_code == 401
    assert refused.json()["errors"][0]["errorCode"] == "Unauthorized"


async def test_new_message_validation_lists_every_missing_field(world: World) -> None:
    channel_id = await world.channel(world.register())
    response = await world.cxone.post(
        f"/dfo/3.0/channels/{channel_id}/messages",
        headers=await bearer(world),
        json={
            "idOnExternalPlatform": "m-1",
            "direction": "sideways",
            "thread": {},
            "messageContent": {"type": "TEXT"},
        },
    )
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert {e["field"] for e in errors} == {
        "direction",
        "createdAtWithMilliseconds",
        "thread.idOnExternalPlatform",
        "messageContent.payload",
        "authorEndUserIdentity",
    }
    assert all(e["message"] and e["errorCode"] for e in errors)
    assert world.sim.thread_messages(channel_id, "conv-42") == []


async def test_channel_validation_and_non_json_body(world: World) -> None:
    headers = await bearer(world)
    missing = await world.cxone.post(
        "/dfo/3.0/channels", headers=headers, json={"id": "x", "isPrivate": "yes"}
    )
    assert missing.status_code == 400
    fields = {e["field"] for e in missing.json()["errors"]}
    assert {"idOnExternalPlatform", "channelIntegrationId", "name", "isPrivate", "hasTreeStructure"} <= fields
    garbage = await world.cxone.post(
        "/dfo/3.0/channels", headers={**headers, "Content-Type": "application/json"}, content=b"{not json"
    )
    assert garbage.status_code == 400
    assert garbage.json()["errors"][0]["errorCode"] == "InvalidRequestBody"


async def test_fault_injection_counts_down_and_sends_headers(world: World) -> None:
    world.sim.fail_next("*", r"^/dfo/3\.0/channels$", 503, times=2, headers={"Retry-After": "3"})
    headers = await bearer(world)
    first = await world.cxone.get("/dfo/3.0/channels", headers=headers)
    second = await world.cxone.post("/dfo/3.0/channels", headers=headers, json={})
    third = await world.cxone.get("/dfo/3.0/channels", headers=headers)
    assert [first.status_code, second.status_code, third.status_code] == [503, 503, 200]
    assert first.headers["retry-after"] == "3"
    assert first.json()["errors"][0]["errorCode"] == "SimulatedFault"


# --------------------------------------------------------------------------- acting as CXone toward the box


async def test_agent_reply_outbound_api_does_the_401_token_retry_dance(world: World) -> None:
    channel_id = await world.channel(world.register())
    await world.inbound(channel_id)

    result = await world.sim.send_agent_reply(
        channel_id=channel_id, text="Hello Ada", thread_id_on_external_platform="conv-42"
    )

    assert result.ok
    assert result.status == 200
    outgoing = [c for c in world.sim.calls if c.direction == "out"]
    assert [(c.path, c.authorization_present, c.status) for c in outgoing] == [
        ("/box/2.0/channel/tiny_ch1/outbound", False, 401),
        ("/box/1.0/token", False, 200),
        ("/box/2.0/channel/tiny_ch1/outbound", True, 200),
    ]
    assert outgoing[2].headers["authorization"] == "Bearer [redacted]"
    # The box got the real credentials as JSON; the simulator's record keeps no secret.
    assert world.box.token_requests == [
        {"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    ]
    assert outgoing[1].json == {
        "grant_type": "client_credentials",
        "client_id": CLIENT_ID,
        "client_secret": "[redacted]",
    }

    ((path, body),) = world.box.received
    assert path == "/box/2.0/channel/tiny_ch1/outbound"
    assert body["thread"] == {"idOnExternalPlatform": "conv-42"}
    assert body["messageContent"] == {"type": "TEXT", "payload": {"text": "Hello Ada"}}
    assert body["endUserRecipients"] == [
        {"idOnExternalPlatform": "user-7", "name": "Ada L"}
    ]  # reused from inbound
    assert body["attachments"] == []
    assert body["brand"]["tenantId"] == world.sim.tenant_id

    messages = world.sim.thread_messages(channel_id, "conv-42")
    assert [(m.direction, m.text, m.id_on_external_platform) for m in messages] == [
        ("inbound", "Hi there", "m-1"),
        ("outbound", "Hello Ada", "box-msg-1"),
    ]
    assert messages[1].recipient_end_user_id == "user-7"


async def test_cached_box_token_is_reused_until_the_box_refuses_it(world: World) -> None:
    channel_id = await world.channel(world.register())
    await world.inbound(channel_id)
    await world.sim.send_agent_reply(
        channel_id=channel_id, text="one", thread_id_on_external_platform="conv-42"
    )
    before = len(world.sim.calls)
    await world.sim.send_agent_reply(
        channel_id=channel_id, text="two", thread_id_on_external_platform="conv-42"
    )
    second = [c.path for c in world.sim.calls[before:] if c.direction == "out"]
    assert second == ["/box/2.0/channel/tiny_ch1/outbound"]

    world.box.tokens.clear()  # the box restarted: CXone's cached bearer is now unknown
    third = await world.sim.send_agent_reply(
        channel_id=channel_id, text="three", thread_id_on_external_platform="conv-42"
    )
    assert third.ok
    assert len(world.box.token_requests) == 2


async def test_status_update_reaches_the_outbound_message(world: World) -> None:
    channel_id = await world.channel(world.register())
    await world.inbound(channel_id)
    reply = await world.sim.send_agent_reply(
        channel_id=channel_id, text="hey", thread_id_on_external_platform="conv-42"
    )
    assert reply.message is not None
    await world.client.update_message_status(channel_id, "box-msg-1", "delivered", datetime.now(UTC))
    assert reply.message.status == "delivered"


async def test_legacy_reply_uses_the_dfo_thread_id_as_post_id(world: World) -> None:
    channel_id = await world.channel(world.register(use_outbound_api=False))
    created = await world.inbound(channel_id)
    assert created.thread_id is not None

    result = await world.sim.send_agent_reply(
        channel_id=channel_id, text="legacy hi", thread_id_on_external_platform="conv-42"
    )

    assert result.ok
    ((path, body),) = world.box.received
    assert path == f"/box/1.0/posts/{created.thread_id}/messages"
    assert body["post"] == {"id": created.thread_id, "idOnExternalPlatform": "conv-42"}
    assert body["thread"] == {"idOnExternalPlatform": "conv-42"}
    assert body["messageContent"]["payload"]["text"] == "legacy hi"
    messages = world.sim.thread_messages(channel_id, "conv-42")
    assert messages[-1].id_on_external_platform == f"legacy-{created.thread_id[:8]}"


async def test_agent_started_conversation_takes_the_thread_the_box_returns(world: World) -> None:
    channel_id = await world.channel(world.register())
    result = await world.sim.send_agent_reply(
        channel_id=channel_id,
        text="Your order shipped",
        recipients=[{"idOnExternalPlatform": "+15550100", "name": "Bo"}],
    )
    assert result.ok
    (_, body) = world.box.received[0]
    assert body["thread"] == {}
    messages = world.sim.thread_messages(channel_id, "conv-started-by-box")
    assert [(m.direction, m.recipient_end_user_id) for m in messages] == [("outbound", "+15550100")]


async def test_refused_box_credentials_store_nothing(world: World) -> None:
    channel_id = await world.channel(world.register(secret="wrong"))
    await world.inbound(channel_id)
    result = await world.sim.send_agent_reply(
        channel_id=channel_id, text="x", thread_id_on_external_platform="conv-42"
    )
    assert not result.ok
    assert result.status == 401
    assert result.error is not None
    assert [m.direction for m in world.sim.thread_messages(channel_id, "conv-42")] == ["inbound"]


async def test_reply_preconditions(world: World) -> None:
    channel_id = await world.channel(world.register(use_outbound_api=False))
    with pytest.raises(SimulatorError) as unknown_channel:
        await world.sim.send_agent_reply(channel_id="nope", text="x")
    assert unknown_channel.value.status == 404
    with pytest.raises(SimulatorError) as unknown_thread:
        await world.sim.send_agent_reply(
            channel_id=channel_id, text="x", thread_id_on_external_platform="nope"
        )
    assert unknown_thread.value.status == 404
    with pytest.raises(SimulatorError) as legacy_new:
        await world.sim.send_agent_reply(
            channel_id=channel_id, text="x", recipients=[{"idOnExternalPlatform": "u"}]
        )
    assert legacy_new.value.status == 400
    assert not world.box.received


async def test_typing_and_recipient_validation_calls(world: World) -> None:
    channel_id = await world.channel(world.register())
    await world.inbound(channel_id, thread="conv/7")

    typing = await world.sim.send_typing(channel_id, "conv/7", True)
    assert typing.status == 204
    path, body = world.box.received[-1]
    # Starlette decodes %2F before routing, hence the box's `{thread_id:path}`; the wire keeps it encoded.
    assert path == "/box/1.0/channel/tiny_ch1/thread/conv/7/sender-action"
    assert body["senderAction"] == {"action": "isTypingOn"}
    assert body["authorUser"]["firstName"]
    assert "friendlyName" in body["brand"]
    typing_call = world.sim.calls_to("sender-action$", direction="out")[-1]
    assert typing_call.url == f"{BOX}/box/1.0/channel/tiny_ch1/thread/conv%2F7/sender-action"

    assert await world.sim.validate_recipients(channel_id, [{"idOnExternalPlatform": "+1555"}]) == (
        200,
        {"status": "valid"},
    )
    status, refused = await world.sim.validate_recipients(channel_id, [{"idOnExternalPlatform": "bad"}])
    assert status == 400
    assert refused["errorCode"] == "outboundValidationFailed"


# --------------------------------------------------------------------------- /_sim HTTP surface for humans


async def test_http_control_surface_end_to_end_without_leaking_secrets(world: World) -> None:
    registered = await world.cxone.post(
        "/_sim/byoc-integrations",
        json={
            "name": "Curl box",
            "box_url": f"{BOX}/box",
            "authorization_url": f"{BOX}/box/1.0/token",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "action_url": f"{BOX}/box/action",
        },
    )
    assert registered.status_code == 201
    integration_id = registered.json()["integrationId"]
    channel_id = await world.channel(integration_id)
    await world.inbound(channel_id)

    reply = await world.cxone.post(
        "/_sim/agent-replies",
        json={"channel_id": channel_id, "text": "from curl", "thread_id_on_external_platform": "conv-42"},
    )
    assert reply.status_code == 200
    assert reply.json()["message"]["idOnExternalPlatform"] == "box-msg-1"

    threads = (await world.cxone.get("/_sim/threads", params={"channel_id": channel_id})).json()
    assert [(m["direction"], m["messageContent"]["payload"]["text"]) for m in threads[0]["messages"]] == [
        ("inbound", "Hi there"),
        ("outbound", "from curl"),
    ]
    channels = (await world.cxone.get("/_sim/channels")).json()
    assert [c["id"] for c in channels] == [channel_id]

    ott = await world.cxone.post(
        "/_sim/one-time-tokens", json={"brand_id": 77, "user_id": 5, "integration_id": integration_id}
    )
    assert ott.status_code == 201
    action = urlsplit(ott.json()["actionUrl"])
    query = {k: v[0] for k, v in parse_qs(action.query).items()}
    assert action.path == "/box/action"
    assert query["brandId"] == "77"
    assert query["userId"] == "5"
    assert query["apiHost"] == CXONE
    # S1 verifies without a bearer: the one-time token is the credential.
    verify = {"brandId": 77, "userId": 5, "purpose": "channel-integration", "token": query["token"]}
    verified = await world.cxone.post("/dfo/3.0/one-time-token/verification", json=verify)
    assert verified.status_code == 200
    assert verified.json()["brand"]["id"] == 77
    reused = await world.cxone.post("/dfo/3.0/one-time-token/verification", json=verify)
    assert reused.status_code == 401

    calls_text = (await world.cxone.get("/_sim/calls")).text
    for secret in (CLIENT_SECRET, "demo-access-secret", query["token"], verified.json()["accessToken"]):
        assert secret not in calls_text
    assert not any(c["path"].startswith("/_sim/") and c["method"] == "GET" for c in json.loads(calls_text))

    bad = await world.cxone.post("/_sim/agent-replies", json={"channel_id": "nope", "text": "x"})
    assert bad.status_code == 404


async def test_simulator_mounted_under_a_prefix_like_the_demo() -> None:
    """``make run`` mounts the simulator at /cxone-sim; discovery, auth and encoded ids must still work."""
    issuer = "http://demo.test/cxone-sim"
    sim = CxoneSimulator(public_url=issuer)
    host = FastAPI()
    host.mount("/cxone-sim", sim.app)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=host), base_url="http://demo.test"
    ) as http:
        client = DfoClient(
            DfoCredentials(
                issuer_url=issuer, access_key_id="demo-access-key", access_key_secret="demo-access-secret"
            ),
            http=http,
        )
        integration_id = sim.register_byoc_integration(
            name="x", box_url="http://b", authorization_url="http://b/t", client_id="c", client_secret="s"
        )
        await client.create_channel(
            ChannelSpec(
                id="ch/1",
                id_on_external_platform="ch1",
                channel_integration_id=integration_id,
                real_external_platform_id="custom",
                name="n",
                is_private=True,
                has_tree_structure=False,
            )
        )
        created = await client.create_message(
            "ch/1",
            NewMessage(
                id_on_external_platform="m 1",
                created_at_with_milliseconds=datetime(2025, 1, 1, tzinfo=UTC),
                thread=MessageThread(id_on_external_platform="t/1"),
                message_content=MessageContent.of_text("hi"),
                author_end_user_identity=EndUserIdentity(id_on_external_platform="u"),
            ),
        )
        assert created.thread_id_on_external_platform == "t/1"
        await client.delete_channel("ch/1")
    assert await client.dfo_base_url() == f"{issuer}/dfo/3.0"
    assert "/dfo/3.0/channels/ch/1/messages" in [c.path for c in sim.calls]
    assert sim.channels == {}
