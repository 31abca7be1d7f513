"""The interface every channel adapter implements. Kept small; the adapter framework grows from it."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol, TypeVar, runtime_checkable

import httpx
from pydantic import BaseModel, SecretStr, ValidationError


@dataclass(frozen=True)
class Attachment:
    """A file on a message. Inbound, `url` is where the provider keeps it (or the adapter's own reference,
    which its `media_request` turns into a fetch), `size` is the provider's declared size, and `content`
    holds the bytes when they came inside the webhook itself (e-mail). Outbound, `url` is a link the relay
    hosts, for adapters that pass files by link."""

    url: str
    friendly_name: str | None = None
    mime_type: str | None = None
    size: int | None = None
    content: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True)
class OutboundFile:
    """A file fetched by the relay from CXone, for an adapter that uploads files (`uploads_files`)."""

    name: str
    mime_type: str
    content: bytes = field(repr=False)


@dataclass(frozen=True)
class OutboundMessage:
    """An agent or bot message on its way to the customer. `message_id` doubles as the idempotency key:
    it is the same on every retry, so a provider that dedupes on it never shows a message twice."""

    message_id: str
    channel_id: str
    thread_id: str
    recipient_id: str
    recipient_name: str | None
    text: str
    attachments: tuple[Attachment, ...] = ()
    """Links to the agent's files, hosted by the relay, for adapters that do not upload files."""
    files: tuple[OutboundFile, ...] = ()
    """The agent's files themselves, for adapters that upload them (`Capabilities.uploads_files`)."""
    reply_to_provider_message_id: str | None = None
    reply_to_title: str | None = None
    """The title (e-mail subject) of the customer message this answers, where it had one."""


@dataclass(frozen=True)
class InboundMessage:
    """A customer message as the provider reported it, before we store it.

    `is_echo`: the provider says this is a copy of a message sent from our side (some report every
    message on the account, ours included). The relay also drops, as an echo, any message whose
    `event_id` is the id of one of our own outbound messages, ours or the provider's."""

    sender_id: str
    text: str
    sender_name: str | None = None
    event_id: str | None = None
    attachments: tuple[Attachment, ...] = ()
    is_echo: bool = False
    title: str | None = None  # an e-mail's subject, shown to the agent as the message title


@dataclass(frozen=True)
class DeliveryReceipt:
    """The provider's word on a message we sent: it arrived, was read, or failed."""

    provider_message_id: str
    status: Literal["delivered", "seen", "failed"]
    reason: str | None = None
    event_id: str | None = None


@dataclass(frozen=True)
class TypingEvent:
    sender_id: str
    typing: bool


InboundEvent = InboundMessage | DeliveryReceipt | TypingEvent


@dataclass(frozen=True)
class InboundRequest:
    """A provider's webhook call, untouched: signatures are checked on these exact bytes."""

    raw_body: bytes
    headers: Mapping[str, str]  # names lower-cased
    url: str  # the public URL the provider called (what it signed, for schemes that sign the URL)


@dataclass(frozen=True)
class SendResult:
    """`provider_message_id` on success; otherwise `error` and how to treat it.

    `permanent` means retrying cannot help (bad recipient, opted out, 4xx). `retry_after` is the provider's
    own hint in seconds. `disable_destination` is set when the provider says the endpoint is gone (410).
    """

    provider_message_id: str | None = None
    error: str | None = None
    permanent: bool = False
    retry_after: float | None = None
    status_code: int | None = None
    disable_destination: bool = False
    segments: int | None = None  # SMS parts the provider bills for this message, where it counts them

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class Capabilities:
    """What a channel can carry, so the relay (and CXone's admins) know what to expect of it."""

    text: bool = True
    attachments: bool = False  # files reach the customer as files; False means as links in the message
    uploads_files: bool = False  # the adapter is given the bytes (`OutboundMessage.files`), not links
    max_attachment_bytes: int | None = None  # the provider's limit for one file we send
    rich_content: bool = False  # buttons, cards...; a text fallback is always sent where it is not
    delivery_receipts: bool = False
    read_receipts: bool = False
    typing: bool = False
    max_text_length: int | None = None
    template_outside_session: bool = False  # e.g. WhatsApp's 24-hour window
    cites_latest_message: bool = False  # a reply names the customer's latest message when the agent did
    # not pick one, so that the customer's client threads it (e-mail's In-Reply-To)


@dataclass(frozen=True)
class CheckResult:
    """Whether a channel's configuration works against the real provider, and what was found."""

    ok: bool
    detail: str


ConfigT = TypeVar("ConfigT", bound=BaseModel)


def validated_config(model: type[ConfigT], config: Mapping[str, Any], adapter: str) -> ConfigT:
    """A channel config checked against its model; ValueError names the bad fields, never their values."""
    try:
        return model.model_validate(dict(config))
    except ValidationError as error:
        fields = ", ".join(".".join(str(p) for p in e["loc"]) or "config" for e in error.errors())
        raise ValueError(f"invalid {adapter} config: {fields}") from None


MIME_TYPE = re.compile(r"^[\w.+-]{1,100}/[\w.+-]{1,150}$")


def valid_mime_type(value: object) -> str | None:
    """A file type from outside, if it looks like one and fits where the relay keeps it; else None."""
    return value.lower() if isinstance(value, str) and MIME_TYPE.fullmatch(value) else None


def revealed(config: BaseModel) -> dict[str, Any]:
    """A validated config as the plain dict the relay stores, secrets as plain strings (it seals them)."""
    values = config.model_dump(exclude_none=True)
    for name, value in vars(config).items():
        if isinstance(value, SecretStr):
            values[name] = value.get_secret_value()
    return values


class SignatureError(Exception):
    """The inbound request is not provably from the provider: answered 401, nothing is written."""


class ChannelAdapter(Protocol):
    name: str
    capabilities: Capabilities
    config_model: ClassVar[type[BaseModel]]
    """The channel config's schema. Secret fields are `SecretStr`, which the schema marks write-only."""
    secret_fields: tuple[str, ...]
    """Config keys that hold secrets: stored encrypted, shown once, never returned by a GET."""

    def prepare_config(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """A new channel's config, validated, with defaults filled in and secrets generated.
        Raise ValueError saying what is wrong."""
        ...

    async def check(self, config: Mapping[str, Any]) -> CheckResult:
        """Whether the credentials and address in `config` work, without messaging any customer."""
        ...

    def recipient_error(self, recipient_id: str) -> str | None:
        """Why this recipient id cannot be reached on this kind of channel, or None when it can."""
        ...

    def destination(self, config: Mapping[str, Any]) -> str:
        """What rate limits and circuit breakers are keyed by (a provider account, an endpoint URL)."""
        ...

    async def send(self, config: Mapping[str, Any], message: OutboundMessage) -> SendResult:
        """Hand one message to the provider. Must not raise for provider or network errors: classify them."""
        ...

    async def show_typing(
        self, config: Mapping[str, Any], channel_id: str, recipient_id: str, typing: bool
    ) -> None:
        """Show or hide the agent's typing indicator to the customer, where the provider can."""
        ...

    def verify(self, request: InboundRequest, config: Mapping[str, Any]) -> None:
        """Raise SignatureError unless the request is signed by the provider. Runs before any write."""
        ...

    def parse(self, request: InboundRequest, config: Mapping[str, Any]) -> list[InboundEvent]:
        """The events in a verified request. Raise ValueError for a body that cannot be understood."""
        ...


@runtime_checkable
class FetchesMedia(Protocol):
    """Optional: an adapter whose inbound files need credentials or a look-up to fetch (a media id, a
    file id). Without it the relay fetches `Attachment.url` with a plain GET."""

    async def media_request(self, config: Mapping[str, Any], attachment: Attachment) -> httpx.Request:
        """The request that downloads this file. Raise `MediaUnavailable` when the provider refuses it."""
        ...


class MediaUnavailable(Exception):
    """The provider cannot give us this file. `permanent`: it never will (gone, refused)."""

    def __init__(self, reason: str, *, permanent: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent
