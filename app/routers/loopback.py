"""The loopback fake customer: read what it received, and make it write (demo and tests)."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter

from app.adapters.base import Attachment, DeliveryReceipt, InboundMessage
from app.adapters.loopback import LoopbackAdapter
from app.deps import Operator, RuntimeDep, Viewer
from app.errors import ApiError
from app.runtime import Runtime
from app.schemas.loopback import (
    CustomerMessageAccepted,
    CustomerMessageIn,
    CustomerReceiptAccepted,
    CustomerReceiptIn,
    LoopbackInbox,
    ReceivedMessageOut,
)
from app.services.channels import get_channel

router = APIRouter(prefix="/api/v1/loopback", tags=["loopback fake customer"])


async def _loopback(runtime: Runtime, channel_id: str) -> LoopbackAdapter:
    async with runtime.reads() as session:
        channel = await get_channel(session, channel_id)
    adapter = runtime.registry.get(channel.adapter)
    if not isinstance(adapter, LoopbackAdapter):
        raise ApiError(
            409, "not_a_loopback_channel", f"Channel {channel_id!r} uses the {channel.adapter!r} adapter."
        )
    return adapter


@router.post("/{channel_id}/customer-messages", status_code=202, response_model=CustomerMessageAccepted)
async def customer_writes(
    channel_id: str, data: CustomerMessageIn, runtime: RuntimeDep, _: Operator
) -> CustomerMessageAccepted:
    """The fake customer sends a message, as a provider's webhook would deliver it."""
    await _loopback(runtime, channel_id)
    if not data.text.strip() and not data.attachments:
        raise ApiError(422, "empty_message", "text: a message needs text or at least one attachment.")
    accepted = await runtime.receive_inbound(
        channel_id,
        InboundMessage(
            sender_id=data.sender,
            sender_name=data.name,
            text=data.text,
            event_id=data.event_id,
            attachments=tuple(Attachment(url=a.url, friendly_name=a.friendly_name) for a in data.attachments),
        ),
    )
    return CustomerMessageAccepted(
        message_id=accepted.message.id,
        thread_id=accepted.thread.external_id,
        status=await runtime.message_status(accepted.message.id) or accepted.message.status,
        duplicate=accepted.duplicate,
    )


@router.get("/{channel_id}/inbox", response_model=LoopbackInbox)
async def inbox(channel_id: str, runtime: RuntimeDep, _: Viewer) -> LoopbackInbox:
    """Everything the fake customer received on this channel, oldest first."""
    adapter = await _loopback(runtime, channel_id)
    return LoopbackInbox(
        channel_id=channel_id,
        messages=[ReceivedMessageOut(**asdict(m)) for m in adapter.inbox(channel_id)],
    )


@router.post("/{channel_id}/receipts", status_code=202, response_model=CustomerReceiptAccepted)
async def customer_reports(
    channel_id: str, data: CustomerReceiptIn, runtime: RuntimeDep, _: Operator
) -> CustomerReceiptAccepted:
    """The fake customer's phone reports a message delivered, read or failed, as a provider's status
    webhook would: CXone's agent sees the message's status change."""
    adapter = await _loopback(runtime, channel_id)
    received = adapter.received(channel_id, data.message_id)
    if received is None:
        raise ApiError(404, "message_not_received", f"The customer received no message {data.message_id!r}.")
    pid = received.provider_message_id
    receipt = DeliveryReceipt(pid, data.status, data.reason, event_id=f"{pid}:{data.status}")
    channel, _integration = await runtime.config.live_channel(channel_id)
    await runtime.receive_events(channel, [receipt], wait=runtime.settings.inline_delivery_budget_seconds)
    return CustomerReceiptAccepted(
        message_id=received.message_id, provider_message_id=pid, status=data.status
    )
