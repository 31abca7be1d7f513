"""The box token endpoint (OAuth2 client credentials) and bearer checks on every other box call."""

from __future__ import annotations

import base64
from datetime import timedelta

from sqlalchemy import update

from app.models import BoxToken
from app.models.base import utcnow
from tests.conftest import BOX_TOKEN_PATH, Stack, Wired, box_headers, client_credentials

REPLY = {
    "thread": {"idOnExternalPlatform": "conv-1"},
    "messageContent": {"type": "TEXT", "payload": {"text": "Hello"}},
    "endUserRecipients": [{"idOnExternalPlatform": "+15550100", "name": "Ada"}],
}


def outbound_path(channel_id: str) -> str:
    return f"/integration/box/2.0/channel/{channel_id}/outbound"


async def test_json_body_grants_a_bearer_that_opens_the_box(stack: Stack, wired: Wired) -> None:
    response = await stack.relay.post(BOX_TOKEN_PATH, json=client_credentials(wired))
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == stack.runtime.settings.box_token_ttl_seconds
    assert response.headers["cache-control"] == "no-store"
    reply = await stack.relay.post(
        outbound_path(wired.channel_id),
        json=REPLY,
        headers={"Authorization": f"Bearer {body['access_token']}"},
    )
    assert reply.status_code == 200, reply.text


async def test_form_body_is_accepted(stack: Stack, wired: Wired) -> None:
    response = await stack.relay.post(BOX_TOKEN_PATH, data=client_credentials(wired))
    assert response.status_code == 200
    assert response.json()["access_token"]


async def test_http_basic_client_authentication_is_accepted(stack: Stack, wired: Wired) -> None:
    credentials = client_credentials(wired)
    basic = base64.b64encode(f"{credentials['client_id']}:{credentials['client_secret']}".encode()).decode()
    response = await stack.relay.post(
        BOX_TOKEN_PATH, data={"grant_type": "client_credentials"}, headers={"Authorization": f"Basic {basic}"}
    )
    assert response.status_code == 200
    assert response.json()["access_token"]


async def test_wrong_secret_is_invalid_client(stack: Stack, wired: Wired) -> None:
    response = await stack.relay.post(BOX_TOKEN_PATH, json=client_credentials(wired, secret="nope"))
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


async def test_unknown_client_is_invalid_client(stack: Stack, wired: Wired) -> None:
    response = await stack.relay.post(
        BOX_TOKEN_PATH, json={**client_credentials(wired), "client_id": "someone"}
    )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


async def test_other_grant_types_are_refused(stack: Stack, wired: Wired) -> None:
    response = await stack.relay.post(
        BOX_TOKEN_PATH, json={**client_credentials(wired), "grant_type": "password"}
    )
    assert response.status_code == 400
    assert response.json()["error"] == "unsupported_grant_type"


async def test_missing_grant_type_and_bad_json_are_invalid_request(stack: Stack, wired: Wired) -> None:
    missing = await stack.relay.post(
        BOX_TOKEN_PATH, json={"client_id": client_credentials(wired)["client_id"]}
    )
    assert missing.status_code == 400
    assert missing.json()["error"] == "invalid_request"
    broken = await stack.relay.post(
        BOX_TOKEN_PATH, content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert broken.status_code == 400
    assert broken.json()["error"] == "invalid_request"


async def test_expired_token_gets_401_with_bearer_challenge(stack: Stack, wired: Wired) -> None:
    headers = await box_headers(stack, wired)
    async with stack.runtime.sessions() as session, session.begin():
        await session.execute(update(BoxToken).values(expires_at=utcnow() - timedelta(seconds=1)))
    response = await stack.relay.post(outbound_path(wired.channel_id), json=REPLY, headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["code"] == "invalid_token"


async def test_missing_or_forged_token_gets_401_before_the_body_is_read(stack: Stack, wired: Wired) -> None:
    missing = await stack.relay.post(outbound_path(wired.channel_id), content=b"{broken")
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"].startswith("Bearer")
    forged = await stack.relay.post(
        outbound_path(wired.channel_id), json=REPLY, headers={"Authorization": "Bearer forged"}
    )
    assert forged.status_code == 401
    for path in (
        f"/integration/box/1.0/posts/{wired.channel_id}/messages",
        f"/integration/box/1.0/channel/{wired.channel_id}/thread/t/sender-action",
        f"/integration/box/1.0/channel/{wired.channel_id}/recipients/validation",
    ):
        assert (await stack.relay.post(path, json={})).status_code == 401


async def test_rotating_the_secret_revokes_issued_tokens(
    stack: Stack, wired: Wired, admin_headers: dict[str, str]
) -> None:
    headers = await box_headers(stack, wired)
    rotated = await stack.relay.post(
        f"/api/v1/integrations/{wired.integration['id']}/rotate-secret", headers=admin_headers
    )
    assert rotated.status_code == 200
    assert rotated.json()["cxone_form"]["Client Secret"] != wired.client_secret
    refused = await stack.relay.post(outbound_path(wired.channel_id), json=REPLY, headers=headers)
    assert refused.status_code == 401
    old = await stack.relay.post(BOX_TOKEN_PATH, json=client_credentials(wired))
    assert old.status_code == 401
