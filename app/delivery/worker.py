"""Delivers outbox rows: claims one with a lease, performs it outside any transaction, records the outcome.

A crash between claim and record leaves the lease to expire; the row is then claimed again. The far side
dedupes on our message id, so a repeat is harmless.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from datetime import timedelta

from sqlalchemy import ColumnElement, and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.adapters.base import Attachment, OutboundMessage
from app.adapters.registry import AdapterRegistry
from app.cxone.client import Attachment as CxoneAttachment
from app.cxone.client import EndUserIdentity, MessageContent, MessageThread, NewMessage
from app.cxone.errors import DfoError, is_retryable
from app.models import Channel, Integration, Message, OutboxItem, Thread
from app.models.base import utcnow
from app.services.cxone import CxoneGateway
from app.services.relay import CREATE_IN_CXONE, SEND_TO_PROVIDER

log = logging.getLogger("byoc.delivery")

MAX_ATTEMPTS = 10
BACKOFF_BASE_SECONDS = 1.0
BACKOFF_CAP_SECONDS = 300.0


class Outcome:
    """What one attempt came to: done, retry later, or give up."""

    def __init__(self, status: str, error: str | None = None) -> None:
        self.status = status
        self.error = error


DONE = Outcome("done")


def backoff_seconds(attempt: int) -> float:
    """Exponential backoff with full jitter."""
    return random.uniform(0, min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** max(attempt - 1, 0)))


def _is_due() -> ColumnElement[bool]:
    """Pending and due, or claimed by a worker whose lease ran out (it crashed or hung)."""
    now = utcnow()
    return or_(
        and_(OutboxItem.status == "pending", OutboxItem.next_attempt_at <= now),
        and_(OutboxItem.status == "inflight", OutboxItem.lease_until < now),
    )


async def _provider_id_of(session: AsyncSession, channel_id: str, reference: str | None) -> str | None:
    """The provider's id of the message a reply answers, which CXone names by our id or its own."""
    if reference is None:
        return None
    query = select(Message.provider_message_id).where(
        Message.channel_id == channel_id, or_(Message.id == reference, Message.cxone_message_id == reference)
    )
    return await session.scalar(query.limit(1))


class DeliveryWorker:
    def __init__(
        self,
        maker: async_sessionmaker[AsyncSession],
        *,
        registry: AdapterRegistry,
        gateway: CxoneGateway,
        lease_seconds: float = 60.0,
        poll_seconds: float = 0.5,
    ) -> None:
        self._maker = maker
        self._registry = registry
        self._gateway = gateway
        self._lease = timedelta(seconds=lease_seconds)
        self._poll = poll_seconds
        self._inline: set[asyncio.Task[int]] = set()
        self.owner = uuid.uuid4().hex[:12]

    async def deliver_inline(self, item_id: int, budget: float) -> None:
        """Try one row now, waiting at most `budget` seconds; past that it finishes in the background."""
        task = asyncio.create_task(self.deliver(item_id))
        self._inline.add(task)
        task.add_done_callback(self._inline.discard)
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout=budget)
        except TimeoutError:
            pass

    async def wait_idle(self) -> None:
        while self._inline:
            await asyncio.gather(*list(self._inline), return_exceptions=True)

    async def run(self, stop: asyncio.Event) -> None:
        log.info("delivery worker %s started", self.owner)
        while not stop.is_set():
            try:
                done = await self.run_once()
            except Exception:
                log.exception("delivery worker pass failed; retrying")
                done = 0
            if done == 0:
                try:
                    await asyncio.wait_for(stop.wait(), timeout=self._poll)
                except TimeoutError:
                    pass
        await self.wait_idle()
        log.info("delivery worker %s stopped", self.owner)

    async def run_once(self, limit: int = 50) -> int:
        """Deliver every row that is due now; returns how many were attempted."""
        async with self._maker() as session:
            ids = list(
                await session.scalars(
                    select(OutboxItem.id).where(_is_due()).order_by(OutboxItem.id).limit(limit)
                )
            )
        attempted = 0
        for item_id in ids:
            attempted += await self.deliver(item_id)
        return attempted

    async def deliver(self, item_id: int) -> int:
        if not await self._claim(item_id):
            return 0
        try:
            outcome = await self._perform(item_id)
        except Exception as exc:  # a bug or an unexpected error must not lose the row
            log.exception("outbox item %s failed unexpectedly", item_id)
            outcome = Outcome("retry", f"{type(exc).__name__}")
        await self._record(item_id, outcome)
        return 1

    async def _claim(self, item_id: int) -> bool:
        now = utcnow()
        async with self._maker() as session, session.begin():
            result = await session.execute(
                update(OutboxItem)
                .where(OutboxItem.id == item_id, _is_due())
                .values(status="inflight", lease_until=now + self._lease, attempts=OutboxItem.attempts + 1)
            )
            return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    async def _perform(self, item_id: int) -> Outcome:
        async with self._maker() as session:
            item = await session.get(OutboxItem, item_id)
            assert item is not None
            message = await session.get(Message, item.message_id)
            assert message is not None
            thread = await session.get(Thread, message.thread_id)
            channel = await session.get(Channel, message.channel_id)
            assert thread is not None
            assert channel is not None
            integration = await session.get(Integration, channel.integration_id)
            assert integration is not None
            reply_to = await _provider_id_of(session, channel.id, message.reply_to_external_id)
        if item.kind == SEND_TO_PROVIDER:
            return await self._send_to_provider(message, thread, channel, reply_to)
        if item.kind == CREATE_IN_CXONE:
            return await self._create_in_cxone(message, thread, channel, integration)
        return Outcome("dead", f"unknown outbox kind {item.kind!r}")

    async def _send_to_provider(
        self, message: Message, thread: Thread, channel: Channel, reply_to: str | None
    ) -> Outcome:
        adapter = self._registry.get(channel.adapter)
        result = await adapter.send(
            channel.config,
            OutboundMessage(
                message_id=message.id,
                channel_id=channel.id,
                thread_id=thread.external_id,
                recipient_id=message.end_user_id,
                recipient_name=thread.end_user_name if thread.end_user_id == message.end_user_id else None,
                text=message.text,
                attachments=tuple(
                    Attachment(url=a["url"], friendly_name=a.get("friendlyName")) for a in message.attachments
                ),
                reply_to_provider_message_id=reply_to,
            ),
        )
        if result.ok:
            async with self._maker() as session, session.begin():
                await session.execute(
                    update(Message)
                    .where(Message.id == message.id)
                    .values(status="sent", provider_message_id=result.provider_message_id, error=None)
                )
            return DONE
        return Outcome("dead" if result.permanent else "retry", result.error)

    async def _create_in_cxone(
        self, message: Message, thread: Thread, channel: Channel, integration: Integration
    ) -> Outcome:
        body = NewMessage(
            id_on_external_platform=message.id,
            direction="inbound",
            created_at_with_milliseconds=message.created_at,
            thread=MessageThread(id_on_external_platform=thread.external_id),
            message_content=MessageContent.of_text(message.text),
            author_end_user_identity=EndUserIdentity(
                id_on_external_platform=message.end_user_id, nickname=thread.end_user_name
            ),
            attachments=[
                CxoneAttachment(friendly_name=a.get("friendlyName") or "attachment", url=a["url"])
                for a in message.attachments
            ]
            or None,
        )
        try:
            created = await self._gateway.client_for(integration).create_message(channel.id, body)
        except DfoError as exc:
            return Outcome("retry" if is_retryable(exc) else "dead", f"CXone: {exc.message}")
        async with self._maker() as session, session.begin():
            await session.execute(
                update(Message)
                .where(Message.id == message.id)
                .values(status="relayed", cxone_message_id=created.message_id, error=None)
            )
            await session.execute(
                update(Thread)
                .where(Thread.id == thread.id)
                .values(cxone_thread_id=created.thread_id, cxone_contact_id=created.consumer_contact_id)
            )
        return DONE

    async def _record(self, item_id: int, outcome: Outcome) -> None:
        now = utcnow()
        async with self._maker() as session, session.begin():
            item = await session.get(OutboxItem, item_id)
            assert item is not None
            status = outcome.status
            if status == "retry" and item.attempts >= MAX_ATTEMPTS:
                status = "dead"
            item.last_error = outcome.error
            item.lease_until = None
            if status == "done":
                item.status, item.completed_at = "done", now
            elif status == "dead":
                item.status, item.completed_at = "dead", now
                await session.execute(
                    update(Message)
                    .where(Message.id == item.message_id)
                    .values(status="failed", error=outcome.error)
                )
            else:
                item.status = "pending"
                item.next_attempt_at = now + timedelta(seconds=backoff_seconds(item.attempts))
            if status != "done":
                log.warning("outbox item %s %s after attempt %s", item_id, item.status, item.attempts)
