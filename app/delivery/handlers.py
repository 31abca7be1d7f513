"""What each kind of outbox row does when it is attempted, and how its result is classified."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.adapters.base import MediaUnavailable, OutboundMessage
from app.adapters.registry import AdapterRegistry
from app.cxone.client import EndUserIdentity, MessageContent, MessageThread, NewMessage
from app.cxone.errors import DfoAuthError, DfoError, DfoNotFound, DfoRateLimited, is_retryable
from app.delivery.attachments import AttachmentRelay, ForCxone
from app.delivery.kinds import (
    CREATE_IN_CXONE,
    SEND_TO_PROVIDER,
    STATUS_TO_CXONE,
    TYPING_TO_PROVIDER,
    cxone_status,
)
from app.delivery.policy import Outcome, OutcomeKind, RetryPolicy, delivered, is_retryable_status
from app.delivery.queue import Claim, enqueue
from app.models import Channel, Delivery, Integration, Message, Suppression, Thread
from app.models.base import utcnow
from app.security import CredentialBox
from app.services.channels import channel_config
from app.services.config_cache import ConfigCache
from app.services.cxone import CxoneGateway
from app.services.files import FileTooLarge

MESSAGES = cast(Table, Message.__table__)
THREADS = cast(Table, Thread.__table__)
MARK_SENT = (
    update(MESSAGES)
    .where(
        MESSAGES.c.id == bindparam("m_id"), or_(MESSAGES.c.status == "queued", MESSAGES.c.status == "failed")
    )
    .values(status="sent", provider_message_id=bindparam("provider_id"), error=None)
)
MARK_RELAYED = (
    update(MESSAGES)
    .where(MESSAGES.c.id == bindparam("m_id"))
    .values(status="relayed", cxone_message_id=bindparam("cxone_id"), error=None)
)
THREAD_IN_CXONE = (
    update(THREADS)
    .where(THREADS.c.id == bindparam("t_id"))
    .values(cxone_thread_id=bindparam("cxone_thread"), cxone_contact_id=bindparam("contact"))
)


class DeliveryHandlers:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        registry: AdapterRegistry,
        gateway: CxoneGateway,
        credential_box: CredentialBox,
        config: ConfigCache,
        attachments: AttachmentRelay,
        retry: RetryPolicy,
    ) -> None:
        self._sessions = sessions
        self._attachments = attachments
        self._retry = retry
        self._config = config
        self._registry = registry
        self._gateway = gateway
        self._box = credential_box

    async def perform(self, claim: Claim) -> Outcome:
        if claim.loaded is not None and claim.kind in (SEND_TO_PROVIDER, CREATE_IN_CXONE):
            # Claimed as it was stored: the message and thread are at hand, and plain sends do not expire.
            message, thread = claim.loaded
            channel, integration = await self._config.channel(message.channel_id)
            return await self._perform(claim, {}, channel, integration, message, thread)
        async with self._sessions() as session:
            row = (
                await session.execute(
                    select(Delivery, Channel, Integration, Message, Thread, Suppression.keyword)
                    .join(Channel, Channel.id == Delivery.channel_id)
                    .join(Integration, Integration.id == Channel.integration_id)
                    .outerjoin(Message, Message.id == Delivery.message_id)
                    .outerjoin(Thread, Thread.id == Message.thread_id)
                    .outerjoin(
                        Suppression,
                        (Suppression.integration_id == Channel.integration_id)
                        & (Suppression.address == Message.end_user_id),
                    )
                    .where(Delivery.id == claim.id)
                )
            ).one()
        delivery, channel, integration, message, thread, opted_out = row
        if delivery.expires_at is not None and delivery.expires_at <= utcnow():
            return Outcome("expired", error="expired before it could be delivered")
        if opted_out is not None and delivery.kind == SEND_TO_PROVIDER:
            # Queued before the customer opted out: it must not go now.
            return Outcome("dead", error=f"The customer opted out ({opted_out}) after this was queued.")
        return await self._perform(claim, delivery.payload, channel, integration, message, thread)

    async def _perform(
        self,
        claim: Claim,
        payload: dict[str, Any],
        channel: Channel,
        integration: Integration,
        message: Message | None,
        thread: Thread | None,
    ) -> Outcome:
        kind = claim.kind
        if kind == SEND_TO_PROVIDER:
            assert message is not None
            assert thread is not None
            return await self._send_to_provider(channel, message, thread)
        if kind == TYPING_TO_PROVIDER:
            adapter = self._registry.get(channel.adapter)
            await adapter.show_typing(
                channel_config(channel, self._box), channel.id, payload["recipient_id"], payload["typing"]
            )
            return delivered()
        if kind == CREATE_IN_CXONE:
            assert message is not None
            assert thread is not None
            budget_from = claim.budget_from or claim.started_at
            last_try = self._retry.is_last(attempt=claim.budget_attempt, created_at=budget_from, now=utcnow())
            return await self._create_in_cxone(integration, channel, message, thread, last_try)
        if kind == STATUS_TO_CXONE:
            assert message is not None
            return await self._status_to_cxone(integration, channel, message, payload)
        return Outcome("dead", error=f"unknown outbox kind {kind!r}")

    async def on_dead(self, session: AsyncSession, delivery: Delivery) -> None:
        """A dead send fails the message; for an agent reply, CXone is told why."""
        if delivery.message_id is None or delivery.kind not in (SEND_TO_PROVIDER, CREATE_IN_CXONE):
            return
        message = await session.get(Message, delivery.message_id)
        if message is None:
            return
        message.status = "failed"
        message.error = delivery.last_error
        if delivery.kind == SEND_TO_PROVIDER:
            channel = await session.get(Channel, message.channel_id)
            assert channel is not None
            reason = (delivery.last_error or "delivery failed")[:500]
            await enqueue(session, cxone_status(message, channel.integration_id, "failed", reason))

    async def _send_to_provider(self, channel: Channel, message: Message, thread: Thread) -> Outcome:
        adapter = self._registry.get(channel.adapter)
        try:
            links, files = await self._attachments.for_provider(adapter, message)
        except FileTooLarge as error:
            return _file_trouble("dead", f"Attachment refused: {error}.", "attachment_too_large")
        except MediaUnavailable as error:  # CXone's file link failed, not the provider
            kind: OutcomeKind = "dead" if error.permanent else "retry"
            return _file_trouble(kind, f"Attachment: {error.reason}.", "attachment_unavailable")
        reply_to, reply_title = await self._answered(message, adapter.capabilities.cites_latest_message)
        result = await adapter.send(
            channel_config(channel, self._box),
            OutboundMessage(
                message_id=message.id,
                channel_id=channel.id,
                thread_id=thread.external_id,
                recipient_id=message.end_user_id,
                recipient_name=thread.end_user_name if thread.end_user_id == message.end_user_id else None,
                text=message.text,
                attachments=links,
                files=files,
                reply_to_provider_message_id=reply_to,
                reply_to_title=reply_title,
            ),
        )
        if result.ok:
            sent = {"m_id": message.id, "provider_id": result.provider_message_id}
            return delivered((MARK_SENT, sent), status_code=result.status_code)
        retryable = not result.permanent and (
            result.status_code is None or is_retryable_status(result.status_code)
        )
        return Outcome(
            "retry" if retryable else "dead",
            error=result.error,
            status_code=result.status_code,
            retry_after=result.retry_after,
            disable_destination=result.disable_destination,
            error_class="transport" if result.status_code is None else f"http_{result.status_code}",
        )

    async def _answered(self, message: Message, or_latest: bool) -> tuple[str | None, str | None]:
        """The provider's id and the title of the customer message a reply answers: the one CXone names
        (by our id or its own), else, for adapters that cite one, the customer's latest in the thread."""
        reference = message.reply_to_external_id
        query = select(Message.provider_message_id, Message.title).where(
            Message.channel_id == message.channel_id
        )
        if reference is not None:
            query = query.where(or_(Message.id == reference, Message.cxone_message_id == reference))
        elif or_latest:
            query = query.where(
                Message.thread_id == message.thread_id, Message.direction == "inbound"
            ).order_by(Message.created_at.desc())
        else:
            return None, None
        async with self._sessions() as session:
            found = (await session.execute(query.limit(1))).first()
        return (found[0], found[1]) if found is not None else (None, None)

    async def _create_in_cxone(
        self, integration: Integration, channel: Channel, message: Message, thread: Thread, last_try: bool
    ) -> Outcome:
        cxone = self._gateway.client_for(integration)
        files = ForCxone([], [])
        try:
            if message.attachments:  # the channel's credentials are opened only for a file to fetch
                adapter, config = self._registry.get(channel.adapter), channel_config(channel, self._box)
                files = await self._attachments.for_cxone(cxone, adapter, config, message, last_try=last_try)
        except MediaUnavailable as error:  # the provider's file host failed, not CXone
            return _file_trouble("retry", f"Attachment: {error.reason}.", "attachment_unavailable")
        except DfoError as exc:
            return _cxone_failure(exc)
        text = "\n".join(part for part in (message.text, *files.notes) if part)
        if not text.strip():  # a file alone: CXone wants some text, so the agent reads its name
            text = ", ".join(attachment.friendly_name for attachment in files.attachments)
        body = NewMessage(
            id_on_external_platform=message.id,
            direction="inbound",
            created_at_with_milliseconds=message.created_at,
            thread=MessageThread(id_on_external_platform=thread.external_id),
            title=message.title,
            message_content=MessageContent.of_text(text),
            author_end_user_identity=EndUserIdentity(
                id_on_external_platform=message.end_user_id, nickname=thread.end_user_name
            ),
            attachments=files.attachments or None,
        )
        try:
            created = await cxone.create_message(channel.id, body)
        except DfoError as exc:
            return _cxone_failure(exc)

        relayed = {"m_id": message.id, "cxone_id": created.message_id}
        in_cxone = {
            "t_id": thread.id,
            "cxone_thread": created.thread_id,
            "contact": created.consumer_contact_id,
        }
        return delivered((MARK_RELAYED, relayed), (THREAD_IN_CXONE, in_cxone))

    async def _status_to_cxone(
        self, integration: Integration, channel: Channel, message: Message, payload: dict[str, Any]
    ) -> Outcome:
        try:
            await self._gateway.client_for(integration).update_message_status(
                channel.id,
                message.id,
                payload["status"],
                datetime.fromisoformat(payload["updated_at"]),
                payload.get("reason"),
            )
        except DfoNotFound:
            # CXone does not know the message (e.g. it was refused inline): there is nothing to update.
            return delivered()
        except DfoError as exc:
            return _cxone_failure(exc)
        return delivered()


def _file_trouble(kind: OutcomeKind, error: str, error_class: str) -> Outcome:
    """A file could not be made ready: the destination was never called, so its breaker is left alone."""
    return Outcome(kind, error=error, error_class=error_class, concerns_destination=False)


def _cxone_failure(exc: DfoError) -> Outcome:
    """CXone's own retryable answers, and credentials trouble an admin can fix, are tried again."""
    retryable = is_retryable(exc) or isinstance(exc, DfoAuthError)
    return Outcome(
        "retry" if retryable else "dead",
        error=f"CXone: {exc.message}",
        status_code=exc.status_code,
        retry_after=exc.retry_after if isinstance(exc, DfoRateLimited) else None,
        error_class=type(exc).__name__,
    )
