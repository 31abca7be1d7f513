"""`telegram`: a Telegram bot through the Bot API.

Out: `POST {api_base}/bot<token>/sendMessage` (`chat_id`, `text`), `sendDocument` for each attachment (the
file itself, uploaded as multipart/form-data; bots may upload up to 50 MB), `sendChatAction` for
typing. Answers are `{"ok": true, "result": {"message_id": ...}}` or `{"ok": false, "error_code": 403,
"description": ...}`, with `parameters.retry_after` on 429.

In: when the channel is created the relay calls `setWebhook` with our URL and a generated `secret_token`;
Telegram then sends that token in `X-Telegram-Bot-Api-Secret-Token` with every update, and the relay
refuses any update without it. The end user's id is the chat id. A customer's document, photo, audio,
video or voice note is fetched with `getFile` and then `GET {api_base}/file/bot<token>/<file_path>`
(Telegram hands bots files up to 20 MB).

Channel config: `bot_token` (secret), `webhook_secret` (secret, generated when absent), optional
`api_base` (default https://api.telegram.org), optional `timeout_seconds`.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import secrets
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from app.adapters.base import (
    Attachment,
    Capabilities,
    CheckResult,
    InboundEvent,
    InboundMessage,
    InboundRequest,
    MediaUnavailable,
    OutboundFile,
    OutboundMessage,
    SendResult,
    SignatureError,
    revealed,
    validated_config,
)

if TYPE_CHECKING:
    from app.adapters.registry import AdapterContext

log = logging.getLogger("byoc.adapters.telegram")

BOT_TOKEN = re.compile(r"^[0-9]{3,20}:[A-Za-z0-9_-]{20,}$")
WEBHOOK_SECRET = re.compile(r"^[A-Za-z0-9_-]{16,256}$")
CHAT_ID = re.compile(r"^-?[0-9]{1,20}$")
MAX_TEXT = 4096
MAX_CAPTION = 1024  # a file's caption: a reply with one file and this much text goes as one message
MEDIA_KINDS = ("document", "audio", "video", "voice", "animation")
SECRET_HEADER = "x-telegram-bot-api-secret-token"


class TelegramConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bot_token: SecretStr
    webhook_secret: SecretStr
    api_base: str = Field("https://api.telegram.org", pattern=r"^https?://[^/]+$")
    timeout_seconds: float = Field(10.0, gt=0, le=60)

    @field_validator("bot_token")
    @classmethod
    def _token_shape(cls, value: SecretStr) -> SecretStr:
        if not BOT_TOKEN.fullmatch(value.get_secret_value()):
            raise ValueError("a bot token reads <bot id>:<secret>, as BotFather gives it")
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _secret_shape(cls, value: SecretStr) -> SecretStr:
        if not WEBHOOK_SECRET.fullmatch(value.get_secret_value()):
            raise ValueError("Telegram takes 1-256 characters A-Z, a-z, 0-9, _ and - (16 at least here)")
        return value


def load_config(config: Mapping[str, Any]) -> TelegramConfig:
    return validated_config(TelegramConfig, config, "telegram")


def classify(status: int, body: Any) -> SendResult:
    """Telegram's error answer: 429 and 5xx wait and retry; a blocked bot, a missing chat are final."""
    description = body.get("description") if isinstance(body, dict) else None
    reason = f"Telegram {status}: {description}" if description else f"HTTP {status}"
    parameters = body.get("parameters") if isinstance(body, dict) else None
    retry_after = parameters.get("retry_after") if isinstance(parameters, dict) else None
    if status == 429 or status >= 500 or status == 408:
        delay = float(retry_after) if isinstance(retry_after, int | float) else None
        return SendResult(error=reason, status_code=status, retry_after=delay)
    if status == 401:  # the bot token was revoked: an admin can fix it
        return SendResult(error=reason, status_code=status)
    return SendResult(error=reason, status_code=status, permanent=True, disable_destination=status == 410)


class TelegramAdapter:
    name = "telegram"
    capabilities = Capabilities(
        attachments=True,
        uploads_files=True,
        max_attachment_bytes=50 * 1024 * 1024,
        typing=True,
        max_text_length=MAX_TEXT,
    )
    config_model: ClassVar[type[BaseModel]] = TelegramConfig
    secret_fields: tuple[str, ...] = ("bot_token", "webhook_secret")

    def __init__(self, http: httpx.AsyncClient) -> None:
        self._http = http

    def prepare_config(self, config: Mapping[str, Any]) -> dict[str, Any]:
        values = dict(config)
        values.setdefault("webhook_secret", secrets.token_urlsafe(32))
        return revealed(load_config(values))

    def recipient_error(self, recipient_id: str) -> str | None:
        return None if CHAT_ID.fullmatch(recipient_id) else "a Telegram recipient is a numeric chat id"

    def destination(self, config: Mapping[str, Any]) -> str:
        token = str(config.get("bot_token", ""))
        return f"telegram:{token.split(':', 1)[0]}"  # the bot's id, never its secret part

    async def _call(
        self, cfg: TelegramConfig, method: str, payload: dict[str, Any], file: OutboundFile | None = None
    ) -> tuple[int, Any]:
        """One Bot API method: a JSON body, or multipart/form-data when a file goes with it."""
        url = f"{cfg.api_base}/bot{cfg.bot_token.get_secret_value()}/{method}"
        if file is None:
            answer = await self._http.post(url, json=payload, timeout=cfg.timeout_seconds)
        else:
            answer = await self._http.post(
                url,
                data={k: v if isinstance(v, str) else json.dumps(v) for k, v in payload.items()},
                files={"document": (file.name, file.content, file.mime_type)},
                timeout=cfg.timeout_seconds,
            )
        try:
            return answer.status_code, answer.json()
        except ValueError:
            return answer.status_code, None

    async def connect(self, config: Mapping[str, Any], webhook_url: str) -> CheckResult:
        """At channel creation: point the bot's webhook at us, with the secret Telegram will echo."""
        cfg = load_config(config)
        payload = {"url": webhook_url, "secret_token": cfg.webhook_secret.get_secret_value()}
        try:
            status, body = await self._call(cfg, "setWebhook", payload)
        except httpx.HTTPError as error:
            return CheckResult(ok=False, detail=f"cannot reach Telegram: {type(error).__name__}")
        if status == 200 and isinstance(body, dict) and body.get("ok"):
            return CheckResult(ok=True, detail="Telegram will send this bot's updates to the relay")
        return CheckResult(ok=False, detail=classify(status, body).error or f"HTTP {status}")

    async def check(self, config: Mapping[str, Any]) -> CheckResult:
        try:
            status, body = await self._call(load_config(config), "getMe", {})
        except ValueError as error:
            return CheckResult(ok=False, detail=str(error))
        except httpx.HTTPError as error:
            return CheckResult(ok=False, detail=f"cannot reach Telegram: {type(error).__name__}")
        if status == 200 and isinstance(body, dict) and isinstance(body.get("result"), dict):
            return CheckResult(ok=True, detail=f"the bot is @{body['result'].get('username')}")
        return CheckResult(ok=False, detail=classify(status, body).error or f"HTTP {status}")

    async def send(self, config: Mapping[str, Any], message: OutboundMessage) -> SendResult:
        try:
            cfg = load_config(config)
        except ValueError as error:
            return SendResult(error=str(error), permanent=True)
        if _telegram_length(message.text) > MAX_TEXT:
            return SendResult(error=f"Telegram text is longer than {MAX_TEXT} characters", permanent=True)
        first: dict[str, Any] = {"chat_id": message.recipient_id}
        replied = (message.reply_to_provider_message_id or "").rpartition(":")[2]
        if replied.isdigit():
            first["reply_parameters"] = {"message_id": int(replied), "allow_sending_without_reply": True}
        files = list(message.files)
        calls: list[tuple[str, dict[str, Any], OutboundFile | None]] = []
        if message.text and len(files) == 1 and _telegram_length(message.text) <= MAX_CAPTION:
            calls.append(("sendDocument", {**first, "caption": message.text}, files.pop()))  # one call
        elif message.text:
            calls.append(("sendMessage", {**first, "text": message.text}, None))
        calls.extend(("sendDocument", {"chat_id": message.recipient_id}, f) for f in files)
        first_id: str | None = None
        for method, payload, upload in calls:
            try:
                status, body = await self._call(cfg, method, payload, upload)
            except httpx.TimeoutException as error:
                return SendResult(error=f"timeout: {type(error).__name__}")
            except httpx.HTTPError as error:
                return SendResult(error=f"transport error: {type(error).__name__}")
            result = body.get("result") if isinstance(body, dict) and body.get("ok") else None
            if status != 200 or not isinstance(result, dict):
                return classify(status, body)
            first_id = first_id or f"{message.recipient_id}:{result.get('message_id')}"  # as parse names it
        return SendResult(provider_message_id=first_id, status_code=200)

    async def show_typing(
        self, config: Mapping[str, Any], channel_id: str, recipient_id: str, typing: bool
    ) -> None:
        if not typing:
            return  # Telegram clears the indicator by itself after five seconds
        try:
            await self._call(
                load_config(config), "sendChatAction", {"chat_id": recipient_id, "action": "typing"}
            )
        except (ValueError, httpx.HTTPError) as error:
            log.debug("typing indicator not sent: %s", type(error).__name__)

    async def media_request(self, config: Mapping[str, Any], attachment: Attachment) -> httpx.Request:
        """`getFile` names where Telegram keeps the file for the next hour; that path is then downloaded."""
        cfg = load_config(config)
        try:
            status, body = await self._call(cfg, "getFile", {"file_id": attachment.url})
        except httpx.HTTPError as error:
            raise MediaUnavailable(
                f"cannot reach Telegram: {type(error).__name__}", permanent=False
            ) from None
        result = body.get("result") if isinstance(body, dict) and body.get("ok") else None
        if status != 200 or not isinstance(result, dict) or not isinstance(result.get("file_path"), str):
            reason = classify(status, body)
            raise MediaUnavailable(f"Telegram getFile: {reason.error}", permanent=reason.permanent)
        token = cfg.bot_token.get_secret_value()
        return self._http.build_request("GET", f"{cfg.api_base}/file/bot{token}/{result['file_path']}")

    def verify(self, request: InboundRequest, config: Mapping[str, Any]) -> None:
        given = request.headers.get(SECRET_HEADER)
        if not given:
            raise SignatureError(f"missing {SECRET_HEADER} header")
        try:
            expected = load_config(config).webhook_secret.get_secret_value()
        except ValueError:
            raise SignatureError("the channel has no valid webhook secret") from None
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise SignatureError(f"{SECRET_HEADER} does not match")

    def parse(self, request: InboundRequest, config: Mapping[str, Any]) -> list[InboundEvent]:
        try:
            update = json.loads(request.raw_body)
        except (ValueError, RecursionError):
            raise ValueError("body: not valid JSON") from None
        if not isinstance(update, dict):
            raise ValueError("body: a Telegram update is a JSON object")
        message = update.get("message")
        if not isinstance(message, dict):
            return []  # edited messages, callbacks, membership changes: nothing for CXone
        chat, sender = message.get("chat"), message.get("from")
        if not isinstance(chat, dict) or not isinstance(chat.get("id"), int):
            raise ValueError("message.chat.id: missing")
        if "message_id" not in message:
            raise ValueError("message.message_id: missing")
        text = message.get("text") or message.get("caption") or ""
        if not isinstance(text, str):
            raise ValueError("message.text: not a string")
        name = None
        if isinstance(sender, dict):
            name = " ".join(str(sender[k]) for k in ("first_name", "last_name") if sender.get(k)) or None
        return [
            InboundMessage(
                sender_id=str(chat["id"]),
                sender_name=name,
                text=text,
                event_id=f"{chat['id']}:{message['message_id']}",
                attachments=_files_of(message),
                is_echo=isinstance(sender, dict) and sender.get("is_bot") is True,
            )
        ]


def _telegram_length(text: str) -> int:
    """Telegram measures text in UTF-16 code units: an emoji outside the BMP counts twice."""
    return len(text.encode("utf-16-le")) // 2


def _files_of(message: dict[str, Any]) -> tuple[Attachment, ...]:
    """A message's file, by its `file_id` (fetched later through `media_request`); of a photo's sizes,
    the largest, which Telegram lists last."""
    found: list[Attachment] = []
    photos = message.get("photo")
    if isinstance(photos, list) and photos and isinstance(photos[-1], dict):
        found.append(_file(photos[-1], "photo.jpg", "image/jpeg"))
    for kind in MEDIA_KINDS:
        media = message.get(kind)
        if isinstance(media, dict):
            found.append(_file(media, media.get("file_name"), media.get("mime_type")))
    return tuple(found)


def _file(media: dict[str, Any], name: Any, mime_type: Any) -> Attachment:
    if not isinstance(media.get("file_id"), str):
        raise ValueError("message: a file without a file_id")
    size = media.get("file_size")
    return Attachment(
        url=media["file_id"],
        friendly_name=name if isinstance(name, str) else None,
        mime_type=mime_type if isinstance(mime_type, str) else None,
        size=size if isinstance(size, int) else None,
    )


def create_adapter(context: AdapterContext) -> TelegramAdapter:
    """Entry point (`byoc_relay.adapters`)."""
    return TelegramAdapter(context.http)
