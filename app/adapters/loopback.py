"""`loopback`: an in-process fake customer, so the whole relay loop runs with nothing external.

It records every message it receives and answers like a customer: by script (the channel's
`auto_reply` template, e.g. "Thanks, you said: {text}") or when asked through the API, which can also
make its phone report a message delivered or read.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections import defaultdict
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from app.adapters.base import (
    Capabilities,
    CheckResult,
    InboundEvent,
    InboundMessage,
    InboundRequest,
    OutboundMessage,
    SendResult,
)

if TYPE_CHECKING:
    from app.adapters.registry import AdapterContext

RECIPIENT_PATTERN = re.compile(r"^[A-Za-z0-9+@._:\-]{1,200}$")
UNREACHABLE_PREFIX = "unreachable"

CustomerWrites = Callable[[str, InboundMessage], Coroutine[Any, Any, None]]


@dataclass(frozen=True)
class ReceivedMessage:
    """What the fake customer saw arrive on its phone."""

    provider_message_id: str
    message_id: str
    thread_id: str
    recipient_id: str
    text: str
    attachments: list[str]
    reply_to: str | None
    received_at: datetime


class LoopbackConfig(BaseModel):
    """A loopback channel's config: how the fake customer answers, if at all."""

    model_config = ConfigDict(extra="forbid")

    auto_reply: str | None = Field(None, description="A scripted answer, e.g. 'Got it: {text}'.")


class LoopbackAdapter:
    name = "loopback"
    capabilities = Capabilities(attachments=True, typing=True)
    config_model: ClassVar[type[BaseModel]] = LoopbackConfig
    secret_fields: tuple[str, ...] = ()

    def __init__(self) -> None:
        self._inbox: dict[str, list[ReceivedMessage]] = defaultdict(list)
        self._answer: CustomerWrites | None = None
        self._pending_answers: set[asyncio.Task[None]] = set()
        self._agent_typing: dict[tuple[str, str], bool] = {}

    def on_customer_message(self, callback: CustomerWrites) -> None:
        """Where scripted answers go: the app wires this to the inbound use case."""
        self._answer = callback

    def prepare_config(self, config: Mapping[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(config) - {"auto_reply"})
        if unknown:
            raise ValueError(
                f"unknown key(s) {', '.join(unknown)}; the loopback channel takes only auto_reply"
            )
        if "auto_reply" in config and not isinstance(config["auto_reply"], str):
            raise ValueError("auto_reply must be a text such as 'Got it: {text}'")
        return dict(config)

    async def check(self, config: Mapping[str, Any]) -> CheckResult:
        return CheckResult(ok=True, detail="the loopback customer lives in this process")

    def destination(self, config: Mapping[str, Any]) -> str:
        return "loopback"

    def verify(self, request: InboundRequest, config: Mapping[str, Any]) -> None:
        """The fake customer writes through the admin API, which is authenticated already."""

    def parse(self, request: InboundRequest, config: Mapping[str, Any]) -> list[InboundEvent]:
        raise ValueError("the loopback customer writes through /api/v1/loopback, not a webhook")

    def recipient_error(self, recipient_id: str) -> str | None:
        if not RECIPIENT_PATTERN.fullmatch(recipient_id):
            return "Invalid recipient format: use 1-200 letters, digits or + @ . _ : -"
        return None

    async def send(self, config: Mapping[str, Any], message: OutboundMessage) -> SendResult:
        if message.recipient_id.startswith(UNREACHABLE_PREFIX):
            return SendResult(error="loopback customer is unreachable", permanent=True)
        received = ReceivedMessage(
            provider_message_id=f"lb-{uuid.uuid4().hex[:16]}",
            message_id=message.message_id,
            thread_id=message.thread_id,
            recipient_id=message.recipient_id,
            text=message.text,
            attachments=[attachment.url for attachment in message.attachments],
            reply_to=message.reply_to_provider_message_id,
            received_at=datetime.now(UTC),
        )
        self._inbox[message.channel_id].append(received)
        template = config.get("auto_reply")
        if isinstance(template, str) and template and self._answer is not None:
            answer = InboundMessage(
                sender_id=message.recipient_id,
                sender_name=message.recipient_name,
                text=template.replace("{text}", message.text),
                event_id=f"auto-{received.provider_message_id}",
            )
            task = asyncio.create_task(self._answer(message.channel_id, answer))
            self._pending_answers.add(task)
            task.add_done_callback(self._pending_answers.discard)
        return SendResult(provider_message_id=received.provider_message_id)

    async def show_typing(
        self, config: Mapping[str, Any], channel_id: str, recipient_id: str, typing: bool
    ) -> None:
        self._agent_typing[(channel_id, recipient_id)] = typing

    def agent_is_typing(self, channel_id: str, recipient_id: str) -> bool:
        return self._agent_typing.get((channel_id, recipient_id), False)

    def inbox(self, channel_id: str) -> list[ReceivedMessage]:
        return list(self._inbox.get(channel_id, []))

    def received(self, channel_id: str, message_id: str) -> ReceivedMessage | None:
        """A message the customer received, by our id or the loopback's own."""
        for message in self._inbox.get(channel_id, []):
            if message_id in (message.message_id, message.provider_message_id):
                return message
        return None

    async def drain(self) -> None:
        """Wait for scripted answers still on their way (tests, shutdown)."""
        while self._pending_answers:
            await asyncio.gather(*list(self._pending_answers), return_exceptions=True)


def create_adapter(context: AdapterContext) -> LoopbackAdapter:
    """Entry point (`byoc_relay.adapters`)."""
    return LoopbackAdapter()
