"""The long-lived parts of one running service, built once and shared by requests and workers."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.adapters.base import InboundMessage
from app.adapters.loopback import LoopbackAdapter
from app.adapters.registry import AdapterRegistry
from app.config import Settings
from app.db import session_scope
from app.delivery.worker import DeliveryWorker
from app.models import Message
from app.security import CredentialBox
from app.services.channels import get_channel
from app.services.cxone import CxoneGateway
from app.services.relay import AcceptedInbound, accept_inbound


@dataclass
class Runtime:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    registry: AdapterRegistry
    gateway: CxoneGateway
    worker: DeliveryWorker
    credential_box: CredentialBox
    http: httpx.AsyncClient

    async def receive_inbound(self, channel_id: str, event: InboundMessage) -> AcceptedInbound:
        """A customer message from any source: stored and committed, then relayed to CXone at once."""
        async with session_scope(self.sessions) as session:
            channel = await get_channel(session, channel_id, include_deleted=False)
            accepted = await accept_inbound(session, channel=channel, event=event)
        await self.deliver_soon(accepted.outbox_id)
        return accepted

    async def message_status(self, message_id: str) -> str | None:
        """A fresh read, for answers given after the worker may have moved the message on."""
        async with self.sessions() as session:
            return await session.scalar(select(Message.status).where(Message.id == message_id))

    async def deliver_soon(self, outbox_id: int | None) -> None:
        """After commit: try the side effect now, within the inline budget; the worker finishes the rest."""
        if outbox_id is not None:
            await self.worker.deliver_inline(outbox_id, self.settings.inline_delivery_budget_seconds)

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
        await self.http.aclose()
        await self.engine.dispose()
