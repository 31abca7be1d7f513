"""The JSON admin API: API keys and roles, integrations and their secrets, channels in CXone."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from app.models import Channel, Integration
from app.services.api_keys import Role
from tests.conftest import CXONE_URL, Stack, Wired, box_headers, new_api_key

FORM_LABELS = [
    "Name",
    "Integration Box URL",
    "Authorization URL",
    "Client ID",
    "Client Secret",
    "Action URL",
    "Reconnect URL",
    "Remove URL",
]


def integration_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "Acme WhatsApp",
        "cxone": {"access_key_id": "demo-access-key", "access_key_secret": "demo-access-secret"},
        "cxone_issuer_url": CXONE_URL,
    }
    body.update(overrides)
    return body


async def test_missing_and_wrong_api_keys_are_401(stack: Stack) -> None:
    missing = await stack.relay.get("/api/v1/integrations")
    assert missing.status_code == 401
    assert missing.json()["code"] == "api_key_missing"
    wrong = await stack.relay.get("/api/v1/integrations", headers={"Authorization": "Bearer byoc_abc_def"})
    assert wrong.status_code == 401
    assert wrong.json()["code"] == "api_key_invalid"
    garbage = await stack.relay.get("/api/v1/integrations", headers={"X-API-Key": "garbage"})
    assert garbage.status_code == 401


async def test_a_key_without_the_role_is_403(stack: Stack) -> None:
    viewer = {"X-API-Key": await new_api_key(stack.runtime, Role.viewer)}
    assert (await stack.relay.get("/api/v1/integrations", headers=viewer)).status_code == 200
    refused = await stack.relay.post("/api/v1/integrations", headers=viewer, json=integration_body())
    assert refused.status_code == 403
    assert refused.json()["code"] == "forbidden"
    assert "admin" in refused.json()["message"]


async def test_creating_an_integration_answers_the_cxone_form_once(
    stack: Stack, admin_headers: dict[str, str]
) -> None:
    created = await stack.relay.post("/api/v1/integrations", headers=admin_headers, json=integration_body())
    assert created.status_code == 201
    body = created.json()
    form = body["cxone_form"]
    assert list(form) == FORM_LABELS
    assert form["Integration Box URL"] == "http://relay.test/integration/box"
    assert form["Authorization URL"] == "http://relay.test/integration/box/1.0/token"
    assert form["Action URL"] == "http://relay.test/integration/action"
    secret = form["Client Secret"]
    assert len(secret) >= 40

    for response in (
        await stack.relay.get(f"/api/v1/integrations/{body['id']}", headers=admin_headers),
        await stack.relay.get("/api/v1/integrations", headers=admin_headers),
        await stack.relay.patch(
            f"/api/v1/integrations/{body['id']}", headers=admin_headers, json={"name": "New"}
        ),
    ):
        assert response.status_code == 200
        assert secret not in response.text
        assert "demo-access-secret" not in response.text

    async with stack.runtime.sessions() as session:
        stored = await session.scalar(select(Integration))
    assert stored is not None
    assert secret not in stored.box_client_secret_hash
    assert "demo-access-secret" not in stored.cxone_credentials_encrypted
    assert stack.runtime.credential_box.open(stored.cxone_credentials_encrypted)["access_key_secret"] == (
        "demo-access-secret"
    )


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"name": "x"}, "body.cxone"),
        (integration_body(cxone={"access_key_id": "k"}), "body.cxone"),
        (
            integration_body(cxone={"bearer_token": "t", "access_key_id": "k", "access_key_secret": "s"}),
            "body.cxone",
        ),
        (integration_body(name=""), "body.name"),
        (integration_body(cxone_issuer_url="ftp://nope"), "body.cxone_issuer_url"),
        (integration_body(unexpected=True), "body.unexpected"),
    ],
)
async def test_bad_integration_input_is_422_with_the_field(
    stack: Stack, admin_headers: dict[str, str], body: dict[str, Any], path: str
) -> None:
    response = await stack.relay.post("/api/v1/integrations", headers=admin_headers, json=body)
    assert response.status_code == 422
    assert path in [detail["path"] for detail in response.json()["details"]]


async def test_the_cxone_integration_id_is_unique(stack: Stack, admin_headers: dict[str, str]) -> None:
    first = await stack.relay.post(
        "/api/v1/integrations", headers=admin_headers, json=integration_body(cxone_integration_id="int-1")
    )
    assert first.status_code == 201
    second = await stack.relay.post(
        "/api/v1/integrations", headers=admin_headers, json=integration_body(cxone_integration_id="int-1")
    )
    assert second.status_code == 409
    assert second.json()["code"] == "cxone_integration_id_taken"


async def test_unknown_ids_are_404(stack: Stack, admin_headers: dict[str, str]) -> None:
    for path in ("/api/v1/integrations/nope", "/api/v1/channels/nope", "/api/v1/messages/nope"):
        response = await stack.relay.get(path, headers=admin_headers)
        assert response.status_code == 404
        assert response.json()["code"].endswith("_not_found")


async def test_a_channel_needs_the_cxone_integration_id_first(
    stack: Stack, admin_headers: dict[str, str]
) -> None:
    integration = (
        await stack.relay.post("/api/v1/integrations", headers=admin_headers, json=integration_body())
    ).json()
    response = await stack.relay.post(
        "/api/v1/channels", headers=admin_headers, json={"integration_id": integration["id"], "name": "SMS"}
    )
    assert response.status_code == 409
    assert response.json()["code"] == "cxone_integration_id_missing"
    assert integration["id"] in response.json()["message"]


async def test_a_channel_is_created_in_cxone_with_the_integration_id(
    stack: Stack, wired: Wired, admin_headers: dict[str, str]
) -> None:
    sim_channel = stack.simulator.channels[wired.channel_id]
    assert sim_channel["channelIntegrationId"] == wired.cxone_integration_id
    assert sim_channel["idOnExternalPlatform"] == wired.channel_id
    assert sim_channel["hasTreeStructure"] is False
    assert wired.channel_id.count("_") == 1
    listed = (await stack.relay.get("/api/v1/channels", headers=admin_headers)).json()["items"]
    assert [c["id"] for c in listed] == [wired.channel_id]


async def test_unknown_adapter_is_422(stack: Stack, wired: Wired, admin_headers: dict[str, str]) -> None:
    response = await stack.relay.post(
        "/api/v1/channels",
        headers=admin_headers,
        json={"integration_id": wired.integration["id"], "name": "Fax", "adapter": "fax"},
    )
    assert response.status_code == 422
    assert response.json()["code"] == "unknown_adapter"


async def test_cxone_refusing_a_channel_stores_nothing(
    stack: Stack, wired: Wired, admin_headers: dict[str, str]
) -> None:
    stack.simulator.fail_next(
        "POST", r"/channels$", 400, body={"errors": [{"message": "Channel limit reached", "errorCode": "X"}]}
    )
    response = await stack.relay.post(
        "/api/v1/channels",
        headers=admin_headers,
        json={"integration_id": wired.integration["id"], "name": "Two"},
    )
    assert response.status_code == 502
    assert response.json()["code"] == "cxone_error"
    assert "Channel limit reached" in response.json()["message"]
    async with stack.runtime.sessions() as session:
        assert len(list(await session.scalars(select(Channel)))) == 1


async def test_deleting_a_channel_removes_it_in_cxone_and_keeps_its_history(
    stack: Stack, wired: Wired, admin_headers: dict[str, str]
) -> None:
    await stack.relay.post(
        f"/api/v1/loopback/{wired.channel_id}/customer-messages",
        headers=admin_headers,
        json={"from": "+15550100", "text": "Before the end"},
    )
    await stack.settle()
    deleted = await stack.relay.delete(f"/api/v1/channels/{wired.channel_id}", headers=admin_headers)
    assert deleted.status_code == 204
    assert wired.channel_id not in stack.simulator.channels
    again = await stack.relay.delete(f"/api/v1/channels/{wired.channel_id}", headers=admin_headers)
    assert again.status_code == 404
    channel = (await stack.relay.get(f"/api/v1/channels/{wired.channel_id}", headers=admin_headers)).json()
    assert channel["deleted_at"] is not None
    threads = (
        await stack.relay.get(f"/api/v1/channels/{wired.channel_id}/threads", headers=admin_headers)
    ).json()
    messages = (
        await stack.relay.get(f"/api/v1/threads/{threads['items'][0]['id']}/messages", headers=admin_headers)
    ).json()
    assert [m["text"] for m in messages["items"]] == ["Before the end"]
    late = await stack.relay.post(
        f"/integration/box/2.0/channel/{wired.channel_id}/outbound",
        headers=await box_headers(stack, wired),
        json={
            "messageContent": {"payload": {"text": "late"}},
            "endUserRecipients": [{"idOnExternalPlatform": "+1"}],
        },
    )
    assert late.status_code == 404
