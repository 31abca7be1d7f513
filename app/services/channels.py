"""Channels: created in CXone through the Channel API with the integration id, then kept here."""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.adapters.base import CheckResult
from app.adapters.registry import AdapterRegistry
from app.cxone.client import ChannelSpec
from app.cxone.errors import DfoError, DfoNotFound
from app.errors import ApiError, not_found
from app.models import Channel, Integration, Message, Thread
from app.models.base import utcnow
from app.schemas.admin import ChannelCreate
from app.security import CredentialBox
from app.services.cxone import CxoneGateway
from app.services.integrations import get_integration


def cxone_failure(exc: DfoError) -> ApiError:
    return ApiError(
        502,
        "cxone_error",
        f"CXone refused the call: {exc.message}",
        details={"cxone_status": exc.status_code, "cxone_errors": exc.errors},
    )


def mint_channel_id() -> str:
    """A short prefix, one underscore, no further underscores: the shape NICE tooling splits on."""
    return f"byoc_{secrets.token_hex(12)}"


def channel_spec(channel: Channel, integration: Integration) -> ChannelSpec:
    assert integration.cxone_integration_id is not None
    return ChannelSpec(
        id=channel.id,
        id_on_external_platform=channel.id,
        channel_integration_id=integration.cxone_integration_id,
        real_external_platform_id="custom",
        name=channel.name,
        is_private=True,
        has_tree_structure=False,
        has_reply=True,
        content_format="plain",
        has_ability_to_send_files=True,
        has_outbound_flow=True,
        has_manual_outbound_flow=True,
    )


def channel_config(channel: Channel, credential_box: CredentialBox) -> dict[str, Any]:
    """What the adapter works with: the public settings plus the decrypted secrets."""
    config = dict(channel.config)
    if channel.secrets_sealed:
        config.update(credential_box.open(channel.secrets_sealed))
    return config


async def create_channel(
    session: AsyncSession,
    data: ChannelCreate,
    *,
    registry: AdapterRegistry,
    gateway: CxoneGateway,
    credential_box: CredentialBox,
    public_url: str,
) -> tuple[Channel, dict[str, str]]:
    """Returns the channel and its secrets, which are shown this once and stored encrypted."""
    integration = await get_integration(session, data.integration_id)
    if integration.cxone_integration_id is None:
        raise ApiError(
            409,
            "cxone_integration_id_missing",
            "CXone needs the BYOC Integration ID to create a channel. Copy it from CXone's list of "
            f"BYOC integrations and set it with PATCH /api/v1/integrations/{integration.id}.",
        )
    adapter = registry.for_new_channel(data.adapter)
    try:
        config = adapter.prepare_config(data.config)
    except ValueError as exc:
        raise ApiError(422, "invalid_channel_config", f"config: {exc}") from None
    secrets = {key: str(config.pop(key)) for key in adapter.secret_fields if config.get(key) is not None}
    channel = Channel(
        id=mint_channel_id(),
        integration_id=integration.id,
        name=data.name,
        adapter=data.adapter,
        config=config,
        secrets_sealed=credential_box.seal(secrets) if secrets else None,
    )
    session.add(channel)
    await session.flush()
    connect = getattr(adapter, "connect", None)  # optional: providers that must be told where we are
    if connect is not None:
        connected = await connect(config | secrets, f"{public_url}/webhooks/{adapter.name}/{channel.id}")
        if not connected.ok:
            raise ApiError(
                422, "provider_connect_failed", f"The {adapter.name} provider refused: {connected.detail}"
            )
    try:
        await gateway.client_for(integration).create_channel(channel_spec(channel, integration))
    except DfoError as exc:
        raise cxone_failure(exc) from exc
    return channel, secrets


async def get_channel(session: AsyncSession, channel_id: str, *, include_deleted: bool = True) -> Channel:
    channel = await session.get(Channel, channel_id)
    if channel is None or (channel.deleted_at is not None and not include_deleted):
        raise not_found("channel", channel_id)
    return channel


async def check_channel(
    session: AsyncSession, channel_id: str, *, registry: AdapterRegistry, credential_box: CredentialBox
) -> CheckResult:
    channel = await get_channel(session, channel_id, include_deleted=False)
    adapter = registry.get(channel.adapter)
    return await adapter.check(channel_config(channel, credential_box))


async def list_channels(session: AsyncSession, *, integration_id: str | None = None) -> list[Channel]:
    query = select(Channel).order_by(Channel.created_at)
    if integration_id is not None:
        query = query.where(Channel.integration_id == integration_id)
    return list(await session.scalars(query))


async def delete_channel(session: AsyncSession, channel_id: str, *, gateway: CxoneGateway) -> Channel:
    """Removed in CXone and closed here; its threads and messages stay readable."""
    channel = await get_channel(session, channel_id, include_deleted=False)
    integration = await get_integration(session, channel.integration_id)
    try:
        await gateway.client_for(integration).delete_channel(channel.id)
    except DfoNotFound:
        pass  # already gone in CXone: deleting is idempotent
    except DfoError as exc:
        raise cxone_failure(exc) from exc
    channel.deleted_at = utcnow()
    await session.flush()
    return channel


async def list_threads(session: AsyncSession, channel_id: str) -> list[Thread]:
    await get_channel(session, channel_id)
    query = select(Thread).where(Thread.channel_id == channel_id).order_by(Thread.last_message_at.desc())
    return list(await session.scalars(query))


async def list_thread_messages(session: AsyncSession, thread_id: str) -> list[Message]:
    if await session.get(Thread, thread_id) is None:
        raise not_found("thread", thread_id)
    query = select(Message).where(Message.thread_id == thread_id).order_by(Message.created_at, Message.id)
    return list(await session.scalars(query))


async def get_message(session: AsyncSession, message_id: str) -> Message:
    message = await session.get(Message, message_id)
    if message is None:
        raise not_found("message", message_id)
    return message
