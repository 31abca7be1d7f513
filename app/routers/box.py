"""The box: the endpoints CXone calls (docs/cxone-contract.md §2). Mounted under `BYOC_BOX_PATH`."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Annotated, Any
from urllib.parse import parse_qs, unquote

from fastapi import APIRouter, Depends, Request, Response

from app.cxone.client import iso_ms
from app.delivery.queue import inline_claims
from app.deps import BoxIntegration, RuntimeDep, SessionDep, box_body
from app.schemas.box import (
    LegacyReplyRequest,
    LegacyReplyResponse,
    OutboundMessageOut,
    OutboundRequest,
    OutboundResponse,
    RecipientsValidationRequest,
    SenderActionRequest,
    ThreadOut,
    TokenResponse,
)
from app.services import integrations, relay

router = APIRouter(tags=["box (called by CXone)"])


def _client_credentials(request: Request, body: bytes) -> dict[str, str | None]:
    """RFC 6749 lets the client send its credentials in the body (JSON or form) or as HTTP Basic."""
    fields: dict[str, Any] = {}
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if body.strip():
        if content_type == "application/x-www-form-urlencoded":
            fields = {key: values[0] for key, values in parse_qs(body.decode("utf-8", "replace")).items()}
        else:
            try:
                parsed = json.loads(body)
            except (ValueError, UnicodeDecodeError):
                raise integrations.oauth_error(400, "invalid_request", "the body is not valid JSON") from None
            if not isinstance(parsed, dict):
                raise integrations.oauth_error(400, "invalid_request", "the body must be a JSON object")
            fields = parsed
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "basic" and encoded:
        try:
            basic_id, _, basic_secret = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise integrations.oauth_error(401, "invalid_client", "malformed Basic credentials") from None
        fields.setdefault("client_id", unquote(basic_id))
        fields.setdefault("client_secret", unquote(basic_secret))
    return {
        key: (str(fields[key]) if fields.get(key) is not None else None)
        for key in ("grant_type", "client_id", "client_secret")
    }


@router.post("/1.0/token", response_model=TokenResponse, summary="Token for CXone (client credentials)")
async def token(
    request: Request, session: SessionDep, runtime: RuntimeDep, response: Response
) -> TokenResponse:
    fields = _client_credentials(request, await request.body())
    access_token, expires_in = await integrations.issue_box_token(
        session,
        grant_type=fields["grant_type"],
        client_id=fields["client_id"],
        client_secret=fields["client_secret"],
        ttl=runtime.settings.box_token_ttl_seconds,
    )
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return TokenResponse(access_token=access_token, expires_in=expires_in)


def _request_key(request: Request, body: OutboundRequest | LegacyReplyRequest) -> str | None:
    """What makes a retried CXone call recognisable: an Idempotency-Key header or an id in the body."""
    return request.headers.get("idempotency-key") or body.cxone_request_key


def _message_url(runtime: RuntimeDep, message_id: str) -> str:
    return f"{runtime.settings.public_url}/api/v1/messages/{message_id}"


@router.post(
    "/2.0/channel/{channel_id}/outbound",
    response_model=OutboundResponse,
    summary="Agent or bot reply, or proactive send (DFO 3.0 outbound)",
)
async def outbound(
    request: Request,
    channel_id: str,
    integration: BoxIntegration,
    body: Annotated[OutboundRequest, Depends(box_body(OutboundRequest))],
    runtime: RuntimeDep,
) -> OutboundResponse:
    channel = await runtime.config.box_channel(integration, channel_id)
    accepted = await runtime.accept_reply(relay.AgentReply(channel, body, _request_key(request, body)))
    return OutboundResponse(
        message=OutboundMessageOut(
            idOnExternalPlatform=accepted.message.id,
            createdAtWithMilliseconds=iso_ms(accepted.message.created_at),
            url=_message_url(runtime, accepted.message.id),
        ),
        thread=ThreadOut(idOnExternalPlatform=accepted.thread.external_id),
        recipients=accepted.recipients,
    )


@router.post(
    "/1.0/posts/{post_id}/messages",
    response_model=LegacyReplyResponse,
    summary="Agent or bot reply (legacy, when DFO 3.0 outbound is off)",
)
async def legacy_reply(
    request: Request,
    post_id: str,
    integration: BoxIntegration,
    body: Annotated[LegacyReplyRequest, Depends(box_body(LegacyReplyRequest))],
    runtime: RuntimeDep,
) -> LegacyReplyResponse:
    async with runtime.reads() as session:
        channel, thread = await relay.legacy_reply_thread(
            session, integration=integration, post_id=post_id, request=body
        )
    reply = relay.AgentReply(channel, body, _request_key(request, body), thread=thread)
    accepted = await runtime.accept_reply(reply)
    return LegacyReplyResponse(idOnExternalPlatform=accepted.message.id)


@router.post(
    "/1.0/channel/{channel_id}/thread/{thread_id:path}/sender-action",
    status_code=204,
    summary="Agent typing indicator",
)
async def sender_action(
    channel_id: str,
    thread_id: str,
    integration: BoxIntegration,
    body: Annotated[SenderActionRequest, Depends(box_body(SenderActionRequest))],
    session: SessionDep,
    runtime: RuntimeDep,
) -> Response:
    channel = await runtime.config.box_channel(integration, channel_id)
    runtime.claim_inline(session)
    deliveries = await relay.show_agent_typing(
        session,
        channel=channel,
        thread_external_id=thread_id,
        typing=body.senderAction.action == "isTypingOn",
        registry=runtime.registry,
        ttl_seconds=runtime.settings.typing_ttl_seconds,
    )
    await session.commit()
    await runtime.deliver_soon(
        deliveries, inline_claims(session), budget=runtime.settings.inline_delivery_budget_seconds
    )
    return Response(status_code=204)


@router.post("/1.0/channel/{channel_id}/recipients/validation", summary="Check recipients before a send")
async def validate_recipients(
    channel_id: str,
    integration: BoxIntegration,
    body: Annotated[RecipientsValidationRequest, Depends(box_body(RecipientsValidationRequest))],
    runtime: RuntimeDep,
) -> dict[str, Any]:
    recipients = body.all_recipients
    channel = await runtime.config.box_channel(integration, channel_id)
    relay.check_recipients(runtime.registry.get(channel.adapter), recipients)
    async with runtime.reads() as session:
        await relay.check_not_opted_out(session, channel, recipients)
    return {"status": "valid", "endUserRecipients": [r.model_dump(exclude_none=True) for r in recipients]}
