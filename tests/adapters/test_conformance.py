"""The built-in adapters through the conformance kit, exactly as a third-party adapter runs it."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any, ClassVar

import httpx

from app.adapters.base import ChannelAdapter, InboundRequest, OutboundMessage
from app.adapters.conformance import AdapterConformance, AdapterHarness
from app.adapters.loopback import LoopbackAdapter
from app.adapters.webhook import WebhookAdapter, decode_secret, generate_secret, sign

PLATFORM_URL = "https://platform.test/messages"


class WebhookHarness(AdapterHarness):
    def __init__(self) -> None:
        self.secret = generate_secret()

    def adapter(self, http: httpx.AsyncClient) -> ChannelAdapter:
        return WebhookAdapter(http)

    def config(self) -> dict[str, Any]:
        return {"url": PLATFORM_URL, "secret": self.secret, "timeout_seconds": 10.0}

    def invalid_configs(self) -> list[dict[str, Any]]:
        return [
            {"url": "ftp://platform.test/", "secret": self.secret},
            {"url": PLATFORM_URL, "secret": "not-a-whsec-secret"},
            {"url": PLATFORM_URL, "secret": self.secret, "timeout_seconds": -1},
            {"url": PLATFORM_URL, "secret": self.secret, "colour": "blue"},
        ]

    def _signed(self, config: Mapping[str, Any], body: bytes, timestamp: int) -> InboundRequest:
        msg_id = f"msg_{timestamp}_{len(body)}"
        signature = sign(decode_secret(config["secret"]), msg_id, str(timestamp), body)
        headers = {
            "content-type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature,
        }
        return InboundRequest(raw_body=body, headers=headers, url="https://relay.test/webhooks/webhook/c")

    def inbound_message(
        self, config: Mapping[str, Any], *, event_id: str, sender_id: str, text: str
    ) -> InboundRequest:
        body = json.dumps({"type": "message", "id": event_id, "from": {"id": sender_id}, "text": text})
        return self._signed(config, body.encode(), int(time.time()))

    def stale(self, request: InboundRequest, config: Mapping[str, Any]) -> InboundRequest:
        return self._signed(config, request.raw_body, int(time.time()) - 3600)

    def malformed(self, request: InboundRequest) -> InboundRequest:
        headers = {**request.headers, "webhook-signature": "v1,@@not-base64@@"}
        return InboundRequest(raw_body=request.raw_body, headers=headers, url=request.url)

    def echo(
        self, config: Mapping[str, Any], sent: OutboundMessage, provider_message_id: str
    ) -> InboundRequest:
        return self.inbound_message(
            config, event_id=provider_message_id, sender_id=sent.recipient_id, text=sent.text
        )


class LoopbackHarness(AdapterHarness):
    receives_webhooks: ClassVar[bool] = False
    sends_over_http: ClassVar[bool] = False

    def adapter(self, http: httpx.AsyncClient) -> ChannelAdapter:
        return LoopbackAdapter()

    def config(self) -> dict[str, Any]:
        return {"auto_reply": "Got it: {text}"}

    def invalid_configs(self) -> list[dict[str, Any]]:
        return [{"auto_reply": 5}, {"colour": "blue"}]


class TestWebhookAdapter(AdapterConformance):
    harness = WebhookHarness()


class TestLoopbackAdapter(AdapterConformance):
    harness = LoopbackHarness()
