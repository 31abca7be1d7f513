"""The kinds of side effect the outbox carries, and how each is addressed (destination, lane, idempotency)."""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from app.delivery.queue import NewDelivery
from app.models import Message, Thread
from app.models.base import utcnow

SEND_TO_PROVIDER = "provider.send"
TYPING_TO_PROVIDER = "provider.typing"
CREATE_IN_CXONE = "cxone.create_message"
STATUS_TO_CXONE = "cxone.message_status"

CxoneStatus = Literal["delivered", "seen", "failed"]


def cxone_destination(integration_id: str) -> str:
    return f"cxone:{integration_id}"


def _provider_lane(thread_id: str) -> str:
    """Messages to one conversation leave in order; CXone-bound effects have a lane of their own."""
    return f"provider:{thread_id}"


def _cxone_lane(thread_id: str) -> str:
    return f"cxone:{thread_id}"


def provider_send(message: Message, destination: str) -> NewDelivery:
    return NewDelivery(
        kind=SEND_TO_PROVIDER,
        channel_id=message.channel_id,
        message_id=message.id,
        ordering_key=_provider_lane(message.thread_id),
        destination=destination,
        idempotency_key=message.id,
    )


def provider_typing(thread: Thread, destination: str, *, typing: bool, ttl_seconds: float) -> NewDelivery:
    """Typing is worth nothing late: it expires instead of being retried for long."""
    now = utcnow()
    return NewDelivery(
        kind=TYPING_TO_PROVIDER,
        channel_id=thread.channel_id,
        ordering_key=_provider_lane(thread.id),
        destination=destination,
        idempotency_key=f"typing:{thread.id}:{now.timestamp()}",
        payload={"recipient_id": thread.end_user_id, "typing": typing},
        expires_at=now + timedelta(seconds=ttl_seconds),
    )


def cxone_create(message: Message, integration_id: str) -> NewDelivery:
    return NewDelivery(
        kind=CREATE_IN_CXONE,
        channel_id=message.channel_id,
        message_id=message.id,
        ordering_key=_cxone_lane(message.thread_id),
        destination=cxone_destination(integration_id),
        idempotency_key=message.id,
    )


def cxone_status(
    message: Message, integration_id: str, status: CxoneStatus, reason: str | None = None
) -> NewDelivery:
    return NewDelivery(
        kind=STATUS_TO_CXONE,
        channel_id=message.channel_id,
        message_id=message.id,
        ordering_key=_cxone_lane(message.thread_id),
        destination=cxone_destination(integration_id),
        idempotency_key=f"{message.id}:status:{status}",
        payload={"status": status, "reason": reason, "updated_at": utcnow().isoformat()},
    )
