"""Acme Chat through byoc-relay's conformance kit. Run: pytest examples/acme_chat"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

import httpx
from acme_chat import AcmeChatAdapter

from app.adapters.base import ChannelAdapter, InboundRequest, OutboundMessage
from app.adapters.conformance import AdapterConformance, AdapterHarness
from app.adapters.registry import AdapterContext, AdapterRegistry


class AcmeHarness(AdapterHarness):
    sender_id = "u123"
    recipient_id = "u123"

    def adapter(self, http: httpx.AsyncClient) -> ChannelAdapter:
        return AcmeChatAdapter(http)

    def config(self) -> dict[str, Any]:
        return {"api_url": "https://api.acme.test", "token": "t0ken", "webhook_secret": "s3cret"}

    def invalid_configs(self) -> list[dict[str, Any]]:
        return [{"api_url": "not a url", "token": "t", "webhook_secret": "s"}, {"api_url": "https://a.test"}]

    def _signed(self, config: Mapping[str, Any], event: dict[str, Any], stamp: int) -> InboundRequest:
        body = json.dumps(event).encode()
        digest = hmac.new(config["webhook_secret"].encode(), f"{stamp}.".encode() + body, hashlib.sha256)
        headers = {"x-acme-timestamp": str(stamp), "x-acme-signature": digest.hexdigest()}
        return InboundRequest(raw_body=body, headers=headers, url="https://relay.test/webhooks/acme_chat/c")

    def inbound_message(
        self, config: Mapping[str, Any], *, event_id: str, sender_id: str, text: str
    ) -> InboundRequest:
        return self._signed(config, {"id": event_id, "from": sender_id, "text": text}, int(time.time()))

    def stale(self, request: InboundRequest, config: Mapping[str, Any]) -> InboundRequest:
        return self._signed(config, json.loads(request.raw_body), int(time.time()) - 3600)

    def malformed(self, request: InboundRequest) -> InboundRequest:
        headers = {**request.headers, "x-acme-signature": "ünïcode-is-not-hex"}
        return InboundRequest(raw_body=request.raw_body, headers=headers, url=request.url)

    def echo(
        self, config: Mapping[str, Any], sent: OutboundMessage, provider_message_id: str
    ) -> InboundRequest:
        event = {"id": "evt-echo", "from": sent.recipient_id, "text": sent.text, "from_business": True}
        return self._signed(config, event, int(time.time()))

    def provider_answer(self, request: httpx.Request, status: int) -> httpx.Response:
        assert request.headers["authorization"] == "Bearer t0ken"
        return httpx.Response(status, json={"id": 42} if status < 300 else {"error": "nope"})


class TestAcmeChat(AdapterConformance):
    harness = AcmeHarness()


def test_the_relay_finds_the_installed_adapter() -> None:
    registry = AdapterRegistry.from_entry_points(AdapterContext(http=httpx.AsyncClient()))
    assert "acme_chat" in registry.names()
