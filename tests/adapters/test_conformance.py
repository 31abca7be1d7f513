"""The built-in adapters through the conformance kit, exactly as a third-party adapter runs it."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import urlencode

import httpx

from app.adapters.base import ChannelAdapter, InboundRequest, OutboundMessage
from app.adapters.conformance import DEFAULT_ANSWERS, AdapterConformance, AdapterHarness, Expected
from app.adapters.email_smtp import EmailAdapter
from app.adapters.loopback import LoopbackAdapter
from app.adapters.telegram import TelegramAdapter
from app.adapters.twilio_sms import TwilioSmsAdapter
from app.adapters.webhook import WebhookAdapter, decode_secret, generate_secret, sign
from app.adapters.whatsapp_cloud import WhatsAppCloudAdapter
from tests.fakes.sendgrid import FakeInboundParse
from tests.fakes.twilio import twilio_signature

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

    def inbound_with_file(
        self, config: Mapping[str, Any], *, event_id: str, sender_id: str, name: str, content: bytes
    ) -> InboundRequest:
        file = {"url": f"https://platform.test/files/{event_id}", "name": name}
        body = {"type": "message", "id": event_id, "from": {"id": sender_id}, "attachments": [file]}
        return self._signed(config, json.dumps(body).encode(), int(time.time()))

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


class TwilioHarness(AdapterHarness):
    sender_id = "+15551230001"
    recipient_id = "+15551230001"
    url = "https://relay.test/webhooks/twilio_sms/byoc_1"
    expected_answers: ClassVar[dict[int, Expected]] = {
        **DEFAULT_ANSWERS,
        401: "retry",  # credentials an admin can fix
        201: "delivered",
    }

    def adapter(self, http: httpx.AsyncClient) -> ChannelAdapter:
        return TwilioSmsAdapter(http, "https://relay.test")

    def config(self) -> dict[str, Any]:
        return {
            "account_sid": "AC" + "0" * 32,
            "auth_token": "auth-token-1234567890",
            "from_number": "+15005550006",
            "api_base": "https://api.twilio.com",
            "timeout_seconds": 10.0,
        }

    def invalid_configs(self) -> list[dict[str, Any]]:
        good = self.config()
        return [
            {**good, "account_sid": "not-a-sid"},
            {**good, "from_number": "0612345678"},
            {k: v for k, v in good.items() if k != "auth_token"},
            {**good, "messaging_service_sid": "MG" + "1" * 32},  # two senders
        ]

    def _signed(self, config: Mapping[str, Any], params: list[tuple[str, str]]) -> InboundRequest:
        headers = {
            "content-type": "application/x-www-form-urlencoded",
            "x-twilio-signature": twilio_signature(config["auth_token"], self.url, params),
        }
        return InboundRequest(raw_body=urlencode(params).encode(), headers=headers, url=self.url)

    def inbound_message(
        self, config: Mapping[str, Any], *, event_id: str, sender_id: str, text: str
    ) -> InboundRequest:
        params = [
            ("MessageSid", event_id),
            ("From", sender_id),
            ("To", config["from_number"]),
            ("Body", text),
        ]
        return self._signed(config, params)

    def inbound_with_file(
        self, config: Mapping[str, Any], *, event_id: str, sender_id: str, name: str, content: bytes
    ) -> InboundRequest:
        media = (
            f"{config['api_base']}/2010-04-01/Accounts/{config['account_sid']}/Messages/{event_id}/Media/ME1"
        )
        params = [
            ("MessageSid", event_id),
            ("From", sender_id),
            ("To", config["from_number"]),
            ("Body", ""),
            ("NumMedia", "1"),
            ("MediaUrl0", media),
            ("MediaContentType0", "application/pdf"),
        ]
        return self._signed(config, params)

    def media_answer(self, request: httpx.Request) -> httpx.Response | None:
        assert request.headers["authorization"].startswith("Basic "), "Twilio media takes the account's auth"
        return None

    def malformed(self, request: InboundRequest) -> InboundRequest:
        headers = {**request.headers, "x-twilio-signature": "not base64 ünïcode"}
        return InboundRequest(raw_body=request.raw_body, headers=headers, url=request.url)

    def echo(
        self, config: Mapping[str, Any], sent: OutboundMessage, provider_message_id: str
    ) -> InboundRequest:
        params = [
            ("MessageSid", provider_message_id),
            ("From", config["from_number"]),
            ("To", sent.recipient_id),
            ("Body", sent.text),
        ]
        return self._signed(config, params)

    def provider_answer(self, request: httpx.Request, status: int) -> httpx.Response:
        assert request.headers["authorization"].startswith("Basic ")
        if status < 300:
            return httpx.Response(201, json={"sid": "SM" + "2" * 32, "status": "queued"})
        code = {400: 21211, 404: 20404, 429: 20429, 401: 20003}.get(status, 30001)
        return httpx.Response(status, json={"code": code, "message": "refused", "status": status})


class TestTwilioSmsAdapter(AdapterConformance):
    harness = TwilioHarness()


class TelegramHarness(AdapterHarness):
    signs_body: ClassVar[bool] = False  # a secret header over TLS: Telegram signs no body
    sender_id = "777000111"
    recipient_id = "777000111"
    expected_answers: ClassVar[dict[int, Expected]] = {**DEFAULT_ANSWERS, 403: "permanent", 401: "retry"}

    def adapter(self, http: httpx.AsyncClient) -> ChannelAdapter:
        return TelegramAdapter(http)

    def config(self) -> dict[str, Any]:
        return {
            "bot_token": "123456789:AAbbCCddEEffGGhhIIjjKKllMMnnOOpp",
            "webhook_secret": "s3cret-token-for-the-webhook",
            "api_base": "https://api.telegram.org",
            "timeout_seconds": 10.0,
        }

    def invalid_configs(self) -> list[dict[str, Any]]:
        good = self.config()
        return [
            {**good, "bot_token": "no-colon"},
            {**good, "webhook_secret": "short"},
            {**good, "api_base": "ftp://x"},
            {"webhook_secret": good["webhook_secret"]},
        ]

    def inbound_message(
        self, config: Mapping[str, Any], *, event_id: str, sender_id: str, text: str
    ) -> InboundRequest:
        message_id = int.from_bytes(event_id.encode()[-4:], "big")
        update = {
            "update_id": 1,
            "message": {
                "message_id": message_id,
                "from": {"id": int(sender_id), "is_bot": False, "first_name": "Ada"},
                "chat": {"id": int(sender_id), "type": "private"},
                "text": text,
            },
        }
        headers = {"x-telegram-bot-api-secret-token": config["webhook_secret"]}
        return InboundRequest(
            raw_body=json.dumps(update).encode(), headers=headers, url="https://relay.test/x"
        )

    def inbound_with_file(
        self, config: Mapping[str, Any], *, event_id: str, sender_id: str, name: str, content: bytes
    ) -> InboundRequest:
        document = {"file_id": f"BQAC{event_id}", "file_name": name, "mime_type": "application/pdf"}
        update = {
            "update_id": 2,
            "message": {
                "message_id": 5,
                "from": {"id": int(sender_id), "is_bot": False, "first_name": "Ada"},
                "chat": {"id": int(sender_id), "type": "private"},
                "document": document,  # no file_size: the cap must hold while downloading
            },
        }
        headers = {"x-telegram-bot-api-secret-token": config["webhook_secret"]}
        return InboundRequest(
            raw_body=json.dumps(update).encode(), headers=headers, url="https://relay.test/x"
        )

    def media_answer(self, request: httpx.Request) -> httpx.Response | None:
        if request.url.path.endswith("/getFile"):
            file_id = json.loads(request.content)["file_id"]
            return httpx.Response(
                200, json={"ok": True, "result": {"file_id": file_id, "file_path": "d/f.pdf"}}
            )
        assert request.url.path == "/file/bot123456789:AAbbCCddEEffGGhhIIjjKKllMMnnOOpp/d/f.pdf"
        return None

    def malformed(self, request: InboundRequest) -> InboundRequest:
        headers = {**request.headers, "x-telegram-bot-api-secret-token": "ünïcode \x00"}
        return InboundRequest(raw_body=request.raw_body, headers=headers, url=request.url)

    def provider_answer(self, request: httpx.Request, status: int) -> httpx.Response:
        assert "/bot123456789:" in request.url.path
        if status < 300:
            return httpx.Response(200, json={"ok": True, "result": {"message_id": 9}})
        return httpx.Response(status, json={"ok": False, "error_code": status, "description": "refused"})


class TestTelegramAdapter(AdapterConformance):
    harness = TelegramHarness()


class WhatsAppHarness(AdapterHarness):
    sender_id = "15551230001"
    recipient_id = "15551230001"
    expected_answers: ClassVar[dict[int, Expected]] = {**DEFAULT_ANSWERS, 401: "retry"}

    def adapter(self, http: httpx.AsyncClient) -> ChannelAdapter:
        return WhatsAppCloudAdapter(http)

    def config(self) -> dict[str, Any]:
        return {
            "phone_number_id": "106540352242922",
            "access_token": "EAAG-access-token",
            "app_secret": "app-secret-1234",
            "verify_token": "verify-me-please",
            "api_base": "https://graph.facebook.com",
            "api_version": "v21.0",
            "timeout_seconds": 10.0,
        }

    def invalid_configs(self) -> list[dict[str, Any]]:
        good = self.config()
        return [
            {**good, "phone_number_id": "abc"},
            {k: v for k, v in good.items() if k != "app_secret"},
            {**good, "template": {"name": "x", "language": "english"}},
        ]

    def _signed(self, config: Mapping[str, Any], payload: dict[str, Any]) -> InboundRequest:
        raw = json.dumps(payload).encode()
        digest = hmac.new(config["app_secret"].encode(), raw, hashlib.sha256).hexdigest()
        headers = {"x-hub-signature-256": f"sha256={digest}"}
        return InboundRequest(raw_body=raw, headers=headers, url="https://relay.test/x")

    def inbound_message(
        self, config: Mapping[str, Any], *, event_id: str, sender_id: str, text: str
    ) -> InboundRequest:
        message = {"from": sender_id, "id": event_id, "type": "text", "text": {"body": text}}
        value = {"metadata": {"phone_number_id": config["phone_number_id"]}, "messages": [message]}
        return self._signed(config, {"entry": [{"changes": [{"field": "messages", "value": value}]}]})

    def inbound_with_file(
        self, config: Mapping[str, Any], *, event_id: str, sender_id: str, name: str, content: bytes
    ) -> InboundRequest:
        document = {"filename": name, "mime_type": "application/pdf", "id": "4490709327384033"}
        message = {"from": sender_id, "id": event_id, "type": "document", "document": document}
        value = {"metadata": {"phone_number_id": config["phone_number_id"]}, "messages": [message]}
        return self._signed(config, {"entry": [{"changes": [{"field": "messages", "value": value}]}]})

    def media_answer(self, request: httpx.Request) -> httpx.Response | None:
        assert request.headers["authorization"] == "Bearer EAAG-access-token"
        if request.url.path == "/v21.0/4490709327384033":
            return httpx.Response(200, json={"url": "https://lookaside.fbsbx.test/whatsapp?mid=1", "id": "1"})
        assert request.url.host == "lookaside.fbsbx.test"
        return None

    def malformed(self, request: InboundRequest) -> InboundRequest:
        headers = {**request.headers, "x-hub-signature-256": "sha256=ünïcode"}
        return InboundRequest(raw_body=request.raw_body, headers=headers, url=request.url)

    def echo(
        self, config: Mapping[str, Any], sent: OutboundMessage, provider_message_id: str
    ) -> InboundRequest:
        return self.inbound_message(
            config, event_id=provider_message_id, sender_id=sent.recipient_id, text=sent.text
        )

    def provider_answer(self, request: httpx.Request, status: int) -> httpx.Response:
        assert request.headers["authorization"] == "Bearer EAAG-access-token"
        if status < 300:
            return httpx.Response(200, json={"messages": [{"id": "wamid.1"}]})
        code = {401: 190, 429: 130429}.get(status, 100 if status < 500 else 1)
        return httpx.Response(status, json={"error": {"message": "refused", "code": code}})


class TestWhatsAppCloudAdapter(AdapterConformance):
    harness = WhatsAppHarness()


class EmailHarness(AdapterHarness):
    sends_over_http: ClassVar[bool] = (
        False  # SMTP: its answers are classified in tests/integration/test_email.py
    )
    sender_id = "ada@mail.example"
    recipient_id = "ada@mail.example"

    def __init__(self) -> None:
        self.sendgrid = FakeInboundParse()

    def adapter(self, http: httpx.AsyncClient) -> ChannelAdapter:
        return EmailAdapter()

    def config(self) -> dict[str, Any]:
        return {
            "from_address": "support@shop.example",
            "smtp_host": "smtp.shop.example",
            "smtp_username": "relay",
            "smtp_password": "smtp-pass-123",
            "inbound_public_key": self.sendgrid.public_key,
        }

    def invalid_configs(self) -> list[dict[str, Any]]:
        good = self.config()
        return [
            {**good, "from_address": "not an address"},
            {**good, "inbound_public_key": "bm90IGEga2V5"},
            {**good, "security": "none"},  # never in clear
            {k: v for k, v in good.items() if k != "smtp_password"},  # a username without its password
        ]

    def inbound_message(
        self, config: Mapping[str, Any], *, event_id: str, sender_id: str, text: str
    ) -> InboundRequest:
        return self._email(sender_id, text, event_id, [])

    def _email(
        self,
        sender: str,
        text: str,
        event_id: str,
        files: list[tuple[str, str, bytes]],
        timestamp: int | None = None,
    ) -> InboundRequest:
        body, headers, _ = self.sendgrid.email(
            sender=sender,
            to="support@shop.example",
            subject="Hello",
            text=text,
            message_id=f"<{event_id}>",
            files=files,
            timestamp=timestamp,
        )
        return InboundRequest(raw_body=body, headers=headers, url="https://relay.test/webhooks/email/c")

    def stale(self, request: InboundRequest, config: Mapping[str, Any]) -> InboundRequest:
        headers = {**request.headers, **self.sendgrid.sign(request.raw_body, int(time.time()) - 3600)}
        return InboundRequest(raw_body=request.raw_body, headers=headers, url=request.url)

    def malformed(self, request: InboundRequest) -> InboundRequest:
        headers = {**request.headers, "x-twilio-email-event-webhook-signature": "ünïcode=="}
        return InboundRequest(raw_body=request.raw_body, headers=headers, url=request.url)

    def echo(
        self, config: Mapping[str, Any], sent: OutboundMessage, provider_message_id: str
    ) -> InboundRequest:
        return self._email(config["from_address"], sent.text, provider_message_id, [])

    def inbound_with_file(
        self, config: Mapping[str, Any], *, event_id: str, sender_id: str, name: str, content: bytes
    ) -> InboundRequest:
        return self._email(sender_id, "", event_id, [(name, "application/pdf", content)])


class TestEmailAdapter(AdapterConformance):
    harness = EmailHarness()
