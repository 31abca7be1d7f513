"""The long-lived parts of one running service, built once and shared by requests and workers."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.adapters.base import DeliveryReceipt, InboundEvent, InboundMessage
from app.adapters.loopback import LoopbackAdapter
from app.adapters.registry import AdapterRegistry
from app.config import Settings
from app.crashpoints import crash_point
from app.db import Database, session_scope
from app.delivery.queue import claim_inline, inline_claims
from app.delivery.worker import DeliveryWorker, Settled
from app.metrics import Metrics
from app.models import Channel, Message
from app.security import CredentialBox
from app.services.channels import get_channel
from app.services.cxone import CxoneGateway
from app.services.idempotency import prune as prune_idempotency_keys
from app.services.integrations import prune_box_tokens
from app.services.relay import AcceptedInbound, accept_inbound, accept_receipt


@dataclass
class Runtime:
    settings: Settings
    database: Database
    sessions: async_sessionmaker[AsyncSession]
    reads: async_sessionmaker[AsyncSession]
    registry: AdapterRegistry
    gateway: CxoneGateway
    worker: DeliveryWorker
    credential_box: CredentialBox
    metrics: Metrics
    http: httpx.AsyncClient

    async def receive_inbound(self, channel_id: str, event: InboundMessage) -> AcceptedInbound:
        """One customer message that did not come through a webhook (the loopback customer)."""
        async with self.reads() as session:
            channel = await get_channel(session, channel_id, include_deleted=False)
        [accepted] = await self.receive_events(channel, [event])
        return accepted

    async def receive_events(self, channel: Channel, events: list[InboundEvent]) -> list[AcceptedInbound]:
        """Everything one verified webhook call carried, in one transaction: all of it is kept, or none."""
        accepted: list[AcceptedInbound] = []
        deliveries: list[int] = []
        async with session_scope(self.sessions) as session:
            self.claim_inline(session)
            for event in events:
                if isinstance(event, InboundMessage):
                    stored = await accept_inbound(session, channel=channel, event=event)
                    accepted.append(stored)
                    deliveries += stored.delivery_ids
                elif isinstance(event, DeliveryReceipt):
                    deliveries += await accept_receipt(session, channel=channel, receipt=event)
                # Customer typing has no documented way into CXone (see docs/cxone-contract.md §3.6).
        crash_point(self.settings.crash_at, "inbound.after_commit")
        await self.deliver_soon(session, deliveries)
        return accepted

    async def message_status(self, message_id: str) -> str | None:
        """A fresh read, for answers given after the worker may have moved the message on."""
        async with self.reads() as session:
            return await session.scalar(select(Message.status).where(Message.id == message_id))

    def claim_inline(self, session: AsyncSession) -> None:
        """Rows this request's transaction enqueues are claimed for this process as they are written."""
        claim_inline(session, self.worker.owner, self.worker.queue.lease)

    async def deliver_soon(self, session: AsyncSession, delivery_ids: list[int]) -> list[Settled]:
        """After commit: try the side effects now, within the inline budget; the worker finishes the rest."""
        if not delivery_ids:
            return []
        return await self.worker.deliver_inline(
            delivery_ids, self.settings.inline_delivery_budget_seconds, claimed=inline_claims(session)
        )

    async def housekeeping(self) -> None:
        """Forget what is no longer needed: idempotency keys past their retention, expired CXone tokens."""
        async with session_scope(self.sessions) as session:
            await prune_idempotency_keys(
                session, older_than_seconds=self.settings.idempotency_key_ttl_seconds
            )
            await prune_box_tokens(session)

    async def drain(self) -> None:
        """Wait for inline deliveries and scripted customer answers still under way."""
        for _ in range(10):  # an answer can cause a delivery, which can cause an answer
            for name in self.registry.names():
                adapter = self.registry.get(name)
                if isinstance(adapter, LoopbackAdapter):
                    await adapter.drain()
            await self.worker.wait_idle()

    async def close(self) -> None:
        await self.drain()
        await self.worker.close()
        await self.http.aclose()
        await self.database.dispose()
