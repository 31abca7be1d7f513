"""`email`: e-mail out through any SMTP server, in through SendGrid's Inbound Parse webhook.

Out: one message per agent reply, over SMTP with STARTTLS (port 587, the default) or implicit TLS (465);
credentials never travel in clear. `Message-ID` is `<{our message id}@{sender's domain}>`, the same on
every retry, so the customer's mail system can tell a resend; a reply names the customer's latest message
in `In-Reply-To` and `References`, and takes its subject ("Re: ..."), so mail clients thread it. Files
go as MIME attachments. SMTP 5xx answers are final, 4xx and lost connections are retried, a refused login
is retried until an admin fixes it.

In: SendGrid posts each e-mail to our webhook as multipart/form-data (`from`, `to`, `subject`, `text`,
`html`, `headers`, `attachments`, `attachment-info`, `attachment1`...). With a signature security policy,
SendGrid signs `timestamp + raw body` with ECDSA (P-256, SHA-256) in `X-Twilio-Email-Event-Webhook-Signature`
and `-Timestamp`; the relay checks it with the policy's public key and refuses calls older than five
minutes. The event id is the e-mail's `Message-ID`, the quoted history under the customer's answer is
cut, and the subject becomes the CXone message title. When neither SPF nor DKIM passed for the sender's
domain (SendGrid's `SPF` and `dkim` fields), the agent is warned that the sender may not be who it says.

Receipts: when the SMTP server is SendGrid's, its signed Event Webhook may post to the same URL (a JSON
array, signed the same way with `events_public_key`). `delivered`, `open`, `bounce` and `dropped` events
find our message by `smtp-id` (our Message-ID) and become delivered, seen and failed.

Channel config: `from_address`, optional `from_name`, `smtp_host`, `smtp_port`, `security`
(`starttls` | `tls`), `smtp_username`, `smtp_password` (secret), optional `tls_ca_file` (a private CA),
`inbound_public_key` (SendGrid's verification key, base64 DER), optional `events_public_key`,
`verify_sender` (default true), `default_subject`, `timeout_seconds`.
"""

from __future__ import annotations

import base64
import binascii
import email.errors
import email.policy
import hashlib
import json
import re
import ssl
import time
from collections.abc import Mapping
from email.message import EmailMessage
from email.parser import BytesHeaderParser, BytesParser
from email.utils import formataddr, formatdate, parseaddr
from html.parser import HTMLParser
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import aiosmtplib
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

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

ADDRESS = re.compile(r"^[^@\s<>()\[\],;:\"]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
SIGNATURE_HEADER = "x-twilio-email-event-webhook-signature"
TIMESTAMP_HEADER = "x-twilio-email-event-webhook-timestamp"
TOLERANCE_SECONDS = 300
MAX_FILES = 50
MAX_ID = 200  # the longest sender, display name or Message-ID the relay keeps as is
QUOTE_INTRO = re.compile(r"^(On .{4,200} wrote:|Le .{4,200} a écrit\s?:|-{2,} ?Original Message ?-{2,})\s*$")


class EmailConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    from_address: str = Field(pattern=ADDRESS.pattern, max_length=254)
    from_name: str | None = Field(None, max_length=200)
    smtp_host: str = Field(min_length=1, max_length=253, pattern=r"^[A-Za-z0-9.-]+$")
    smtp_port: int = Field(587, ge=1, le=65535)
    security: Literal["starttls", "tls"] = "starttls"
    smtp_username: str | None = Field(None, max_length=254)
    smtp_password: SecretStr | None = None
    tls_ca_file: str | None = None
    inbound_public_key: str
    events_public_key: str | None = None
    default_subject: str = Field("Your message", min_length=1, max_length=200)
    verify_sender: bool = True  # warn the agent when neither SPF nor DKIM passed for the sender's domain
    timeout_seconds: float = Field(15.0, gt=0, le=120)

    @field_validator("inbound_public_key", "events_public_key")
    @classmethod
    def _p256_key(cls, value: str | None) -> str | None:
        if value is not None:
            _public_key(value)
        return value


def _public_key(encoded: str) -> ec.EllipticCurvePublicKey:
    try:
        key = load_der_public_key(base64.b64decode(encoded, validate=True))
    except (binascii.Error, ValueError):
        raise ValueError("not a base64 DER public key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ValueError("not an elliptic-curve key")
    return key


def load_config(config: Mapping[str, Any]) -> EmailConfig:
    return validated_config(EmailConfig, config, "email")


def classify(error: Exception) -> SendResult:
    """SMTP's own rule: 5xx is final, 4xx is "try again later"; a refused login waits for an admin."""
    code = getattr(error, "code", None)
    reason = f"SMTP {code}: {getattr(error, 'message', '')}" if code else f"{type(error).__name__}: {error}"
    reason = reason.strip()[:300]
    if isinstance(error, aiosmtplib.SMTPRecipientsRefused) and error.recipients:
        return classify(error.recipients[0])
    if isinstance(error, aiosmtplib.SMTPAuthenticationError):
        return SendResult(error=reason)
    if isinstance(code, int) and 500 <= code < 600:
        return SendResult(error=reason, permanent=True)
    return SendResult(error=reason)


def subject_for(message: OutboundMessage, default: str) -> str:
    title = (message.reply_to_title or "").strip()
    if not title:
        return default
    return title if title.lower().startswith("re:") else f"Re: {title}"


class EmailAdapter:
    name = "email"
    capabilities = Capabilities(
        attachments=True,
        uploads_files=True,
        max_attachment_bytes=20 * 1024 * 1024,
        delivery_receipts=True,  # through SendGrid's Event Webhook, where the SMTP server is SendGrid's
        read_receipts=True,
        cites_latest_message=True,
    )
    config_model: ClassVar[type[BaseModel]] = EmailConfig
    secret_fields: tuple[str, ...] = ("smtp_password",)

    def prepare_config(self, config: Mapping[str, Any]) -> dict[str, Any]:
        cfg = load_config(config)
        if cfg.smtp_username and cfg.smtp_password is None:
            raise ValueError("invalid email config: smtp_password (a username needs its password)")
        return revealed(cfg)

    def recipient_error(self, recipient_id: str) -> str | None:
        return (
            None if ADDRESS.fullmatch(recipient_id) else "an e-mail recipient is an address (ada@example.com)"
        )

    def destination(self, config: Mapping[str, Any]) -> str:
        return f"smtp:{config.get('smtp_host')}:{config.get('smtp_port', 587)}"

    def _smtp(self, cfg: EmailConfig) -> dict[str, Any]:
        context = ssl.create_default_context(cafile=cfg.tls_ca_file)
        return {
            "hostname": cfg.smtp_host,
            "port": cfg.smtp_port,
            "username": cfg.smtp_username,
            "password": cfg.smtp_password.get_secret_value() if cfg.smtp_password else None,
            "use_tls": cfg.security == "tls",
            "start_tls": cfg.security == "starttls",  # required: no credentials or mail in clear
            "tls_context": context,
            "timeout": cfg.timeout_seconds,
        }

    async def check(self, config: Mapping[str, Any]) -> CheckResult:
        try:
            cfg = load_config(config)
            async with aiosmtplib.SMTP(**self._smtp(cfg)):
                pass  # connecting is the check: TLS, then the login, and no mail
        except (ValueError, OSError, aiosmtplib.SMTPException) as error:
            return CheckResult(ok=False, detail=classify(error).error or type(error).__name__)
        return CheckResult(ok=True, detail=f"{cfg.smtp_host} accepted the connection and the login")

    def compose(self, cfg: EmailConfig, message: OutboundMessage) -> EmailMessage:
        domain = cfg.from_address.rsplit("@", 1)[1]
        mail = EmailMessage()
        mail["From"] = formataddr((_one_line(cfg.from_name), cfg.from_address))
        mail["To"] = formataddr((_one_line(message.recipient_name), message.recipient_id))
        mail["Subject"] = _one_line(subject_for(message, cfg.default_subject))
        mail["Date"] = formatdate(usegmt=True)
        mail["Message-ID"] = f"<{message.message_id}@{domain}>"
        if message.reply_to_provider_message_id:
            mail["In-Reply-To"] = mail["References"] = f"<{_one_line(message.reply_to_provider_message_id)}>"
        mail.set_content(message.text or "")
        for file in message.files:
            maintype, _, subtype = file.mime_type.partition("/")
            mail.add_attachment(
                file.content,
                maintype=maintype,
                subtype=subtype or "octet-stream",
                filename=_one_line(file.name),
            )
        return mail

    async def send(self, config: Mapping[str, Any], message: OutboundMessage) -> SendResult:
        try:
            cfg = load_config(config)
        except ValueError as error:
            return SendResult(error=str(error), permanent=True)
        try:
            mail = self.compose(cfg, message)
        except ValueError as error:  # something the agent sent cannot go in an e-mail
            return SendResult(error=f"the e-mail cannot be composed: {error}", permanent=True)
        try:
            await aiosmtplib.send(mail, **self._smtp(cfg))
        except (OSError, aiosmtplib.SMTPException) as error:
            return classify(error)
        return SendResult(provider_message_id=_bare_id(str(mail["Message-ID"])))  # as receipts name it

    async def show_typing(
        self, config: Mapping[str, Any], channel_id: str, recipient_id: str, typing: bool
    ) -> None:
        return None  # e-mail has no typing indicator

    def verify(self, request: InboundRequest, config: Mapping[str, Any]) -> None:
        signature, timestamp = request.headers.get(SIGNATURE_HEADER), request.headers.get(TIMESTAMP_HEADER)
        if not signature or not timestamp:
            raise SignatureError(f"missing {SIGNATURE_HEADER} or {TIMESTAMP_HEADER}")
        if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12) or (
            abs(time.time() - int(timestamp)) > TOLERANCE_SECONDS
        ):
            raise SignatureError("the signature's timestamp is missing or too far from now")
        try:
            events = _is_json(request) and config.get("events_public_key")
            key = _public_key(str(events or config.get("inbound_public_key", "")))
            key.verify(
                base64.b64decode(signature, validate=True),
                timestamp.encode() + request.raw_body,
                ec.ECDSA(hashes.SHA256()),
            )
        except (ValueError, InvalidSignature):
            raise SignatureError("the ECDSA signature does not match this body") from None

    def parse(self, request: InboundRequest, config: Mapping[str, Any]) -> list[InboundEvent]:
        if _is_json(request):
            return _receipts(request.raw_body)
        try:
            return [_email(request, config)]
        except (LookupError, AssertionError, TypeError, AttributeError, email.errors.MessageError) as error:
            # The standard library's parsers give up on hostile input in many ways: each is a bad event.
            raise ValueError(f"not a parsable e-mail ({type(error).__name__})") from None


def _email(request: InboundRequest, config: Mapping[str, Any]) -> InboundMessage:
    fields, files = _form(request)
    sender_name, sender = parseaddr(fields.get("from", ""))
    if len(sender) > MAX_ID or not ADDRESS.fullmatch(sender):
        raise ValueError("from: not an e-mail address")
    headers = BytesHeaderParser().parsebytes(fields.get("headers", "").encode("utf-8", "replace"))
    message_id = _bare_id(str(headers.get("Message-ID") or ""))
    if not message_id or len(message_id) > MAX_ID:  # none, or too long to keep: one derived from it
        message_id = "sha256-" + hashlib.sha256(message_id.encode() or request.raw_body).hexdigest()
    text = without_quoted_history(fields.get("text") or _text_of_html(fields.get("html", "")))
    if config.get("verify_sender", True) and not _sender_verified(fields, sender):
        domain = sender.rsplit("@", 1)[1]
        text = f"[Unverified sender: neither SPF nor DKIM passed for {domain}]\n{text}"
    ours = str(config.get("from_address", "")).lower()
    return InboundMessage(
        sender_id=sender.lower(),
        sender_name=_one_line(sender_name)[:MAX_ID] or None,
        text=text,
        title=_one_line(fields.get("subject"))[:500] or None,
        event_id=message_id,
        attachments=files,
        is_echo=sender.lower() == ours,
    )


def _sender_verified(fields: dict[str, str], sender: str) -> bool:
    """SendGrid's own checks, for the domain in `From`: SPF passed for an envelope sender of that domain,
    or a DKIM signature of that domain passed (`dkim` reads like `{@mail.example : pass}`)."""
    domain = sender.rsplit("@", 1)[1].lower()
    try:
        envelope = json.loads(fields.get("envelope") or "{}")
    except (ValueError, RecursionError):
        envelope = {}
    envelope_from = str(envelope.get("from") or "") if isinstance(envelope, dict) else ""
    spf_domain = envelope_from.rsplit("@", 1)[-1].lower() if "@" in envelope_from else ""
    if fields.get("SPF", "").strip().lower() == "pass" and spf_domain == domain:
        return True
    signatures = re.findall(r"@([A-Za-z0-9.-]+)\s*:\s*(\w+)", fields.get("dkim", ""))
    return any(signed.lower() == domain and result.lower() == "pass" for signed, result in signatures)


def _one_line(value: str | None) -> str:
    """A header value from outside (a customer's subject, a display name) can never start a new header."""
    return " ".join((value or "").split())


def _is_json(request: InboundRequest) -> bool:
    return request.headers.get("content-type", "").startswith("application/json")


RECEIPTS: dict[str, Literal["delivered", "seen", "failed"]] = {
    "delivered": "delivered",
    "open": "seen",
    "bounce": "failed",
    "dropped": "failed",
}


def _receipts(raw_body: bytes) -> list[InboundEvent]:
    """SendGrid Event Webhook events about our mail, as receipts; the others (processed, deferred,
    click...) are not news to CXone."""
    try:
        events = json.loads(raw_body)
    except (ValueError, RecursionError):
        raise ValueError("body: not valid JSON") from None
    if not isinstance(events, list) or not all(isinstance(event, dict) for event in events):
        raise ValueError("body: SendGrid posts a JSON array of events")
    receipts: list[InboundEvent] = []
    for event in events:
        status = RECEIPTS.get(str(event.get("event")))
        smtp_id, event_id = event.get("smtp-id"), event.get("sg_event_id")
        if status is None or not isinstance(smtp_id, str) or not isinstance(event_id, str):
            continue
        reason = event.get("reason") if status == "failed" else None
        receipts.append(
            DeliveryReceipt(
                provider_message_id=_bare_id(smtp_id),
                status=status,
                reason=str(reason)[:500] if reason else None,
                event_id=event_id,
            )
        )
    return receipts


def _form(request: InboundRequest) -> tuple[dict[str, str], tuple[Attachment, ...]]:
    """The multipart/form-data fields, text as text (in the charsets SendGrid names for them) and files as
    attachments with their bytes."""
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        raise ValueError("content-type: SendGrid Inbound Parse posts multipart/form-data")
    envelope = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    form = BytesParser(policy=email.policy.HTTP).parsebytes(envelope + request.raw_body)
    if not form.is_multipart():
        raise ValueError("body: not a multipart form")
    raw: dict[str, bytes] = {}
    files: list[Attachment] = []
    for part in form.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        payload = part.get_payload(decode=True)
        content = payload if isinstance(payload, bytes) else b""
        if part.get_filename() is not None and name.startswith("attachment"):
            if len(files) >= MAX_FILES:
                raise ValueError(f"attachments: more than {MAX_FILES} files")
            files.append(
                Attachment(
                    url=f"email-part:{name}",
                    friendly_name=part.get_filename(),
                    mime_type=valid_mime_type(part.get_content_type()),
                    size=len(content),
                    content=content,
                )
            )
        else:
            raw[name] = content
    charsets = _json_object(raw.get("charsets", b"{}"), "charsets")
    fields = {name: _decoded(value, charsets.get(name)) for name, value in raw.items()}
    info = _json_object(raw.get("attachment-info", b"{}"), "attachment-info")
    return fields, tuple(_with_info(a, info.get(a.url.removeprefix("email-part:"))) for a in files)


def _json_object(value: bytes, name: str) -> dict[str, Any]:
    try:
        parsed = json.loads(value)
    except (ValueError, RecursionError):
        raise ValueError(f"{name}: not JSON") from None
    if not isinstance(parsed, dict):
        raise ValueError(f"{name}: not a JSON object")
    return parsed


def _decoded(value: bytes, charset: Any) -> str:
    try:
        return value.decode(charset if isinstance(charset, str) else "utf-8", errors="replace")
    except LookupError:  # a charset Python does not know
        return value.decode("utf-8", errors="replace")


def _with_info(attachment: Attachment, info: Any) -> Attachment:
    """SendGrid's `attachment-info` gives the sender's own file name and type where the part lacks them."""
    if not isinstance(info, dict):
        return attachment
    name = info.get("filename") or info.get("name")
    name = _one_line(name)[:255] if isinstance(name, str) and name.strip() else attachment.friendly_name
    mime = valid_mime_type(info.get("type")) or attachment.mime_type
    return Attachment(attachment.url, name, mime, attachment.size, attachment.content)


def _bare_id(value: str) -> str:
    """A Message-ID without its angle brackets, as the relay stores provider ids."""
    return value.strip().removeprefix("<").removesuffix(">").strip()


def without_quoted_history(text: str) -> str:
    """The customer's answer without the earlier messages a mail client quotes under it: cut at an
    "On ... wrote:" line, or where only `>` lines (and blank ones) remain. One pass each way."""
    lines = text.replace("\r\n", "\n").split("\n")
    cut = next((i for i, line in enumerate(lines) if QUOTE_INTRO.match(line.strip())), len(lines))
    for index in range(len(lines) - 1, -1, -1):
        if lines[index].startswith(">"):
            cut = min(cut, index)
        elif lines[index].strip():
            break
    return "\n".join(lines[:cut]).strip() or text.strip()


class _TextOfHtml(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._skip += 1
        elif tag in ("br", "p", "div", "li", "tr"):
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style") and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def _text_of_html(html: str) -> str:
    """An HTML-only e-mail's words, for the agent (CXone is given plain text)."""
    parser = _TextOfHtml()
    parser.feed(html)
    return re.sub(r"\n\s*\n+", "\n\n", "".join(parser.parts)).strip()


def create_adapter(context: AdapterContext) -> EmailAdapter:
    """Entry point (`byoc_relay.adapters`)."""
    return EmailAdapter()
