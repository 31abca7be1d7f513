"""The interface every channel adapter implements. Kept small; the adapter framework grows from it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class Attachment:
    url: str
    friendly_name: str | None = None


@dataclass(frozen=True)
class OutboundMessage:
    """An agent or bot message on its way to the customer."""

    message_id: str
    channel_id: str
    thread_id: str
    recipient_id: str
    recipient_name: str | None
    text: str
    attachments: tuple[Attachment, ...] = ()
    reply_to_provider_message_id: str | None = None


@dataclass(frozen=True)
class InboundMessage:
    """A customer message as the provider reported it, before we store it."""

    sender_id: str
    text: str
    sender_name: str | None = None
    event_id: str | None = None
    attachments: tuple[Attachment, ...] = ()


@dataclass(frozen=True)
class SendResult:
    """`provider_message_id` on success; otherwise `error` and whether retrying can help."""

    provider_message_id: str | None = None
    error: str | None = None
    permanent: bool = False
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None


class ChannelAdapter(Protocol):
    name: str

    def recipient_error(self, recipient_id: str) -> str | None:
        """Why this recipient id cannot be reached on this kind of channel, or None when it can."""
        ...

    async def send(self, config: dict[str, Any], message: OutboundMessage) -> SendResult:
        """Hand one message to the provider. Must not raise for provider errors: classify them."""
        ...

    async def show_typing(
        self, config: dict[str, Any], channel_id: str, recipient_id: str, typing: bool
    ) -> None:
        """Show or hide the agent's typing indicator to the customer, where the provider can."""
        ...
