"""The JSON admin API for technical teams: integrations, channels, threads, messages."""

from __future__ import annotations

from dataclasses import asdict
from typing import TypeVar

from fastapi import APIRouter, Response
from pydantic import BaseModel

from app.deps import Admin, Idempotent, Operator, RuntimeDep, SessionDep, Viewer
from app.models import Channel, Integration, Message, Thread
from app.schemas.admin import (
    AdapterOut,
    ChannelCheck,
    ChannelCreate,
    ChannelCreated,
    ChannelOut,
    IntegrationCreate,
    IntegrationOut,
    IntegrationUpdate,
    IntegrationWithSecret,
    MessageOut,
    Page,
    ThreadOut,
)
from app.services import channels, integrations
from app.services.idempotency import IdempotentRequest

router = APIRouter(prefix="/api/v1", tags=["admin API"])
Shape = TypeVar("Shape", bound=BaseModel)


def _remembered(idempotent: IdempotentRequest, status_code: int, response: Shape) -> Shape:
    idempotent.remember(status_code, response.model_dump(mode="json"))
    return response


def _integration_out(
    integration: Integration, runtime: RuntimeDep, client_secret: str | None = None
) -> IntegrationOut | IntegrationWithSecret:
    fields = {
        "id": integration.id,
        "name": integration.name,
        "cxone_integration_id": integration.cxone_integration_id,
        "cxone_issuer_url": integration.cxone_issuer_url,
        "cxone_api_host": integration.cxone_api_host,
        "cxone_auth_kind": integration.cxone_auth_kind,
        "cxone_form": integrations.cxone_form(integration, runtime.settings, client_secret),
        "created_at": integration.created_at,
        "updated_at": integration.updated_at,
    }
    if client_secret is not None:
        return IntegrationWithSecret(**fields)
    return IntegrationOut(**fields)


@router.post("/integrations", status_code=201, response_model=IntegrationWithSecret)
async def create_integration(
    data: IntegrationCreate, session: SessionDep, runtime: RuntimeDep, _: Admin, idempotent: Idempotent
) -> IntegrationOut | IntegrationWithSecret:
    integration, secret = await integrations.create_integration(
        session, data, settings=runtime.settings, credential_box=runtime.credential_box
    )
    return _remembered(idempotent, 201, _integration_out(integration, runtime, secret))


@router.get("/integrations", response_model=Page[IntegrationOut])
async def list_integrations(session: SessionDep, runtime: RuntimeDep, _: Viewer) -> Page[IntegrationOut]:
    items = await integrations.list_integrations(session)
    return Page[IntegrationOut](items=[_integration_out(i, runtime) for i in items])


@router.get("/integrations/{integration_id}", response_model=IntegrationOut)
async def get_integration(
    integration_id: str, session: SessionDep, runtime: RuntimeDep, _: Viewer
) -> IntegrationOut | IntegrationWithSecret:
    return _integration_out(await integrations.get_integration(session, integration_id), runtime)


@router.patch("/integrations/{integration_id}", response_model=IntegrationOut)
async def update_integration(
    integration_id: str, data: IntegrationUpdate, session: SessionDep, runtime: RuntimeDep, _: Admin
) -> IntegrationOut | IntegrationWithSecret:
    integration = await integrations.update_integration(
        session, integration_id, data, credential_box=runtime.credential_box
    )
    return _integration_out(integration, runtime)


@router.post("/integrations/{integration_id}/rotate-secret", response_model=IntegrationWithSecret)
async def rotate_secret(
    integration_id: str, session: SessionDep, runtime: RuntimeDep, _: Admin, idempotent: Idempotent
) -> IntegrationOut | IntegrationWithSecret:
    integration, secret = await integrations.rotate_box_secret(session, integration_id)
    return _remembered(idempotent, 200, _integration_out(integration, runtime, secret))


def _channel_out(channel: Channel) -> ChannelOut:
    return ChannelOut.model_validate(channel, from_attributes=True)


@router.post("/channels", status_code=201, response_model=ChannelCreated)
async def create_channel(
    data: ChannelCreate, session: SessionDep, runtime: RuntimeDep, _: Operator, idempotent: Idempotent
) -> ChannelCreated:
    """Creates the channel in CXone, then here. Generated secrets (e.g. a webhook signing secret) are
    in this answer only."""
    channel, secrets = await channels.create_channel(
        session,
        data,
        registry=runtime.registry,
        gateway=runtime.gateway,
        credential_box=runtime.credential_box,
        public_url=runtime.settings.public_url,
    )
    return _remembered(idempotent, 201, ChannelCreated(**_channel_out(channel).model_dump(), secrets=secrets))


@router.post("/channels/{channel_id}/check", response_model=ChannelCheck)
async def check_channel(
    channel_id: str, session: SessionDep, runtime: RuntimeDep, _: Operator
) -> ChannelCheck:
    """Tries the channel's credentials and address against its provider; no customer is messaged."""
    result = await channels.check_channel(
        session, channel_id, registry=runtime.registry, credential_box=runtime.credential_box
    )
    return ChannelCheck(ok=result.ok, detail=result.detail)


@router.get("/adapters", response_model=Page[AdapterOut])
async def list_adapters(runtime: RuntimeDep, _: Viewer) -> Page[AdapterOut]:
    """The installed channel adapters, with their capabilities and config schema."""
    items = []
    for name in runtime.registry.names():
        adapter = runtime.registry.get(name)
        items.append(
            AdapterOut(
                name=name,
                capabilities=asdict(adapter.capabilities),
                config_schema=adapter.config_model.model_json_schema(),
                secret_fields=list(adapter.secret_fields),
            )
        )
    return Page[AdapterOut](items=items)


@router.get("/channels", response_model=Page[ChannelOut])
async def list_channels(
    session: SessionDep, _: Viewer, integration_id: str | None = None
) -> Page[ChannelOut]:
    items = await channels.list_channels(session, integration_id=integration_id)
    return Page[ChannelOut](items=[_channel_out(c) for c in items])


@router.get("/channels/{channel_id}", response_model=ChannelOut)
async def get_channel(channel_id: str, session: SessionDep, _: Viewer) -> ChannelOut:
    return _channel_out(await channels.get_channel(session, channel_id))


@router.delete("/channels/{channel_id}", status_code=204)
async def delete_channel(channel_id: str, session: SessionDep, runtime: RuntimeDep, _: Operator) -> Response:
    await channels.delete_channel(session, channel_id, gateway=runtime.gateway)
    return Response(status_code=204)


def _thread_out(thread: Thread) -> ThreadOut:
    return ThreadOut.model_validate(thread, from_attributes=True)


def _message_out(message: Message) -> MessageOut:
    return MessageOut.model_validate(message, from_attributes=True)


@router.get("/channels/{channel_id}/threads", response_model=Page[ThreadOut])
async def list_threads(channel_id: str, session: SessionDep, _: Viewer) -> Page[ThreadOut]:
    items = await channels.list_threads(session, channel_id)
    return Page[ThreadOut](items=[_thread_out(t) for t in items])


@router.get("/threads/{thread_id}/messages", response_model=Page[MessageOut])
async def list_thread_messages(thread_id: str, session: SessionDep, _: Viewer) -> Page[MessageOut]:
    items = await channels.list_thread_messages(session, thread_id)
    return Page[MessageOut](items=[_message_out(m) for m in items])


@router.get("/messages/{message_id}", response_model=MessageOut)
async def get_message(message_id: str, session: SessionDep, _: Viewer) -> MessageOut:
    return _message_out(await channels.get_message(session, message_id))
