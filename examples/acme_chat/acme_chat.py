"""A byoc-relay adapter for the made-up Acme Chat: JSON with a bearer token out; webhooks in, signed
with X-Acme-Signature = hex HMAC-SHA256(webhook secret, "<X-Acme-Timestamp>.<body>")."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any, ClassVar

import httpx
from pydantic import BaseModel, ConfigDict, HttpUrl, SecretStr, ValidationError

from app.adapters.base import Capabilities, CheckResult, InboundMessage, SendResult, SignatureError


class AcmeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    api_url: HttpUrl
    token: SecretStr
    webhook_secret: SecretStr


class AcmeChatAdapter:
    name = "acme_chat"
    capabilities = Capabilities(max_text_length=2000)
    config_model: ClassVar[type[BaseModel]] = AcmeConfig
    secret_fields = ("token", "webhook_secret")

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    def prepare_config(self, config: Any) -> dict[str, Any]:
        try:
            cfg = AcmeConfig.model_validate(dict(config))
        except ValidationError as error:
            raise ValueError(f"invalid acme_chat config ({error.error_count()} problems)") from None
        secrets = {name: getattr(cfg, name).get_secret_value() for name in self.secret_fields}
        return {"api_url": str(cfg.api_url).rstrip("/"), **secrets}

    def recipient_error(self, recipient_id: str) -> str | None:
        return None if recipient_id.isalnum() else "Acme Chat user ids are letters and digits"

    def destination(self, config: Any) -> str:
        return f"acme_chat:{config['api_url']}"

    async def _call(self, config: Any, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"authorization": f"Bearer {config['token']}"}
        return await self.http.request(method, f"{config['api_url']}{path}", headers=headers, **kwargs)

    async def check(self, config: Any) -> CheckResult:
        try:
            answer = await self._call(config, "GET", "/me")
        except httpx.HTTPError as error:
            return CheckResult(ok=False, detail=f"unreachable: {type(error).__name__}")
        return CheckResult(ok=answer.is_success, detail=f"Acme Chat answered HTTP {answer.status_code}")

    async def send(self, config: Any, message: Any) -> SendResult:
        body = {"to": message.recipient_id, "text": message.text, "client_id": message.message_id}
        try:
            answer = await self._call(config, "POST", "/messages", json=body)
        except httpx.HTTPError as error:
            return SendResult(error=f"transport error: {type(error).__name__}")
        status = answer.status_code
        if answer.is_success:
            return SendResult(provider_message_id=str(answer.json()["id"]), status_code=status)
        permanent = status < 500 and status not in (408, 425, 429)
        return SendResult(
            error=f"HTTP {status}", status_code=status, permanent=permanent, disable_destination=status == 410
        )

    async def show_typing(self, config: Any, channel_id: str, recipient_id: str, typing: bool) -> None:
        return None  # Acme Chat shows no typing indicator

    def verify(self, request: Any, config: Any) -> None:
        stamp = request.headers.get("x-acme-timestamp", "")
        if not (stamp.isascii() and stamp.isdigit()) or abs(time.time() - int(stamp)) > 300:
            raise SignatureError("missing or stale X-Acme-Timestamp")
        key, signed = config["webhook_secret"].encode(), stamp.encode() + b"." + request.raw_body
        expected = hmac.new(key, signed, hashlib.sha256).hexdigest().encode()
        if not hmac.compare_digest(request.headers.get("x-acme-signature", "").encode(), expected):
            raise SignatureError("X-Acme-Signature does not match")

    def parse(self, request: Any, config: Any) -> list[Any]:
        try:
            event = json.loads(request.raw_body)
            echo = bool(event.get("from_business"))
            return [
                InboundMessage(
                    str(event["from"]), str(event["text"]), event_id=str(event["id"]), is_echo=echo
                )
            ]
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise ValueError(f"not an Acme Chat event ({type(error).__name__})") from None


def create_adapter(context: Any) -> AcmeChatAdapter:
    return AcmeChatAdapter(context.http)
