"""The relay's use cases: accept an agent reply from CXone, accept a customer message from a provider.

Each stores the message and its outbox row in the caller's transaction; the delivery worker does the
talking to the outside world after commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.adapters.base import ChannelAdapter, DeliveryReceipt, InboundMessage
from app.adapters.registry import AdapterRegistry
from app.delivery.kinds import (
    enqueue_cxone_create,
    enqueue_cxone_status,
    enqueue_provider_send,
    enqueue_provider_typing,
)
from app.errors import ApiError, RawJSONError, not_found
from app.models import Channel, InboundEvent, Integration, Message, Thread
from app.models.base import new_uuid, utcnow
from app.schemas.box import EndUserRecipient, LegacyReplyRequest, OutboundRequest


@dataclass(frozen=True)
class AcceptedReply:
    message: Message
    thread: Thread
    recipients: list[EndUserRecipient]
    delivery_ids: list[int]
    duplicate: bool = False


@dataclass(frozen=True)
class AcceptedInbound:
    message: Message
    thread: Thread
    delivery_ids: list[int]
    duplicate: bool


def outbound_validation_failed(problems: list[tuple[int, str]]) -> RawJSONError:
    """CXone's own error shape for recipients it should not send to."""
    return RawJSONError(
        400,
        {
            "displayErrorMessage": problems[0][1],
            "errorCode": "outboundValidationFailed",
            "errors": [
                {"path": ["endUserRecipients", index, "idOnExternalPlatform"], "message": message}
                for index, message in problems
            ],
        },
    )


def delivery_failed(reason: str | None) -> RawJSONError:
    """A permanent provider error met during the inline attempt, in the shape CXone shows to the agent."""
    message = (reason or "The message could not be delivered.")[:300]
    return RawJSONError(
        400,
        {
            "displayErrorMessage": message,
            "errorCode": "outboundDeliveryFailed",
            "errors": [{"path": ["messageContent"], "message": message}],
        },
    )


def check_recipients(adapter: ChannelAdapter, recipients: list[EndUserRecipient]) -> None:
    problems = [
        (index, error)
        for index, recipient in enumerate(recipients)
        if (error := adapter.recipient_error(recipient.idOnExternalPlatform)) is not None
    ]
    if problems:
        raise outbound_validation_failed(problems)


async def box_channel(session: AsyncSession, integration: Integration, channel_id: str) -> Channel:
    """A live channel of this integration; another integration's channel is as unknown as a missing one."""
    channel = await session.get(Channel, channel_id)
    if channel is None or channel.integration_id != integration.id or channel.deleted_at is not None:
        raise not_found("channel", channel_id)
    return channel


async def validate_recipients(
    session: AsyncSession,
    *,
    integration: Integration,
    channel_id: str,
    recipients: list[EndUserRecipient],
    registry: AdapterRegistry,
) -> None:
    channel = await box_channel(session, integration, channel_id)
    check_recipients(registry.get(channel.adapter), recipients)


async def _latest_thread(session: AsyncSession, channel_id: str, end_user_id: str) -> Thread | None:
    query = (
        select(Thread)
        .where(Thread.channel_id == channel_id, Thread.end_user_id == end_user_id)
        .order_by(Thread.last_message_at.desc())
        .limit(1)
    )
    return await session.scalar(query)


async def _thread_by_external_id(session: AsyncSession, channel_id: str, external_id: str) -> Thread | None:
    query = select(Thread).where(Thread.channel_id == channel_id, Thread.external_id == external_id)
    return await session.scalar(query)


async def _store_reply(
    session: AsyncSession,
    *,
    channel: Channel,
    request: OutboundRequest | LegacyReplyRequest,
    request_key: str | None,
    thread: Thread | None,
    registry: AdapterRegistry,
) -> AcceptedReply:
    if request_key is not None:
        repeated = await session.scalar(
            select(Message).where(Message.channel_id == channel.id, Message.cxone_request_key == request_key)
        )
        if repeated is not None:
            return await _repeated_reply(session, repeated)
    adapter = registry.get(channel.adapter)
    text = request.text
    attachments: list[dict[str, Any]] = [
        {"url": item.url, "friendlyName": item.friendlyName} for item in request.attachments
    ]
    if not text.strip() and not attachments:
        raise ApiError(
            422,
            "empty_message",
            "messageContent.payload.text: a reply needs text or at least one attachment.",
        )
    recipients = request.all_recipients
    check_recipients(adapter, recipients)
    requested_thread_id = request.thread.idOnExternalPlatform if request.thread else None
    if thread is None and requested_thread_id:
        thread = await _thread_by_external_id(session, channel.id, requested_thread_id)
    if thread is None:
        if not recipients:
            raise ApiError(
                422,
                "recipient_required",
                "endUserRecipients: a message that starts a conversation needs a recipient.",
            )
        if not requested_thread_id:
            thread = await _latest_thread(session, channel.id, recipients[0].idOnExternalPlatform)
        if thread is None:
            thread = Thread(
                id=new_uuid(),
                channel_id=channel.id,
                external_id=requested_thread_id or new_uuid(),
                end_user_id=recipients[0].idOnExternalPlatform,
                end_user_name=recipients[0].name,
            )
            session.add(thread)
    if not recipients:
        recipients = [EndUserRecipient(idOnExternalPlatform=thread.end_user_id, name=thread.end_user_name)]
    thread.last_message_at = utcnow()
    message = Message(
        id=new_uuid(),
        channel_id=channel.id,
        thread_id=thread.id,
        direction="outbound",
        text=text,
        attachments=attachments,
        end_user_id=recipients[0].idOnExternalPlatform,
        reply_to_external_id=request.reply_to,
        cxone_request_key=request_key,
        status="queued",
        created_at=utcnow(),
    )
    if not await _add_once(session, message, dedupe=request_key is not None):
        # The same CXone request is being stored concurrently; answer what the first one stored.
        repeated = await session.scalar(
            select(Message).where(Message.channel_id == channel.id, Message.cxone_request_key == request_key)
        )
        assert repeated is not None
        return await _repeated_reply(session, repeated)
    delivery = await enqueue_provider_send(
        session, message=message, thread=thread, destination=adapter.destination(channel.config)
    )
    return AcceptedReply(message=message, thread=thread, recipients=recipients, delivery_ids=[delivery.id])


async def _repeated_reply(session: AsyncSession, message: Message) -> AcceptedReply:
    thread = await session.get(Thread, message.thread_id)
    assert thread is not None
    recipient = EndUserRecipient(
        idOnExternalPlatform=message.end_user_id,
        name=thread.end_user_name if thread.end_user_id == message.end_user_id else None,
    )
    return AcceptedReply(
        message=message, thread=thread, recipients=[recipient], delivery_ids=[], duplicate=True
    )


async def accept_outbound(
    session: AsyncSession,
    *,
    integration: Integration,
    channel_id: str,
    request: OutboundRequest,
    request_key: str | None,
    registry: AdapterRegistry,
) -> AcceptedReply:
    """`2.0/channel/{channelId}/outbound`: an agent or bot reply, or a proactive first message."""
    channel = await box_channel(session, integration, channel_id)
    return await _store_reply(
        session, channel=channel, request=request, request_key=request_key, thread=None, registry=registry
    )


async def accept_legacy_reply(
    session: AsyncSession,
    *,
    integration: Integration,
    post_id: str,
    request: LegacyReplyRequest,
    request_key: str | None,
    registry: AdapterRegistry,
) -> AcceptedReply:
    """`1.0/posts/{postId}/messages`: the post id is CXone's internal thread id, or our own thread id."""
    candidates = {post_id}
    if request.post is not None and request.post.idOnExternalPlatform:
        candidates.add(request.post.idOnExternalPlatform)
    if request.thread is not None and request.thread.idOnExternalPlatform:
        candidates.add(request.thread.idOnExternalPlatform)
    query = (
        select(Thread)
        .join(Channel, Channel.id == Thread.channel_id)
        .where(
            Channel.integration_id == integration.id,
            Channel.deleted_at.is_(None),
            or_(Thread.cxone_thread_id.in_(candidates), Thread.external_id.in_(candidates)),
        )
        .order_by(Thread.last_message_at.desc())
        .limit(1)
    )
    thread = await session.scalar(query)
    if thread is None:
        raise not_found("thread", post_id)
    channel = await session.get(Channel, thread.channel_id)
    assert channel is not None
    return await _store_reply(
        session, channel=channel, request=request, request_key=request_key, thread=thread, registry=registry
    )


async def accept_inbound(
    session: AsyncSession, *, channel: Channel, event: InboundMessage
) -> AcceptedInbound:
    """A customer wrote. Stored once per provider event id, then created in CXone by the worker."""
    if event.event_id is not None:
        existing = await _message_for_event(session, channel.id, event.event_id)
        if existing is not None:
            return await _duplicate(session, existing)
    thread = await _latest_thread(session, channel.id, event.sender_id)
    if thread is None:
        thread = Thread(
            id=new_uuid(),
            channel_id=channel.id,
            external_id=new_uuid(),
            end_user_id=event.sender_id,
            end_user_name=event.sender_name,
        )
        session.add(thread)
    elif event.sender_name:
        thread.end_user_name = event.sender_name
    thread.last_message_at = utcnow()
    message = Message(
        id=new_uuid(),
        channel_id=channel.id,
        thread_id=thread.id,
        direction="inbound",
        text=event.text,
        attachments=[{"url": a.url, "friendlyName": a.friendly_name} for a in event.attachments],
        end_user_id=event.sender_id,
        status="received",
        provider_event_id=event.event_id,
        provider_message_id=event.event_id,
        created_at=utcnow(),
    )
    if not await _add_once(session, message, dedupe=event.event_id is not None):
        # The same event arrived concurrently and the other request stored it first.
        assert event.event_id is not None
        existing = await _message_for_event(session, channel.id, event.event_id)
        assert existing is not None
        return await _duplicate(session, existing)
    delivery = await enqueue_cxone_create(
        session, message=message, thread=thread, integration_id=channel.integration_id
    )
    return AcceptedInbound(message=message, thread=thread, delivery_ids=[delivery.id], duplicate=False)


async def _add_once(session: AsyncSession, message: Message, *, dedupe: bool) -> bool:
    """Add the message; when it carries a dedupe key, inside a savepoint, so that losing a race to a
    concurrent twin (a unique violation) is told apart from any other failure. False: the twin won."""
    if not dedupe:
        session.add(message)
        return True
    try:
        async with session.begin_nested():
            session.add(message)
            await session.flush()
    except IntegrityError:
        return False
    return True


async def _message_for_event(session: AsyncSession, channel_id: str, event_id: str) -> Message | None:
    query = select(Message).where(Message.channel_id == channel_id, Message.provider_event_id == event_id)
    return await session.scalar(query)


async def _duplicate(session: AsyncSession, message: Message) -> AcceptedInbound:
    thread = await session.get(Thread, message.thread_id)
    assert thread is not None
    return AcceptedInbound(message=message, thread=thread, delivery_ids=[], duplicate=True)


async def show_agent_typing(
    session: AsyncSession,
    *,
    integration: Integration,
    channel_id: str,
    thread_external_id: str,
    typing: bool,
    registry: AdapterRegistry,
    ttl_seconds: float,
) -> list[int]:
    """Typing is best effort: an unknown thread is ignored rather than refused, so CXone never retries it."""
    channel = await box_channel(session, integration, channel_id)
    thread = await _thread_by_external_id(session, channel.id, thread_external_id)
    if thread is None:
        return []
    delivery = await enqueue_provider_typing(
        session,
        channel=channel,
        thread=thread,
        destination=registry.get(channel.adapter).destination(channel.config),
        typing=typing,
        ttl_seconds=ttl_seconds,
    )
    return [delivery.id]


RECEIPT_ORDER = {"queued": 0, "sent": 1, "delivered": 2, "seen": 3}


async def accept_receipt(session: AsyncSession, *, channel: Channel, receipt: DeliveryReceipt) -> list[int]:
    """A provider's delivery or read receipt: the message moves on and CXone is told, once per event."""
    if receipt.event_id is not None and not await _first_sighting(
        session, channel.id, receipt.event_id, "receipt"
    ):
        return []
    message = await session.scalar(
        select(Message)
        .where(
            Message.channel_id == channel.id,
            Message.direction == "outbound",
            or_(
                Message.provider_message_id == receipt.provider_message_id,
                Message.id == receipt.provider_message_id,
            ),
        )
        .limit(1)
    )
    if message is None:
        return []
    if receipt.status == "failed":
        message.status, message.error = "failed", receipt.reason or "the provider reported a failure"
    elif RECEIPT_ORDER.get(receipt.status, 0) > RECEIPT_ORDER.get(message.status, 0):
        message.status = receipt.status
    else:
        return []  # a late "delivered" after "seen" changes nothing
    delivery = await enqueue_cxone_status(
        session,
        message=message,
        integration_id=channel.integration_id,
        status=receipt.status,
        reason=receipt.reason,
    )
    return [delivery.id]


async def _first_sighting(session: AsyncSession, channel_id: str, event_id: str, kind: str) -> bool:
    try:
        async with session.begin_nested():
            session.add(InboundEvent(channel_id=channel_id, event_id=event_id, kind=kind))
            await session.flush()
    except IntegrityError:
        return False
    return True
