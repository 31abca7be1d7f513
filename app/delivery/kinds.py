"""The kinds of side effect the outbox carries, and how each is enqueued (destination, order, idempotency)."""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession

from app.delivery.queue import enqueue
from app.models import Channel, Delivery, Message, Thread
from app.models.base import utcnow

SEND_TO_PROVIDER = "provider.send"
TYPING_TO_PROVIDER = "provider.typing"
CREATE_IN_CXONE = "cxone.create_message"
STATUS_TO_CXONE = "cxone.message_status"

CxoneStatus = Literal["delivered", "seen", "failed"]


def cxone_destination(integration_id: str) -> str:
    return f"cxone:{integration_id}"


def _provider_lane(thread: Thread) -> str:
    """Messages to one conversation leave in order; CXone-bound effects have a lane of their own."""
    return f"provider:{thread.id}"


def _cxone_lane(thread: Thread) -> str:
    return f"cxone:{thread.id}"


async def enqueue_provider_send(
    session: AsyncSession, *, message: Message, thread: Thread, destination: str
) -> Delivery:
    return await enqueue(
        session,
        kind=SEND_TO_PROVIDER,
        channel_id=message.channel_id,
        message_id=message.id,
        ordering_key=_provider_lane(thread),
        destination=destination,
        idempotency_key=message.id,
    )


async def enqueue_provider_typing(
    session: AsyncSession,
    *,
    channel: Channel,
    thread: Thread,
    destination: str,
    typing: bool,
    ttl_seconds: float,
) -> Delivery:
    """Typing is worth nothing late: it expires instead of being retried for long."""
    now = utcnow()
    return await enqueue(
        session,
        kind=TYPING_TO_PROVIDER,
        channel_id=channel.id,
        ordering_key=_provider_lane(thread),
        destination=destination,
        idempotency_key=f"typing:{thread.id}:{now.timestamp()}",
        payload={"recipient_id": thread.end_user_id, "typing": typing},
        expires_at=now + timedelta(seconds=ttl_seconds),
    )


async def enqueue_cxone_create(
    session: AsyncSession, *, message: Message, thread: Thread, integration_id: str
) -> Delivery:
    return await enqueue(
        session,
        kind=CREATE_IN_CXONE,
        channel_id=message.channel_id,
        message_id=message.id,
        ordering_key=_cxone_lane(thread),
        destination=cxone_destination(integration_id),
        idempotency_key=message.id,
    )


async def enqueue_cxone_status(
    session: AsyncSession,
    *,
    message: Message,
    integration_id: str,
    status: CxoneStatus,
    reason: str | None = None,
) -> Delivery:
    now = utcnow()
    return await enqueue(
        session,
        kind=STATUS_TO_CXONE,
        channel_id=message.channel_id,
        message_id=message.id,
        ordering_key=f"cxone:{message.thread_id}",
        destination=cxone_destination(integration_id),
        idempotency_key=f"{message.id}:status:{status}",
        payload={"status": status, "reason": reason, "updated_at": now.isoformat()},
    )
