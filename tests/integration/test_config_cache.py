"""Channels and box tokens are cached per process: an admin change made here applies at once; a change
made by another process applies within `BYOC_CONFIG_CACHE_SECONDS`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import delete, update

from app.models import BoxToken, Channel
from app.models.base import utcnow
from app.services.api_keys import Role
from tests.conftest import (
    Stack,
    box_headers,
    make_settings,
    new_api_key,
    running_stack,
    webhook_channel,
    wire_integration,
)
from tests.fakes.provider import FakeProvider

TTL = 0.5


@pytest.fixture
async def cached(database_url: str) -> AsyncIterator[Stack]:
    async with running_stack(make_settings(database_url, config_cache_seconds=TTL)) as running:
        yield running


async def post_event(stack: Stack, channel_id: str, provider: FakeProvider, event_id: str) -> int:
    body = FakeProvider.message_event(event_id, "+15550100", "Hello")
    answer = await stack.relay.post(
        f"/webhooks/webhook/{channel_id}", content=body, headers=provider.signed_headers(body)
    )
    return answer.status_code


async def test_a_channel_deleted_elsewhere_is_refused_within_the_cache_time(cached: Stack) -> None:
    headers = {"Authorization": f"Bearer {await new_api_key(cached.runtime, Role.admin)}"}
    channel_id, provider = await webhook_channel(cached, headers, await wire_integration(cached, headers))
    assert await post_event(cached, channel_id, provider, "evt-1") == 200
    async with cached.runtime.sessions() as session, session.begin():  # as another process would
        await session.execute(update(Channel).where(Channel.id == channel_id).values(deleted_at=utcnow()))
    assert await post_event(cached, channel_id, provider, "evt-2") == 200  # still cached here
    await asyncio.sleep(TTL + 0.1)
    assert await post_event(cached, channel_id, provider, "evt-3") == 404


async def test_a_channel_deleted_through_this_process_is_refused_at_once(cached: Stack) -> None:
    headers = {"Authorization": f"Bearer {await new_api_key(cached.runtime, Role.admin)}"}
    channel_id, provider = await webhook_channel(cached, headers, await wire_integration(cached, headers))
    assert await post_event(cached, channel_id, provider, "evt-1") == 200
    deleted = await cached.relay.delete(f"/api/v1/channels/{channel_id}", headers=headers)
    assert deleted.status_code == 204
    assert await post_event(cached, channel_id, provider, "evt-2") == 404


async def test_a_box_token_revoked_elsewhere_stops_working_within_the_cache_time(cached: Stack) -> None:
    headers = {"Authorization": f"Bearer {await new_api_key(cached.runtime, Role.admin)}"}
    wired = await wire_integration(cached, headers)
    bearer = await box_headers(cached, wired)
    url = f"/integration/box/1.0/channel/{wired.channel_id}/recipients/validation"
    body = {"endUserRecipients": [{"idOnExternalPlatform": "+15550100"}]}
    assert (await cached.relay.post(url, headers=bearer, json=body)).status_code == 200
    async with cached.runtime.sessions() as session, session.begin():
        await session.execute(delete(BoxToken))
    await asyncio.sleep(TTL + 0.1)
    assert (await cached.relay.post(url, headers=bearer, json=body)).status_code == 401
