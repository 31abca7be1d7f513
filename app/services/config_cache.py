"""Channels, integrations and box tokens, read once every few seconds instead of on every message.

They change rarely (an admin edits them) and are read on every request, where one read costs more than
the rest of the request. An admin change made through this process clears the cache at once; another
process sees it within `ttl` seconds (`BYOC_CONFIG_CACHE_SECONDS`; 0 turns the cache off).
"""

from __future__ import annotations

import time
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.errors import not_found
from app.models import BoxToken, Channel, Integration
from app.models.base import utcnow
from app.security import hash_secret

MAX_TOKENS = 10_000


class ConfigCache:
    def __init__(self, reads: async_sessionmaker[AsyncSession], ttl: float) -> None:
        self._reads = reads
        self._ttl = ttl
        self._channels: dict[str, tuple[float, Channel | None, Integration | None]] = {}
        self._tokens: dict[str, tuple[float, str | None, datetime | None]] = {}
        self._integrations: dict[str, tuple[float, Integration | None]] = {}

    def clear(self) -> None:
        self._channels.clear()
        self._tokens.clear()
        self._integrations.clear()

    def _fresh(self, stamp: float) -> bool:
        return time.monotonic() - stamp < self._ttl

    async def live_channel(self, channel_id: str) -> tuple[Channel, Integration]:
        """A channel that is not deleted, with its integration; 404 otherwise."""
        channel, integration = await self.channel(channel_id)
        if channel.deleted_at is not None:
            raise not_found("channel", channel_id)
        return channel, integration

    async def channel(self, channel_id: str) -> tuple[Channel, Integration]:
        """A channel, deleted or not, with its integration; 404 when there is none."""
        cached = self._channels.get(channel_id)
        if cached is None or not self._fresh(cached[0]):
            async with self._reads() as session:
                channel = await session.get(Channel, channel_id)
                integration = (
                    await session.get(Integration, channel.integration_id) if channel is not None else None
                )
            cached = (time.monotonic(), channel, integration)
            self._channels[channel_id] = cached
        _, channel, integration = cached
        if channel is None or integration is None:
            raise not_found("channel", channel_id)
        return channel, integration

    async def box_channel(self, integration: Integration, channel_id: str) -> Channel:
        """A live channel of this integration; another integration's channel is as unknown as a missing
        one."""
        channel, _ = await self.live_channel(channel_id)
        if channel.integration_id != integration.id:
            raise not_found("channel", channel_id)
        return channel

    async def integration_for_bearer(self, token: str) -> Integration | None:
        """The integration a live box token belongs to; None for unknown or expired tokens."""
        token_hash = hash_secret(token)
        cached = self._tokens.get(token_hash)
        if cached is None or not self._fresh(cached[0]):
            async with self._reads() as session:
                row = await session.get(BoxToken, token_hash)
            cached = (
                time.monotonic(),
                row.integration_id if row else None,
                row.expires_at if row else None,
            )
            if len(self._tokens) >= MAX_TOKENS:
                self._tokens.clear()  # bounded: unknown tokens are cached too
            self._tokens[token_hash] = cached
        _, integration_id, expires_at = cached
        if integration_id is None or expires_at is None or expires_at <= utcnow():
            return None
        return await self._integration(integration_id)

    async def _integration(self, integration_id: str) -> Integration | None:
        cached = self._integrations.get(integration_id)
        if cached is None or not self._fresh(cached[0]):
            async with self._reads() as session:
                cached = (time.monotonic(), await session.get(Integration, integration_id))
            self._integrations[integration_id] = cached
        return cached[1]
