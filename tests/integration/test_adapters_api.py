"""Operators can see which adapters are installed, what each carries and takes, and try a channel's
configuration against its provider without messaging anyone."""

from __future__ import annotations

from tests.conftest import Stack, Wired, webhook_channel


async def test_installed_adapters_show_capabilities_and_config_schema(
    stack: Stack, admin_headers: dict[str, str]
) -> None:
    answer = await stack.relay.get("/api/v1/adapters", headers=admin_headers)
    assert answer.status_code == 200
    adapters = {item["name"]: item for item in answer.json()["items"]}
    assert sorted(adapters) == ["email", "loopback", "telegram", "twilio_sms", "webhook", "whatsapp_cloud"]
    webhook = adapters["webhook"]
    assert webhook["capabilities"]["delivery_receipts"] is True
    assert webhook["secret_fields"] == ["secret", "previous_secret"]
    assert webhook["config_schema"]["properties"]["secret"]["writeOnly"] is True
    assert "url" in webhook["config_schema"]["required"]


async def test_a_channel_check_pings_the_platform(
    stack: Stack, wired: Wired, admin_headers: dict[str, str]
) -> None:
    channel_id, provider = await webhook_channel(stack, admin_headers, wired)
    answer = await stack.relay.post(f"/api/v1/channels/{channel_id}/check", headers=admin_headers)
    assert answer.status_code == 200
    assert answer.json() == {"ok": True, "detail": "the platform answered HTTP 200"}
    assert provider.pings == 1
    assert provider.deliveries == []  # no customer was messaged


async def test_a_channel_check_reports_a_refused_signature(
    stack: Stack, wired: Wired, admin_headers: dict[str, str]
) -> None:
    channel_id, provider = await webhook_channel(stack, admin_headers, wired)
    provider.rotate_secret_to_unknown()
    answer = await stack.relay.post(f"/api/v1/channels/{channel_id}/check", headers=admin_headers)
    assert answer.json() == {"ok": False, "detail": "the platform refused our signature (HTTP 401)"}
