"""Where providers call us: `/webhooks/{adapter}/{channel_id}`. The signature is checked on the raw bytes
before anything is written; events already seen are acknowledged without a second effect."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel

from app.adapters.base import InboundRequest, SignatureError
from app.deps import RuntimeDep
from app.errors import ApiError, not_found
from app.models import Channel
from app.runtime import Runtime
from app.services.channels import channel_config

router = APIRouter(tags=["webhooks (called by providers)"])


class WebhookAccepted(BaseModel):
    messages: int
    duplicates: int
    echoes: int
    other_events: int


async def _provider_channel(runtime: Runtime, adapter_name: str, channel_id: str) -> Channel:
    """The live channel this URL names; a URL with another adapter's name is as unknown as a missing one."""
    channel, _ = await runtime.config.live_channel(channel_id)
    if channel.adapter != adapter_name:
        raise not_found("channel", channel_id)
    return channel


@router.get("/webhooks/{adapter_name}/{channel_id}", response_class=PlainTextResponse)
async def provider_subscription(
    adapter_name: str, channel_id: str, request: Request, runtime: RuntimeDep
) -> PlainTextResponse:
    """A provider's check that the webhook is ours before it subscribes it (Meta's hub.challenge)."""
    channel = await _provider_channel(runtime, adapter_name, channel_id)
    subscribe = getattr(runtime.registry.get(channel.adapter), "subscribe", None)
    if subscribe is None:
        raise ApiError(
            405, "no_subscription_check", f"The {adapter_name} adapter takes webhooks by POST only."
        )
    try:
        challenge = subscribe(dict(request.query_params), channel_config(channel, runtime.credential_box))
    except SignatureError as exc:
        raise ApiError(403, "invalid_verify_token", f"The subscription check failed: {exc}") from None
    return PlainTextResponse(challenge)


@router.post("/webhooks/{adapter_name}/{channel_id}", response_model=WebhookAccepted)
async def provider_webhook(
    adapter_name: str, channel_id: str, request: Request, runtime: RuntimeDep
) -> WebhookAccepted:
    channel = await _provider_channel(runtime, adapter_name, channel_id)  # before reading a large body
    raw = await _capped_body(request, runtime.settings.max_webhook_body_bytes)
    adapter = runtime.registry.get(channel.adapter)
    config = channel_config(channel, runtime.credential_box)
    query = f"?{request.url.query}" if request.url.query else ""
    inbound = InboundRequest(
        raw_body=raw,
        headers={name.lower(): value for name, value in request.headers.items()},
        url=f"{runtime.settings.public_url}{request.url.path}{query}",
    )
    try:
        adapter.verify(inbound, config)
    except SignatureError as exc:
        raise ApiError(401, "invalid_signature", f"The webhook signature does not check out: {exc}") from None
    try:
        events = adapter.parse(inbound, config)
    except ValueError as exc:
        raise ApiError(422, "invalid_event", str(exc)) from None
    stored = await runtime.receive_events(channel, events)
    duplicates = sum(1 for a in stored.accepted if a.duplicate)
    return WebhookAccepted(
        messages=len(stored.accepted) - duplicates,
        duplicates=duplicates,
        echoes=stored.echoes,
        other_events=len(events) - len(stored.accepted) - stored.echoes,
    )


async def _capped_body(request: Request, limit: int) -> bytes:
    """The raw body, read no further than `limit` bytes: a larger call is refused before it fills memory."""
    announced = request.headers.get("content-length", "")
    too_large = ApiError(
        413, "payload_too_large", f"The webhook body is over {limit} bytes (BYOC_MAX_WEBHOOK_BODY_BYTES)."
    )
    if announced.isdigit() and int(announced) > limit:
        raise too_large
    chunks: list[bytes] = []
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)
