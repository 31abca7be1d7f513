"""`whatsapp_cloud`: WhatsApp through Meta's Cloud API.

Out: `POST {api_base}/{api_version}/{phone_number_id}/messages` with `Authorization: Bearer <access
token>` and `{"messaging_product": "whatsapp", "to": ..., "type": "text", ...}`. A file is first uploaded
(`POST .../{phone_number_id}/media`, multipart/form-data) and then sent by its media id, as an `image`,
`video`, `audio` or `document` message by its type. Outside the 24-hour customer service window the
Cloud API refuses free text with error 131047; the adapter then sends the channel's approved template
instead, with the agent's text as its one body parameter, when one is configured.

In: Meta first checks the webhook with `GET ?hub.mode=subscribe&hub.verify_token=...&hub.challenge=...`,
answered with the challenge when the token matches. Every POST carries `X-Hub-Signature-256:
sha256=<hex HMAC-SHA256 of the raw body, keyed with the app secret>`. Messages and statuses (`sent`,
`delivered`, `read`, `failed`) arrive in `entry[].changes[].value`. A customer's file arrives as a media
id: `GET .../{media-id}` names a download URL, valid for five minutes, fetched with the same bearer token.

Channel config: `phone_number_id`, `access_token` (secret), `app_secret` (secret), `verify_token`
(secret, generated when absent), optional `template` (`{"name": ..., "language": "en_US"}`),
`api_base` (default https://graph.facebook.com), `api_version` (default v21.0), `timeout_seconds`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import secrets
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from app.adapters.base import (
    Attachment,
    Capabilities,
    CheckResult,
    DeliveryReceipt,
    InboundEvent,
    InboundMessage,
    InboundRequest,
    MediaUnavailable,
    OutboundFile,
    OutboundMessage,
    SendResult,
    SignatureError,
    revealed,
    valid_mime_type,
    validated_config,
)

if TYPE_CHECKING:
    from app.adapters.registry import AdapterContext

log = logging.getLogger("byoc.adapters.whatsapp_cloud")

WA_ID = re.compile(r"^\+?[1-9][0-9]{6,14}$")
MAX_TEXT = 4096
MEDIA_KINDS = ("image", "document", "audio", "video", "sticker")
PLAYABLE = {  # the types the Cloud API shows inline (its media reference); the rest go as documents
    "image": ("image/jpeg", "image/png"),
    "video": ("video/mp4", "video/3gpp"),
    "audio": ("audio/aac", "audio/amr", "audio/mpeg", "audio/mp4", "audio/ogg"),
}
FILES_AFTER_TEMPLATE = (
    "WhatsApp's 24-hour window is closed: the approved template was sent in place of the text, but files "
    "can only follow once the customer writes again"
)
WINDOW_CLOSED = 131047
RETRYABLE_CODES = {4, 80007, 130429, 131000, 131016, 131048, 131056, 133004}
CREDENTIAL_CODES = {190, 10, 200}
STATUSES: dict[str, Literal["delivered", "seen", "failed"]] = {
    "delivered": "delivered",
    "read": "seen",
    "failed": "failed",
}


class Template(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=512)
    language: str = Field("en_US", pattern=r"^[a-z]{2,3}(_[A-Z]{2})?$")


class WhatsAppConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    phone_number_id: str = Field(pattern=r"^[0-9]{5,20}$")
    access_token: SecretStr
    app_secret: SecretStr
    verify_token: SecretStr
    template: Template | None = None
    api_base: str = Field("https://graph.facebook.com", pattern=r"^https?://[^/]+$")
    api_version: str = Field("v21.0", pattern=r"^v[0-9]+\.[0-9]+$")
    timeout_seconds: float = Field(10.0, gt=0, le=60)


def load_config(config: Mapping[str, Any]) -> WhatsAppConfig:
    return validated_config(WhatsAppConfig, config, "whatsapp_cloud")


def _error_code(body: Any) -> tuple[int | None, str | None]:
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return None, None
    code = error.get("code")
    return (code if isinstance(code, int) else None), error.get("message")


def classify(status: int, body: Any) -> SendResult:
    code, message = _error_code(body)
    reason = f"WhatsApp {code}: {message}" if code is not None else f"HTTP {status}"
    if code in RETRYABLE_CODES or status in (408, 429) or status >= 500:
        return SendResult(error=reason, status_code=status)
    if code in CREDENTIAL_CODES or status == 401:  # an expired token: an admin can fix it
        return SendResult(error=reason, status_code=status)
    return SendResult(error=reason, status_code=status, permanent=True, disable_destination=status == 410)


class WhatsAppCloudAdapter:
    name = "whatsapp_cloud"
    capabilities = Capabilities(
        attachments=True,
        uploads_files=True,
        max_attachment_bytes=100 * 1024 * 1024,
        delivery_receipts=True,
        read_receipts=True,
        max_text_length=MAX_TEXT,
        template_outside_session=True,
    )
    config_model: ClassVar[type[BaseModel]] = WhatsAppConfig
    secret_fields: tuple[str, ...] = ("access_token", "app_secret", "verify_token")

    def __init__(self, http: httpx.AsyncClient) -> None:
        self._http = http

    def prepare_config(self, config: Mapping[str, Any]) -> dict[str, Any]:
        values = dict(config)
        values.setdefault("verify_token", secrets.token_urlsafe(24))
        return revealed(load_config(values))

    def recipient_error(self, recipient_id: str) -> str | None:
        return (
            None
            if WA_ID.fullmatch(recipient_id)
            else "a WhatsApp recipient is a phone number with country code"
        )

    def destination(self, config: Mapping[str, Any]) -> str:
        return f"whatsapp:{config.get('phone_number_id')}"

    async def _post(self, cfg: WhatsAppConfig, payload: dict[str, Any]) -> tuple[int, Any]:
        url = f"{cfg.api_base}/{cfg.api_version}/{cfg.phone_number_id}/messages"
        answer = await self._http.post(
            url, json=payload, headers=self._bearer(cfg), timeout=cfg.timeout_seconds
        )
        try:
            return answer.status_code, answer.json()
        except ValueError:
            return answer.status_code, None

    async def check(self, config: Mapping[str, Any]) -> CheckResult:
        try:
            cfg = load_config(config)
            answer = await self._http.get(
                f"{cfg.api_base}/{cfg.api_version}/{cfg.phone_number_id}",
                headers=self._bearer(cfg),
                timeout=cfg.timeout_seconds,
            )
        except ValueError as error:
            return CheckResult(ok=False, detail=str(error))
        except httpx.HTTPError as error:
            return CheckResult(ok=False, detail=f"cannot reach the Cloud API: {type(error).__name__}")
        if answer.is_success:
            return CheckResult(ok=True, detail="the Cloud API knows this phone number id and token")
        return CheckResult(ok=False, detail=classify(answer.status_code, None).error or "refused")

    def _bearer(self, cfg: WhatsAppConfig) -> dict[str, str]:
        return {"authorization": f"Bearer {cfg.access_token.get_secret_value()}"}

    async def _upload(self, cfg: WhatsAppConfig, file: OutboundFile) -> tuple[int, Any]:
        answer = await self._http.post(
            f"{cfg.api_base}/{cfg.api_version}/{cfg.phone_number_id}/media",
            data={"messaging_product": "whatsapp", "type": file.mime_type},
            files={"file": (file.name, file.content, file.mime_type)},
            headers=self._bearer(cfg),
            timeout=cfg.timeout_seconds,
        )
        try:
            return answer.status_code, answer.json()
        except ValueError:
            return answer.status_code, None

    def _text(self, message: OutboundMessage) -> dict[str, Any]:
        text = {**_to(message), "type": "text", "text": {"body": message.text, "preview_url": False}}
        if message.reply_to_provider_message_id:
            text["context"] = {"message_id": message.reply_to_provider_message_id}
        return text

    async def media_request(self, config: Mapping[str, Any], attachment: Attachment) -> httpx.Request:
        """The media id names a short-lived download URL, which takes the same bearer token."""
        cfg = load_config(config)
        try:
            answer = await self._http.get(
                f"{cfg.api_base}/{cfg.api_version}/{attachment.url}",
                headers=self._bearer(cfg),
                timeout=cfg.timeout_seconds,
            )
            body = answer.json()
        except httpx.HTTPError as error:
            raise MediaUnavailable(
                f"cannot reach the Cloud API: {type(error).__name__}", permanent=False
            ) from None
        except ValueError:
            body = None
        if answer.status_code != 200 or not isinstance(body, dict) or not isinstance(body.get("url"), str):
            reason = classify(answer.status_code, body)
            raise MediaUnavailable(f"WhatsApp media: {reason.error}", permanent=reason.permanent)
        return self._http.build_request("GET", body["url"], headers=self._bearer(cfg))

    def _template(self, cfg: WhatsAppConfig, message: OutboundMessage) -> dict[str, Any] | None:
        if cfg.template is None:
            return None
        return {
            "messaging_product": "whatsapp",
            "to": message.recipient_id,
            "type": "template",
            "template": {
                "name": cfg.template.name,
                "language": {"code": cfg.template.language},
                "components": [{"type": "body", "parameters": [{"type": "text", "text": message.text}]}],
            },
        }

    async def send(self, config: Mapping[str, Any], message: OutboundMessage) -> SendResult:
        try:
            cfg = load_config(config)
        except ValueError as error:
            return SendResult(error=str(error), permanent=True)
        if len(message.text) > MAX_TEXT:
            return SendResult(error=f"WhatsApp text is longer than {MAX_TEXT} characters", permanent=True)
        media: list[dict[str, Any]] = []
        try:
            for file in message.files:  # every upload first, so that a failed one re-sends nothing on retry
                status, body = await self._upload(cfg, file)
                if status != 200 or not isinstance(body, dict) or "id" not in body:
                    return classify(status, body)
                media.append(_media_message(message, file, str(body["id"])))
            payloads = ([self._text(message)] if message.text else []) + media
            first_id: str | None = None
            for index, payload in enumerate(payloads):
                status, body = await self._post(cfg, payload)
                if index == 0 and message.text and _error_code(body)[0] == WINDOW_CLOSED:
                    template = self._template(cfg, message)  # the 24-hour window is closed
                    if template is not None:
                        status, body = await self._post(cfg, template)
                        if media and status == 200:  # only the template may go: the files must wait
                            return SendResult(error=FILES_AFTER_TEMPLATE, permanent=True)
                sent = body.get("messages") if isinstance(body, dict) else None
                if status != 200 or not isinstance(sent, list) or not sent or not isinstance(sent[0], dict):
                    return classify(status, body)
                first_id = first_id or str(sent[0].get("id"))
        except httpx.TimeoutException as error:
            return SendResult(error=f"timeout: {type(error).__name__}")
        except httpx.HTTPError as error:
            return SendResult(error=f"transport error: {type(error).__name__}")
        return SendResult(provider_message_id=first_id, status_code=200)

    async def show_typing(
        self, config: Mapping[str, Any], channel_id: str, recipient_id: str, typing: bool
    ) -> None:
        return None  # the Cloud API shows typing only when marking a received message read

    def subscribe(self, params: Mapping[str, str], config: Mapping[str, Any]) -> str:
        """Meta's webhook check: the challenge back when the verify token matches; else SignatureError."""
        token = params.get("hub.verify_token", "")
        expected = load_config(config).verify_token.get_secret_value()
        if params.get("hub.mode") != "subscribe" or not hmac.compare_digest(
            token.encode(), expected.encode()
        ):
            raise SignatureError("hub.verify_token does not match")
        return params.get("hub.challenge", "")

    def verify(self, request: InboundRequest, config: Mapping[str, Any]) -> None:
        given = request.headers.get("x-hub-signature-256", "")
        if not given.startswith("sha256="):
            raise SignatureError("missing or malformed X-Hub-Signature-256 header")
        try:
            key = load_config(config).app_secret.get_secret_value().encode()
        except ValueError:
            raise SignatureError("the channel has no valid app secret") from None
        expected = "sha256=" + hmac.new(key, request.raw_body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise SignatureError("X-Hub-Signature-256 does not match")

    def parse(self, request: InboundRequest, config: Mapping[str, Any]) -> list[InboundEvent]:
        try:
            payload = json.loads(request.raw_body)
            values = [
                change["value"]
                for entry in payload["entry"]
                for change in entry.get("changes", [])
                if change.get("field") == "messages"
            ]
            return [event for value in values for event in self._events(value, config)]
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as error:
            raise ValueError(f"not a WhatsApp webhook ({type(error).__name__})") from None

    def _events(self, value: dict[str, Any], config: Mapping[str, Any]) -> list[InboundEvent]:
        names = {c["wa_id"]: c.get("profile", {}).get("name") for c in value.get("contacts", [])}
        ours = str(config.get("phone_number_id"))
        events: list[InboundEvent] = []
        for message in value.get("messages", []):
            kind = message.get("type")
            text = message.get("text", {}).get("body", "") if kind == "text" else ""
            media = message.get(kind) if kind in MEDIA_KINDS else None
            files: tuple[Attachment, ...] = ()
            if isinstance(media, dict):
                text = str(media.get("caption") or "")
                files = (
                    Attachment(
                        url=str(media["id"]),
                        friendly_name=name if isinstance(name := media.get("filename"), str) else None,
                        mime_type=valid_mime_type(media.get("mime_type")),
                    ),
                )
            events.append(
                InboundMessage(
                    sender_id=str(message["from"]),
                    sender_name=names.get(message["from"]),
                    text=text,
                    attachments=files,
                    event_id=str(message["id"]),
                    is_echo=value.get("metadata", {}).get("phone_number_id") == ours
                    and message["from"] == ours,
                )
            )
        for status in value.get("statuses", []):
            if status.get("status") not in STATUSES:
                continue  # "sent" is not news to CXone
            errors = status.get("errors") or []
            reason = f"WhatsApp {errors[0].get('code')}: {errors[0].get('title')}" if errors else None
            events.append(
                DeliveryReceipt(
                    provider_message_id=str(status["id"]),
                    status=STATUSES[status["status"]],
                    reason=reason,
                    event_id=f"{status['id']}:{status['status']}",
                )
            )
        return events


def _to(message: OutboundMessage) -> dict[str, Any]:
    return {"messaging_product": "whatsapp", "recipient_type": "individual", "to": message.recipient_id}


def _media_message(message: OutboundMessage, file: OutboundFile, media_id: str) -> dict[str, Any]:
    """An uploaded file, as the kind of message WhatsApp takes it as (image, video, audio); any other
    type goes as a document, which keeps its name."""
    for kind, types in PLAYABLE.items():
        if file.mime_type in types:
            return {**_to(message), "type": kind, kind: {"id": media_id}}
    return {**_to(message), "type": "document", "document": {"id": media_id, "filename": file.name}}


def create_adapter(context: AdapterContext) -> WhatsAppCloudAdapter:
    """Entry point (`byoc_relay.adapters`)."""
    return WhatsAppCloudAdapter(context.http)
