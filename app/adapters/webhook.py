"""`webhook`: a generic JSON-over-HTTP channel for any in-house messaging platform.

Both directions are signed with Standard Webhooks (HMAC-SHA256 over `webhook-id.webhook-timestamp.body`,
`v1,<base64>` tokens, `whsec_` secrets). Signing and verifying are hand-rolled with `hmac.compare_digest`
because the `standardwebhooks` library decodes the raw body as text, holds one secret per instance,
reformats the timestamp it signs and raises bare `ValueError`/`binascii.Error` on malformed tokens.

Channel config (secrets arrive decrypted): `url` (where we POST), `secret` (signs what we send and
verifies what we receive), optional `previous_secret` (during a rotation: also accepted inbound, and
outbound requests then carry one signature per secret), optional `timeout_seconds` (default 10).

What we POST to `url` (headers `webhook-id`, `webhook-timestamp`, `webhook-signature`):

    {"type": "message", "id": "<message id = webhook-id, the same on every retry>",
     "channel_id": "...", "thread_id": "...", "to": {"id": "...", "name": "..." | null},
     "text": "...", "attachments": [{"url": "...", "name": "...", "type": "...", "size": 123}],
     "reply_to": "<provider message id>" | null, "timestamp": "2024-01-01T12:00:00.000Z"}
    {"type": "typing", "channel_id": "...", "to": {"id": "..."}, "typing": true}
    {"type": "ping"}        (`check`: a 2xx answer means the platform is there and takes our signature)

A 2xx answer may carry `{"id": "<provider message id>"}`; without it our message id stands in. An
agent's file reaches the platform as a link the relay serves for `BYOC_FILE_RETENTION_HOURS`; a
customer's file is fetched once from its `url` (refused unfetched when its declared `size` is over the cap).

What the platform POSTs to our webhook (one object, or a JSON array of them):

    {"type": "message", "id": "<event id>", "from": {"id": "...", "name": "..."?},
     "text": "..."?, "attachments": [{"url": "...", "name"?, "type"?, "size"?}]?,  (text or a file)
     "echo": true?}      (a copy of a message sent from the business side: never taken as the customer's)
    {"type": "status", "id": "<event id>", "message_id": "<the id we sent>",
     "status": "delivered" | "read" | "failed", "reason": "..."?}
    {"type": "typing", "from": {"id": "..."}, "typing": true | false}

Unknown fields are ignored, so the platform can add some without breaking us.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import re
import secrets
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit

import httpx
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StrictBool,
    ValidationError,
    field_validator,
)

from app.adapters.base import (
    Attachment,
    Capabilities,
    CheckResult,
    DeliveryReceipt,
    InboundEvent,
    InboundMessage,
    InboundRequest,
    OutboundMessage,
    SendResult,
    SignatureError,
    TypingEvent,
)

if TYPE_CHECKING:
    from app.adapters.registry import AdapterContext

log = logging.getLogger("byoc.adapters.webhook")

SECRET_PREFIX = "whsec_"
SECRET_MIN_BYTES = 24
SECRET_MAX_BYTES = 64
TOLERANCE_SECONDS = 5 * 60
DEFAULT_TIMEOUT_SECONDS = 10.0
TYPING_TIMEOUT_SECONDS = 2.0
MAX_RECIPIENT_LENGTH = 200
MAX_ERROR_BODY_CHARS = 200
MAX_RESPONSE_BYTES = 64 * 1024
MAX_BATCH = 500
MAX_MSG_ID_LENGTH = 256
MAX_SIGNATURE_TOKENS = 16
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_VISIBLE_ASCII = re.compile(r"[\x21-\x7e]+")
_RETRYABLE_STATUSES = frozenset({408, 425, 429})


def generate_secret() -> str:
    """A fresh channel secret: `whsec_` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def decode_secret(secret: str) -> bytes:
    """The key bytes of a `whsec_` secret. ValueError says what is wrong, never what the secret is."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"must start with {SECRET_PREFIX!r}")
    encoded = secret[len(SECRET_PREFIX) :]
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"must be {SECRET_PREFIX!r} followed by base64") from None
    if not SECRET_MIN_BYTES <= len(key) <= SECRET_MAX_BYTES:
        raise ValueError(f"must encode {SECRET_MIN_BYTES} to {SECRET_MAX_BYTES} bytes, not {len(key)}")
    return key


def sign(key: bytes, msg_id: str, timestamp: str, body: bytes) -> str:
    """One Standard Webhooks `v1,` token for these exact bytes."""
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def recipient_problem(recipient_id: str) -> str | None:
    if not recipient_id:
        return "recipient id is empty"
    if len(recipient_id) > MAX_RECIPIENT_LENGTH:
        return f"recipient id is longer than {MAX_RECIPIENT_LENGTH} characters"
    if any(c.isspace() for c in recipient_id):
        return "recipient id contains whitespace"
    if not recipient_id.isprintable():
        return "recipient id contains non-printable characters"
    return None


def _check_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https"):
        raise ValueError("must be an absolute http:// or https:// URL")
    if not parts.hostname:
        raise ValueError("must name a host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not carry credentials; the secret signs every request")
    if parts.fragment:
        raise ValueError("must not have a #fragment")
    try:
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError:
        raise ValueError("has an invalid port") from None
    return value


class WebhookConfig(BaseModel):
    """A `webhook` channel's config, secrets included (they arrive decrypted)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: Annotated[str, Field(min_length=1, max_length=2048), AfterValidator(_check_url)]
    secret: SecretStr
    previous_secret: SecretStr | None = None
    timeout_seconds: float = Field(default=DEFAULT_TIMEOUT_SECONDS, gt=0, le=120)

    @field_validator("secret", "previous_secret")
    @classmethod
    def _valid_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            decode_secret(value.get_secret_value())
        return value

    def signing_keys(self) -> list[bytes]:
        """Signing keys, current first."""
        keys = [decode_secret(self.secret.get_secret_value())]
        if self.previous_secret is not None:
            keys.append(decode_secret(self.previous_secret.get_secret_value()))
        return keys


def _describe(error: ValidationError, prefix: str = "") -> str:
    problems = []
    for item in error.errors()[:3]:
        where = ".".join(str(part) for part in item["loc"]) or "body"
        problems.append(f"{prefix}{where}: {item['msg']}")
    return "; ".join(problems)


def load_config(config: Mapping[str, Any]) -> WebhookConfig:
    """The validated config, or ValueError naming the bad fields (never their values)."""
    try:
        return WebhookConfig.model_validate(dict(config))
    except ValidationError as error:
        raise ValueError(f"invalid webhook config: {_describe(error)}") from None


# Inbound shapes --------------------------------------------------------------------------------------


def _check_party_id(value: str) -> str:
    problem = recipient_problem(value)
    if problem is not None:
        raise ValueError(problem.replace("recipient id", "id"))
    return value


def _check_attachment_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("must be an absolute http:// or https:// URL")
    return value


PartyId = Annotated[str, AfterValidator(_check_party_id)]
EventId = Annotated[str, Field(min_length=1, max_length=200)]


class _Inbound(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class _Party(_Inbound):
    id: PartyId
    name: Annotated[str, Field(max_length=200)] | None = None


class _InAttachment(_Inbound):
    url: Annotated[str, Field(min_length=1, max_length=4096), AfterValidator(_check_attachment_url)]
    name: Annotated[str, Field(max_length=500)] | None = None
    type: Annotated[str, Field(max_length=255, pattern=r"^[\w.+-]+/[\w.+-]+$")] | None = None
    size: Annotated[int, Field(ge=0)] | None = None


class _MessageEvent(_Inbound):
    type: Literal["message"]
    id: EventId
    sender: _Party = Field(alias="from")
    text: str | None = None
    attachments: list[_InAttachment] = Field(default_factory=list, max_length=50)
    echo: StrictBool = False

    def event(self) -> InboundMessage:
        return InboundMessage(
            sender_id=self.sender.id,
            sender_name=self.sender.name,
            text=self.text or "",
            event_id=self.id,
            attachments=tuple(
                Attachment(url=a.url, friendly_name=a.name, mime_type=a.type, size=a.size)
                for a in self.attachments
            ),
            is_echo=self.echo,
        )


class _StatusEvent(_Inbound):
    type: Literal["status"]
    id: EventId
    message_id: Annotated[str, Field(min_length=1, max_length=200)]
    status: Literal["delivered", "read", "failed"]
    reason: Annotated[str, Field(max_length=1000)] | None = None

    def event(self) -> DeliveryReceipt:
        status: Literal["delivered", "seen", "failed"] = "seen" if self.status == "read" else self.status
        return DeliveryReceipt(
            provider_message_id=self.message_id, status=status, reason=self.reason, event_id=self.id
        )


class _TypingParty(_Inbound):
    id: PartyId


class _TypingEvent(_Inbound):
    type: Literal["typing"]
    sender: _TypingParty = Field(alias="from")
    typing: StrictBool

    def event(self) -> TypingEvent:
        return TypingEvent(sender_id=self.sender.id, typing=self.typing)


_EVENT_MODELS: dict[str, type[_MessageEvent] | type[_StatusEvent] | type[_TypingEvent]] = {
    "message": _MessageEvent,
    "status": _StatusEvent,
    "typing": _TypingEvent,
}


def _parse_one(item: Any, prefix: str) -> InboundEvent:
    if not isinstance(item, dict):
        raise ValueError(f"{prefix.rstrip('.') or 'body'}: must be a JSON object")
    kind = item.get("type")
    model = _EVENT_MODELS.get(kind) if isinstance(kind, str) else None
    if model is None:
        raise ValueError(f"{prefix}type: must be one of {', '.join(_EVENT_MODELS)}")
    try:
        parsed = model.model_validate(item)
    except ValidationError as error:
        raise ValueError(_describe(error, prefix)) from None
    if isinstance(parsed, _MessageEvent) and not parsed.text and not parsed.attachments:
        raise ValueError(f"{prefix}text: a message needs text or at least one attachment")
    return parsed.event()


# Outbound helpers -------------------------------------------------------------------------------------


def _retry_after(value: str | None) -> float | None:
    """`Retry-After` as seconds from now: delta-seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _excerpt(raw: bytes) -> str:
    text = raw[: MAX_ERROR_BODY_CHARS * 4].decode("utf-8", errors="replace")
    return " ".join(text.split())[:MAX_ERROR_BODY_CHARS]


def _provider_id(raw: bytes) -> str | None:
    try:
        body = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    value = body.get("id")
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    text = str(value)
    return text if 0 < len(text) <= 200 else None


def _classify(status: int, raw: bytes, retry_after: str | None, message_id: str) -> SendResult:
    if 200 <= status < 300:
        return SendResult(provider_message_id=_provider_id(raw) or message_id, status_code=status)
    reason = f"HTTP {status}"
    excerpt = _excerpt(raw)
    if excerpt:
        reason = f"{reason}: {excerpt}"
    if status in _RETRYABLE_STATUSES or status >= 500:
        return SendResult(error=reason, status_code=status, retry_after=_retry_after(retry_after))
    if status == 410:
        return SendResult(error=reason, status_code=status, permanent=True, disable_destination=True)
    if 300 <= status < 400:
        reason = f"HTTP {status} (redirects are not followed)"
    return SendResult(error=reason, status_code=status, permanent=True)


class WebhookAdapter:
    name = "webhook"
    capabilities = Capabilities(
        attachments=False,  # attachments travel as URLs in the JSON body
        delivery_receipts=True,
        read_receipts=True,
        typing=True,
    )
    secret_fields: tuple[str, ...] = ("secret", "previous_secret")
    config_model: ClassVar[type[BaseModel]] = WebhookConfig

    def __init__(self, http: httpx.AsyncClient) -> None:
        self._http = http

    def prepare_config(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """A new channel's config: validated, `timeout_seconds` filled in, a `secret` generated when none
        is given (the admin hands it to the platform once). Secrets come back as plain strings."""
        values = dict(config)
        if values.get("secret") is None:
            values["secret"] = generate_secret()
        cfg = load_config(values)
        prepared: dict[str, Any] = {
            "url": cfg.url,
            "secret": cfg.secret.get_secret_value(),
            "timeout_seconds": cfg.timeout_seconds,
        }
        if cfg.previous_secret is not None:
            prepared["previous_secret"] = cfg.previous_secret.get_secret_value()
        return prepared

    async def check(self, config: Mapping[str, Any]) -> CheckResult:
        """A signed `{"type": "ping"}` to the platform: a 2xx means it is there and takes our signature."""
        try:
            cfg = load_config(config)
        except ValueError as error:
            return CheckResult(ok=False, detail=str(error))
        body = b'{"type":"ping"}'
        try:
            response = await self._http.post(
                cfg.url,
                content=body,
                headers=self._headers(cfg, f"ping_{uuid.uuid4().hex}", body),
                timeout=cfg.timeout_seconds,
                follow_redirects=False,
            )
        except httpx.HTTPError as error:
            return CheckResult(ok=False, detail=f"cannot reach the platform: {type(error).__name__}")
        if response.is_success:
            return CheckResult(ok=True, detail=f"the platform answered HTTP {response.status_code}")
        if response.status_code in (401, 403):
            return CheckResult(
                ok=False, detail=f"the platform refused our signature (HTTP {response.status_code})"
            )
        return CheckResult(ok=False, detail=f"the platform answered HTTP {response.status_code}")

    # Outbound ---------------------------------------------------------------------------------------

    def recipient_error(self, recipient_id: str) -> str | None:
        return recipient_problem(recipient_id)

    def destination(self, config: Mapping[str, Any]) -> str:
        url = config.get("url")
        parts = urlsplit(url if isinstance(url, str) else "")
        try:
            host, port = parts.hostname, parts.port
        except ValueError:
            host, port = None, None
        if not host or parts.scheme not in ("http", "https"):
            return "webhook:invalid"
        if ":" in host:
            host = f"[{host}]"
        default_port = 443 if parts.scheme == "https" else 80
        suffix = f":{port}" if port is not None and port != default_port else ""
        return f"webhook:{parts.scheme}://{host}{suffix}"

    def _headers(self, cfg: WebhookConfig, msg_id: str, body: bytes) -> dict[str, str]:
        timestamp = str(int(time.time()))
        signatures = " ".join(sign(key, msg_id, timestamp, body) for key in cfg.signing_keys())
        return {
            "webhook-id": msg_id,
            "webhook-timestamp": timestamp,
            "webhook-signature": signatures,
            "content-type": "application/json",
        }

    async def send(self, config: Mapping[str, Any], message: OutboundMessage) -> SendResult:
        try:
            cfg = load_config(config)
        except ValueError as error:
            return SendResult(error=str(error), permanent=True)
        if len(message.message_id) > MAX_MSG_ID_LENGTH or not _VISIBLE_ASCII.fullmatch(message.message_id):
            return SendResult(error="message id cannot be a webhook-id header", permanent=True)
        payload = {
            "type": "message",
            "id": message.message_id,
            "channel_id": message.channel_id,
            "thread_id": message.thread_id,
            "to": {"id": message.recipient_id, "name": message.recipient_name},
            "text": message.text,
            "attachments": [
                {"url": a.url, "name": a.friendly_name, "type": a.mime_type, "size": a.size}
                for a in message.attachments
            ],
            "reply_to": message.reply_to_provider_message_id,
            "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        }
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        headers = self._headers(cfg, message.message_id, body)
        try:
            async with self._http.stream(
                "POST",
                cfg.url,
                content=body,
                headers=headers,
                timeout=cfg.timeout_seconds,
                follow_redirects=False,
            ) as response:
                raw = await _read_capped(response)
        except httpx.TimeoutException as error:
            return SendResult(error=f"timeout: {type(error).__name__}")
        except httpx.HTTPError as error:
            return SendResult(error=f"transport error: {type(error).__name__}")
        result = _classify(response.status_code, raw, response.headers.get("retry-after"), message.message_id)
        if not result.ok:
            log.info(
                "webhook send failed: destination=%s status=%s", self.destination(config), result.status_code
            )
        return result

    async def show_typing(
        self, config: Mapping[str, Any], channel_id: str, recipient_id: str, typing: bool
    ) -> None:
        try:
            cfg = load_config(config)
        except ValueError:
            return
        payload = {"type": "typing", "channel_id": channel_id, "to": {"id": recipient_id}, "typing": typing}
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        headers = self._headers(cfg, f"typing_{uuid.uuid4().hex}", body)
        try:
            response = await self._http.post(
                cfg.url,
                content=body,
                headers=headers,
                timeout=min(TYPING_TIMEOUT_SECONDS, cfg.timeout_seconds),
                follow_redirects=False,
            )
        except httpx.HTTPError as error:
            log.debug("typing indicator not sent: %s", type(error).__name__)
            return
        if not response.is_success:
            log.debug("typing indicator refused: HTTP %s", response.status_code)

    # Inbound ----------------------------------------------------------------------------------------

    def verify(self, request: InboundRequest, config: Mapping[str, Any]) -> None:
        values: dict[str, str] = {}
        for header in ("webhook-id", "webhook-timestamp", "webhook-signature"):
            value = request.headers.get(header)
            if not value:
                raise SignatureError(f"missing {header} header")
            values[header] = value
        msg_id, timestamp = values["webhook-id"], values["webhook-timestamp"]
        signature = values["webhook-signature"]
        if len(msg_id) > MAX_MSG_ID_LENGTH or not _VISIBLE_ASCII.fullmatch(msg_id):
            raise SignatureError("malformed webhook-id header")
        if not _TIMESTAMP.fullmatch(timestamp):
            raise SignatureError("malformed webhook-timestamp header")
        skew = int(timestamp) - time.time()
        if skew < -TOLERANCE_SECONDS:
            raise SignatureError("webhook-timestamp is too old")
        if skew > TOLERANCE_SECONDS:
            raise SignatureError("webhook-timestamp is in the future")
        try:
            keys = load_config(config).signing_keys()
        except ValueError:
            raise SignatureError("channel has no valid webhook secret") from None

        tokens = signature.split()
        if len(tokens) > MAX_SIGNATURE_TOKENS:
            raise SignatureError("too many signatures in webhook-signature")
        given: list[bytes] = []
        malformed = False
        for token in tokens:
            version, comma, encoded = token.partition(",")
            if not comma or not version or not encoded:
                malformed = True
                continue
            if version != "v1":
                continue  # another scheme (e.g. v1a): not ours to check
            try:
                digest = base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError):
                malformed = True
                continue
            if len(digest) != hashlib.sha256().digest_size:
                malformed = True
                continue
            given.append(digest)
        signed = f"{msg_id}.{timestamp}.".encode() + request.raw_body
        expected = [hmac.new(key, signed, hashlib.sha256).digest() for key in keys]
        matched = False
        for digest in given:
            for candidate in expected:
                matched |= hmac.compare_digest(digest, candidate)
        if matched:
            return
        if malformed and not given:
            raise SignatureError("malformed webhook-signature header")
        if not given:
            raise SignatureError("no v1 signature in webhook-signature header")
        raise SignatureError("no matching signature")

    def parse(self, request: InboundRequest, config: Mapping[str, Any]) -> list[InboundEvent]:
        try:
            body = json.loads(request.raw_body)
        except (ValueError, RecursionError):
            raise ValueError("body: not valid JSON") from None
        if isinstance(body, list):
            if len(body) > MAX_BATCH:
                raise ValueError(f"body: a batch holds at most {MAX_BATCH} events")
            return [_parse_one(item, f"[{index}].") for index, item in enumerate(body)]
        return [_parse_one(body, "")]


def create_adapter(context: AdapterContext) -> WebhookAdapter:
    """Entry point (`byoc_relay.adapters`)."""
    return WebhookAdapter(context.http)


async def _read_capped(response: httpx.Response) -> bytes:
    """The start of the answer: enough for an id or an error excerpt, never an unbounded download."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= MAX_RESPONSE_BYTES:
            break
    return b"".join(chunks)[:MAX_RESPONSE_BYTES]
