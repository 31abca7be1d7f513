"""The long-lived parts of one running service, built once and shared by requests and workers."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.adapters.base import InboundEvent, InboundMessage
from app.adapters.loopback import LoopbackAdapter
from app.adapters.registry import AdapterRegistry
from app.config import Settings
from app.crashpoints import crash_point
from app.db import Database, GroupCommit, session_scope
from app.delivery.queue import Claim, claim_inline, inline_claims
from app.delivery.worker import DeliveryWorker, Settled
from app.errors import ApiError
from app.metrics import Metrics
from app.models import Channel, Message
from app.security import CredentialBox
from app.services.config_cache import ConfigCache
from app.services.cxone import CxoneGateway
from app.services.files import FileLinks, FilePolicy
from app.services.files import prune as prune_files
from app.services.idempotency import prune as prune_idempotency_keys
from app.services.integrations import prune_box_tokens
from app.services.relay import (
    AcceptedInbound,
    AcceptedReply,
    AgentReply,
    CustomerEvents,
    Refused,
    Stored,
    StoredEvents,
    Unit,
    delivery_failed,
    delivery_ids,
    store,
    stored_messages,
)

Intaken = tuple[Stored, list[Claim]]


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
    config: ConfigCache
    file_links: FileLinks
    files: FilePolicy
    intake: GroupCommit[Unit, Intaken] = field(init=False)

    def __post_init__(self) -> None:
        self.intake = GroupCommit(self.sessions, self._store)

    async def _store(self, session: AsyncSession, units: list[Unit]) -> list[Intaken]:
        """One group commit's worth of messages; their outbox rows are claimed here as they are written."""
        self.claim_inline(session)
        results = await store(session, units, self.registry, self.files)
        claims = {claim.id: claim for claim in inline_claims(session)}
        for result in results:
            for delivery_id, message, thread in stored_messages(result):
                if delivery_id in claims:
                    claims[delivery_id] = replace(claims[delivery_id], loaded=(message, thread))
        return [(result, [claims[i] for i in delivery_ids(result) if i in claims]) for result in results]

    async def receive_inbound(self, channel_id: str, event: InboundMessage) -> AcceptedInbound:
        """One customer message that did not come through a webhook (the loopback customer)."""
        channel, _ = await self.config.live_channel(channel_id)
        budget = self.settings.inline_delivery_budget_seconds  # so that its answer can say "relayed"
        stored = await self.receive_events(channel, [event], wait=budget)
        if not stored.accepted:
            raise ApiError(409, "echo_ignored", "event_id names one of our own outbound messages.")
        return stored.accepted[0]

    async def receive_events(
        self, channel: Channel, events: list[InboundEvent], *, wait: float = 0.0
    ) -> StoredEvents:
        """Everything one verified webhook call carried, in one transaction: all of it is kept, or none.
        Delivery starts at once; a provider needs no more than "stored" for an answer, so by default the
        answer does not wait for it."""
        stored, claims = await self.intake.submit(CustomerEvents(channel, events))
        assert isinstance(stored, StoredEvents)  # customer events are never refused for their content
        crash_point(self.settings.crash_at, "inbound.after_commit")
        await self.deliver_soon(stored.delivery_ids, claims, budget=wait)
        return stored

    async def accept_reply(self, reply: AgentReply) -> AcceptedReply:
        """Stored first, then tried within the inline budget: a permanent provider error is answered at once,
        anything slower is finished by the worker and reaches CXone through the message status API."""
        stored, claims = await self.intake.submit(reply)
        if isinstance(stored, Refused):
            raise stored
        assert isinstance(stored, AcceptedReply)
        crash_point(self.settings.crash_at, "box.after_commit")
        if not stored.duplicate:
            budget = self.settings.inline_delivery_budget_seconds
            for settled in await self.deliver_soon(stored.delivery_ids, claims, budget=budget):
                if settled.status == "dead":
                    raise delivery_failed(settled.error)
        return stored

    async def message_status(self, message_id: str) -> str | None:
        """A fresh read, for answers given after the worker may have moved the message on."""
        async with self.reads() as session:
            return await session.scalar(select(Message.status).where(Message.id == message_id))

    def claim_inline(self, session: AsyncSession) -> None:
        """Rows this request's transaction enqueues are claimed for this process as they are written."""
        claim_inline(session, self.worker.owner, self.worker.queue.lease)

    async def deliver_soon(
        self, delivery_ids: list[int], claimed: list[Claim], *, budget: float
    ) -> list[Settled]:
        """After commit: start the side effects now and wait up to `budget` seconds for them; the worker
        finishes the rest."""
        if not delivery_ids:
            return []
        return await self.worker.deliver_inline(delivery_ids, budget, claimed=claimed)

    async def housekeeping(self) -> None:
        """Forget what is no longer needed: idempotency keys and files past their retention, expired
        CXone tokens."""
        async with session_scope(self.sessions) as session:
            await prune_idempotency_keys(
                session, older_than_seconds=self.settings.idempotency_key_ttl_seconds
            )
            await prune_box_tokens(session)
            await prune_files(session)

    async def drain(self) -> None:
        """Wait for inline deliveries and scripted customer answers still under way."""
        for _ in range(10):  # an answer can cause a delivery, which can cause an answer
            for name in self.registry.names():
                adapter = self.registry.get(name)
                if isinstance(adapter, LoopbackAdapter):
                    await adapter.drain()
            await self.worker.wait_idle()

    async def close(self) -> None:
        await self.intake.wait_idle()
        await self.drain()
        await self.worker.close()
        await self.http.aclose()
        await self.database.dispose()
