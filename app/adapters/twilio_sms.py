"""`twilio_sms`: SMS through Twilio's Programmable Messaging API.

Out: `POST {api_base}/2010-04-01/Accounts/{AccountSid}/Messages.json`, HTTP Basic (Account SID, Auth
Token), a form body with `To`, `From` (or `MessagingServiceSid`), `Body`, one `MediaUrl` per attachment
and `StatusCallback` (our webhook, so Twilio's status reports come back as receipts). Twilio answers 201
with the message `sid`, or an error body `{"code": 21211, "message": ..., "status": 400}`.

In: Twilio POSTs form-encoded webhooks to `/webhooks/twilio_sms/{channelId}`, both for incoming messages
(`MessageSid`, `From`, `Body`, `NumMedia`, `MediaUrl0`...) and for status callbacks (`MessageSid`,
`MessageStatus`, `ErrorCode`). Each carries `X-Twilio-Signature`: base64 HMAC-SHA1, keyed with the Auth
Token, over the full URL Twilio called followed by every POST parameter, sorted by name, as name+value.

Channel config: `account_sid`, `auth_token` (secret), `from_number` (E.164) or `messaging_service_sid`,
optional `api_base` (default https://api.twilio.com), optional `timeout_seconds`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Literal
from urllib.parse import parse_qsl

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

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
    revealed,
    valid_mime_type,
    validated_config,
)

if TYPE_CHECKING:
    from app.adapters.registry import AdapterContext

log = logging.getLogger("byoc.adapters.twilio_sms")

E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
MAX_BODY_CHARS = 1600  # Twilio refuses longer bodies (error 21617)

# Twilio error codes that no retry can fix, and those that mean "slow down".
PERMANENT_CODES = {
    21211: "invalid 'To' number",
    21408: "no permission to send to this region",
    21610: "the recipient unsubscribed (replied STOP)",
    21612: "this 'To' cannot be reached from this 'From'",
    21614: "'To' is not a mobile number",
    21617: "the body is too long",
    30004: "the message was blocked",
    30005: "unknown destination handset",
    30006: "landline or unreachable carrier",
}
THROTTLING_CODES = {20429, 63017, 14107}
STATUSES: dict[str, Literal["delivered", "seen", "failed"]] = {
    "delivered": "delivered",
    "read": "seen",
    "undelivered": "failed",
    "failed": "failed",
}

# GSM 03.38: the basic set counts one septet, the extension table two.
GSM7_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿"
    "abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENDED = set("^{}\\[~]|€\f")


def sms_segments(text: str) -> tuple[Literal["GSM-7", "UCS-2"], int]:
    """The encoding Twilio will use and the number of SMS parts it will bill (0 for an empty text).

    GSM-7: 160 septets in one part, 153 per part when split. UCS-2 (any other character): 70 UTF-16 code
    units in one part, 67 per part when split."""
    encoding: Literal["GSM-7", "UCS-2"]
    if all(c in GSM7_BASIC or c in GSM7_EXTENDED for c in text):
        units = sum(2 if c in GSM7_EXTENDED else 1 for c in text)
        single, split, encoding = 160, 153, "GSM-7"
    else:
        units = len(text.encode("utf-16-le", "surrogatepass")) // 2
        single, split, encoding = 70, 67, "UCS-2"
    if units <= single:
        return encoding, 1 if units else 0
    return encoding, -(-units // split)


def signature(auth_token: str, url: str, params: list[tuple[str, str]]) -> str:
    """X-Twilio-Signature for a form POST to `url`."""
    payload = url + "".join(name + value for name, value in sorted(params))
    digest = hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


class TwilioConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    account_sid: str = Field(pattern=r"^AC[0-9a-fA-F]{32}$")
    auth_token: SecretStr
    from_number: str | None = Field(None, pattern=E164.pattern)
    messaging_service_sid: str | None = Field(None, pattern=r"^MG[0-9a-fA-F]{32}$")
    api_base: str = Field("https://api.twilio.com", pattern=r"^https?://[^/]+$")
    timeout_seconds: float = Field(10.0, gt=0, le=60)

    @model_validator(mode="after")
    def _one_sender(self) -> TwilioConfig:
        if (self.from_number is None) == (self.messaging_service_sid is None):
            raise ValueError("give exactly one of from_number and messaging_service_sid")
        return self


def load_config(config: Mapping[str, Any]) -> TwilioConfig:
    return validated_config(TwilioConfig, config, "twilio_sms")


def classify(status: int, body: Any, retry_after: str | None) -> SendResult:
    """A Twilio error answer as a SendResult: permanent, retryable or throttled."""
    code = body.get("code") if isinstance(body, dict) else None
    message = body.get("message") if isinstance(body, dict) else None
    reason = f"Twilio {code}: {PERMANENT_CODES.get(code, message) or message}" if code else f"HTTP {status}"
    delay = float(retry_after) if retry_after and retry_after.isdigit() else None
    if code in THROTTLING_CODES or status == 429 or status >= 500 or status == 408:
        return SendResult(error=reason, status_code=status, retry_after=delay)
    if status in (401, 403):  # credentials an admin can fix: keep the message and try again later
        return SendResult(error=reason, status_code=status)
    return SendResult(error=reason, status_code=status, permanent=True, disable_destination=status == 410)


class TwilioSmsAdapter:
    name = "twilio_sms"
    capabilities = Capabilities(
        attachments=True, max_attachment_bytes=5 * 1024 * 1024, delivery_receipts=True, max_text_length=1600
    )
    config_model: ClassVar[type[BaseModel]] = TwilioConfig
    secret_fields: tuple[str, ...] = ("auth_token",)

    def __init__(self, http: httpx.AsyncClient, public_url: str) -> None:
        self._http = http
        self._public_url = public_url.rstrip("/")

    def prepare_config(self, config: Mapping[str, Any]) -> dict[str, Any]:
        return revealed(load_config(config))

    def recipient_error(self, recipient_id: str) -> str | None:
        return (
            None
            if E164.fullmatch(recipient_id)
            else "an SMS recipient is a phone number in E.164 (+15551234567)"
        )

    def destination(self, config: Mapping[str, Any]) -> str:
        return f"twilio:{config.get('account_sid')}"

    def _url(self, cfg: TwilioConfig, path: str) -> str:
        return f"{cfg.api_base}/2010-04-01/Accounts/{cfg.account_sid}{path}"

    def _auth(self, cfg: TwilioConfig) -> httpx.BasicAuth:
        return httpx.BasicAuth(cfg.account_sid, cfg.auth_token.get_secret_value())

    async def media_request(self, config: Mapping[str, Any], attachment: Attachment) -> httpx.Request:
        """Twilio serves MMS media under the account, with Basic auth when the account enforces it; the
        credentials go to Twilio's own host only (the download then redirects to its CDN without them)."""
        cfg = load_config(config)
        headers = {}
        if httpx.URL(attachment.url).host == httpx.URL(cfg.api_base).host:
            pair = f"{cfg.account_sid}:{cfg.auth_token.get_secret_value()}".encode()
            headers["authorization"] = "Basic " + base64.b64encode(pair).decode()
        return self._http.build_request("GET", attachment.url, headers=headers)

    async def check(self, config: Mapping[str, Any]) -> CheckResult:
        try:
            cfg = load_config(config)
            answer = await self._http.get(
                self._url(cfg, ".json"), auth=self._auth(cfg), timeout=cfg.timeout_seconds
            )
        except ValueError as error:
            return CheckResult(ok=False, detail=str(error))
        except httpx.HTTPError as error:
            return CheckResult(ok=False, detail=f"cannot reach Twilio: {type(error).__name__}")
        if answer.is_success:
            return CheckResult(ok=True, detail="Twilio accepted the Account SID and Auth Token")
        return CheckResult(ok=False, detail=f"Twilio answered HTTP {answer.status_code}")

    async def send(self, config: Mapping[str, Any], message: OutboundMessage) -> SendResult:
        try:
            cfg = load_config(config)
        except ValueError as error:
            return SendResult(error=str(error), permanent=True)
        if len(message.text) > MAX_BODY_CHARS:
            return SendResult(error=f"SMS text is longer than {MAX_BODY_CHARS} characters", permanent=True)
        form: dict[str, str | list[str]] = {"To": message.recipient_id, "Body": message.text}
        if cfg.from_number:
            form["From"] = cfg.from_number
        else:
            form["MessagingServiceSid"] = str(cfg.messaging_service_sid)
        if message.attachments:
            form["MediaUrl"] = [attachment.url for attachment in message.attachments]
        form["StatusCallback"] = f"{self._public_url}/webhooks/{self.name}/{message.channel_id}"
        encoding, parts = sms_segments(message.text)
        try:
            answer = await self._http.post(
                self._url(cfg, "/Messages.json"),
                data=form,
                auth=self._auth(cfg),
                timeout=cfg.timeout_seconds,
                follow_redirects=False,
            )
        except httpx.TimeoutException as error:
            return SendResult(error=f"timeout: {type(error).__name__}")
        except httpx.HTTPError as error:
            return SendResult(error=f"transport error: {type(error).__name__}")
        try:
            body: Any = answer.json()
        except ValueError:
            body = None
        if answer.is_success and isinstance(body, dict) and isinstance(body.get("sid"), str):
            log.debug("twilio accepted a %s message in %s part(s)", encoding, parts)
            return SendResult(provider_message_id=body["sid"], status_code=answer.status_code, segments=parts)
        return classify(answer.status_code, body, answer.headers.get("retry-after"))

    async def show_typing(
        self, config: Mapping[str, Any], channel_id: str, recipient_id: str, typing: bool
    ) -> None:
        return None  # SMS has no typing indicator

    def verify(self, request: InboundRequest, config: Mapping[str, Any]) -> None:
        given = request.headers.get("x-twilio-signature")
        if not given:
            raise SignatureError("missing X-Twilio-Signature header")
        try:
            token = load_config(config).auth_token.get_secret_value()
            params = parse_qsl(request.raw_body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
        except (ValueError, UnicodeDecodeError):
            raise SignatureError("the request cannot be checked against the channel's Auth Token") from None
        expected = signature(token, request.url, params)
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise SignatureError("X-Twilio-Signature does not match")

    def parse(self, request: InboundRequest, config: Mapping[str, Any]) -> list[InboundEvent]:
        try:
            params = dict(parse_qsl(request.raw_body.decode("utf-8"), keep_blank_values=True))
        except (ValueError, UnicodeDecodeError):
            raise ValueError("body: not a form-encoded Twilio webhook") from None
        sid = params.get("MessageSid") or params.get("SmsSid")
        if not sid:
            raise ValueError("MessageSid: missing")
        status = params.get("MessageStatus") or params.get("SmsStatus") or "received"
        if status in STATUSES:
            error_code = params.get("ErrorCode")
            return [
                DeliveryReceipt(
                    provider_message_id=sid,
                    status=STATUSES[status],
                    reason=f"Twilio error {error_code}" if error_code else None,
                    event_id=f"{sid}:{status}",
                )
            ]
        if status != "received":
            return []  # queued, sending, sent: nothing CXone needs to hear
        sender = params.get("From", "")
        if not sender:
            raise ValueError("From: missing")
        try:
            media_count = int(params.get("NumMedia") or 0)
        except ValueError:
            raise ValueError("NumMedia: not a number") from None
        media = tuple(
            Attachment(
                url=params[f"MediaUrl{i}"], mime_type=valid_mime_type(params.get(f"MediaContentType{i}"))
            )
            for i in range(min(media_count, 10))
            if params.get(f"MediaUrl{i}")
        )
        cfg_from = config.get("from_number")
        return [
            InboundMessage(
                sender_id=sender,
                text=params.get("Body", ""),
                event_id=sid,
                attachments=media,
                is_echo=bool(cfg_from) and sender == cfg_from,
            )
        ]


def create_adapter(context: AdapterContext) -> TwilioSmsAdapter:
    """Entry point (`byoc_relay.adapters`)."""
    return TwilioSmsAdapter(context.http, context.public_url)
