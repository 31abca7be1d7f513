"""Async client for CXone Digital (DFO 3.0) as used by a BYOC middleware (contract sections 3 and 5.2).

Strict in what it sends (typed request models, ``exclude_none``), liberal in what it reads (responses keep
unknown fields and tolerate missing ones). The caller owns the ``httpx.AsyncClient``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_serializer, field_validator
from pydantic.alias_generators import to_camel

from app.cxone.errors import DfoAuthError, DfoError, DfoTransportError, error_from_response

__all__ = [
    "Attachment",
    "Brand",
    "ChannelSpec",
    "ContactOptions",
    "ContactStatus",
    "CreatedMessage",
    "CustomField",
    "DfoChannel",
    "DfoClient",
    "DfoCredentials",
    "EndUserIdentity",
    "ExternalAttribute",
    "MessageContent",
    "MessageStatus",
    "MessageThread",
    "NewMessage",
    "OneTimeTokenInfo",
    "Recipient",
    "ReplyToMessage",
    "SenderAction",
    "TemporaryAttachment",
    "TextPayload",
    "User",
    "decode_jwt_claims",
    "iso_ms",
]

logger = logging.getLogger(__name__)

GLOBAL_ISSUER = "https://cxone.niceincontact.com"
DFO_PREFIX = "/dfo/3.0"

MessageStatus = Literal["delivered", "seen", "failed"]
SenderAction = Literal["isTypingOn", "isTypingOff"]
ContactStatus = Literal["closed", "escalated", "new", "open", "pending", "resolved", "trashed"]
MessageContentType = Literal["TEXT", "PLUGIN", "QUICK_REPLIES", "LIST_PICKER", "RICH_LINK", "ADAPTIVE_CARD"]


def iso_ms(dt: datetime) -> str:
    """ISO-8601 UTC with milliseconds and ``Z`` (the form CXone is known to accept); naive means UTC."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    else:
        dt = dt.astimezone(UTC)
    # Formatted by hand: strftime("%Y") does not zero-pad years < 1000 on every platform.
    return (
        f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}"
        f".{dt.microsecond // 1000:03d}Z"
    )


def decode_jwt_claims(token: str | None) -> dict[str, Any]:
    """Payload of a JWT WITHOUT verifying it: only used to read our own tenant id from CXone's id_token."""
    if not token or token.count(".") < 2:
        return {}
    segment = token.split(".")[1]
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        claims = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError):
        return {}
    return claims if isinstance(claims, dict) else {}


def _seg(value: str | int) -> str:
    """Percent-encode one path segment (ids may hold '/', '?', '#', spaces, '+' ...)."""
    text = str(value)
    if not text:
        raise ValueError("an id used in a DFO URL path must not be empty")
    if text in (".", ".."):
        return text.replace(".", "%2E")  # would otherwise be collapsed as a dot-segment
    return quote(text, safe="")


# --------------------------------------------------------------------------- request models (strict)


class _Outgoing(BaseModel):
    """What we send: unknown fields and type coercion are bugs on our side, so both are refused."""

    model_config = ConfigDict(
        alias_generator=to_camel, validate_by_name=True, validate_by_alias=True, extra="forbid", strict=True
    )

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class CustomField(_Outgoing):
    ident: str
    value: str


class ExternalAttribute(_Outgoing):
    key: str
    value: str


class MessageThread(_Outgoing):
    id_on_external_platform: str
    thread_name: str | None = None


class TextPayload(_Outgoing):
    text: str


class MessageContent(_Outgoing):
    type: MessageContentType = "TEXT"
    payload: TextPayload | dict[str, Any]
    fallback_text: str | None = None
    postback: str | None = None

    @classmethod
    def of_text(cls, text: str) -> MessageContent:
        return cls(type="TEXT", payload=TextPayload(text=text))


class EndUserIdentity(_Outgoing):
    id_on_external_platform: str
    first_name: str | None = None
    last_name: str | None = None
    nickname: str | None = None
    image: str | None = None
    custom_fields: list[CustomField] | None = None


class Attachment(_Outgoing):
    friendly_name: str
    url: str


class ReplyToMessage(_Outgoing):
    id_on_external_platform: str


class Recipient(_Outgoing):
    id_on_external_platform: str
    name: str | None = None
    is_primary: bool | None = None
    is_private: bool | None = None


class ContactOptions(_Outgoing):
    custom_fields: list[CustomField] | None = None
    status: ContactStatus | None = None
    skill_id: int | None = None


class NewMessage(_Outgoing):
    """DFO ``NewMessage`` (contract 3.4)."""

    id_on_external_platform: str
    direction: Literal["inbound", "outbound"] = "inbound"
    created_at_with_milliseconds: datetime
    thread: MessageThread
    message_content: MessageContent
    author_end_user_identity: EndUserIdentity
    url: str | None = None
    title: str | None = None
    attachments: list[Attachment] | None = None
    reply_to_message: ReplyToMessage | None = None
    is_reply_to_specific_message: bool | None = None
    recipients: list[Recipient] | None = None
    author_recipients: list[Recipient] | None = None
    contact: ContactOptions | None = None
    external_attributes: list[ExternalAttribute] | None = None
    deleted_on_external_platform: bool | None = None

    @field_serializer("created_at_with_milliseconds")
    def _ser_created(self, value: datetime) -> str:
        return iso_ms(value)


class ChannelSpec(_Outgoing):
    """Body of ``POST /channels`` (contract 3.1); only the first seven fields are required by DFO."""

    id: str
    id_on_external_platform: str
    channel_integration_id: str
    real_external_platform_id: str
    name: str
    is_private: bool
    has_tree_structure: bool
    has_reply: bool | None = None
    content_format: Literal["html", "plain"] | None = None
    has_ability_to_send_files: bool | None = None
    has_outbound_flow: bool | None = None
    has_manual_outbound_flow: bool | None = None
    has_outbound_templates: bool | None = None
    translation_group: str | None = None
    external_platform_avatar: str | None = None
    external_platform_icon: str | None = None
    owner_user_id: int | None = None
    is_live_chat: bool | None = None
    has_ability_to_like: bool | None = None
    has_ability_to_share: bool | None = None
    has_ability_to_delete: bool | None = None
    has_ability_to_tag: bool | None = None
    has_ability_to_hide: bool | None = None
    has_ability_to_change_from: bool | None = None
    has_ability_to_forward_message: bool | None = None
    has_ability_to_change_recipient: bool | None = None
    wysiwyg_enabled: bool | None = None
    is_automatic_signature_attached: bool | None = None
    is_case_based_storage: bool | None = None
    has_publishing: bool | None = None
    has_multiple_recipient: bool | None = None
    has_cc_and_bcc: bool | None = None
    has_visible_title: bool | None = None
    has_editable_title: bool | None = None
    has_visible_recipients: bool | None = None
    has_multiple_threads_per_end_user: bool | None = None
    has_post_as_placeholder: bool | None = None
    can_agent_invite_customers_to_contact: bool | None = None
    can_reply_to_any_message: bool | None = None


# --------------------------------------------------------------------------- response models (liberal)


class _Incoming(BaseModel):
    """What CXone sends back: keep unknown fields, coerce where harmless."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        extra="allow",
        coerce_numbers_to_str=True,
    )


class DfoChannel(_Incoming):
    id: str
    id_on_external_platform: str | None = None
    channel_integration_id: str | None = None
    real_external_platform_id: str | None = None
    name: str | None = None
    is_private: bool | None = None
    has_tree_structure: bool | None = None
    has_reply: bool | None = None
    has_outbound_flow: bool | None = None
    has_manual_outbound_flow: bool | None = None
    integration_box_identifier: str | None = None
    can_send_sender_actions: bool | None = None


class CreatedMessage(BaseModel):
    """Ids DFO assigned to an inbound message; keep ``consumer_contact_id`` and ``thread_id`` (the postId)."""

    model_config = ConfigDict(frozen=True)

    consumer_contact_id: str | None = None
    contact_id: str | None = None
    interaction_id: str | None = None
    contact_status: str | None = None
    thread_id: str | None = None
    thread_id_on_external_platform: str | None = None
    message_id: str | None = None
    message_id_on_external_platform: str | None = None
    raw: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def from_response(cls, body: Any) -> CreatedMessage:
        raw = body if isinstance(body, dict) else {}
        contact = _dict(raw.get("consumerContact")) or _dict(raw.get("contact"))
        message = _dict(raw.get("message"))
        return cls(
            consumer_contact_id=_opt_str(contact.get("id")),
            contact_id=_opt_str(contact.get("contactId")),
            interaction_id=_opt_str(contact.get("interactionId")),
            contact_status=_opt_str(contact.get("status")),
            thread_id=_opt_str(contact.get("threadId")) or _opt_str(message.get("threadId")),
            thread_id_on_external_platform=_opt_str(contact.get("threadIdOnExternalPlatform")),
            message_id=_opt_str(message.get("id")),
            message_id_on_external_platform=_opt_str(message.get("idOnExternalPlatform")),
            raw=raw,
        )


class TemporaryAttachment(_Incoming):
    id: str
    url: str
    expire_at: datetime | None = None

    @field_validator("expire_at", mode="before")
    @classmethod
    def _lenient_datetime(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                return datetime.fromisoformat(value)
            except ValueError:
                return None
        return value if isinstance(value, datetime | int | float) else None


class Brand(_Incoming):
    id: int | None = None
    friendly_name: str | None = None
    timezone: str | None = None
    brand_hash: str | None = None
    tenant_id: str | None = None
    business_unit_id: int | None = None


class User(_Incoming):
    id: int | None = None
    incontact_id: str | None = None
    first_name: str | None = None
    surname: str | None = None
    nickname: str | None = None
    login_username: str | None = None
    email_address: str | None = None


class OneTimeTokenInfo(_Incoming):
    brand: Brand
    user: User
    access_token: str


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _opt_str(value: Any) -> str | None:
    if value is None or isinstance(value, dict | list):
        return None
    return str(value)


def _items(body: Any) -> list[dict[str, Any]]:
    """Channel lists come bare or wrapped (``channels``/``data``/``items``...): accept any of them."""
    if isinstance(body, list):
        return [item for item in body if isinstance(item, dict)]
    if isinstance(body, dict):
        for key in ("channels", "data", "items", "results", "content"):
            value = body.get(key)
            if isinstance(value, list):
                return [item for item in value if isinstance(item, dict)]
            if isinstance(value, dict):
                nested = _items(value)
                if nested:
                    return nested
        for value in body.values():
            if isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
                return list(value)
    return []


_M = TypeVar("_M", bound=BaseModel)


def _parse(model: type[_M], data: Any, op: str) -> _M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise DfoError(f"CXone {op}: unexpected response shape ({exc.error_count()} problems)") from exc


def _json(response: httpx.Response) -> Any:
    if not response.content:
        return None
    try:
        return response.json()
    except (ValueError, UnicodeDecodeError):
        return None


# --------------------------------------------------------------------------- client


@dataclass(frozen=True)
class DfoCredentials:
    issuer_url: str = GLOBAL_ISSUER
    access_key_id: str | None = None
    access_key_secret: str | None = None
    client_id: str | None = None
    client_secret: str | None = None
    bearer_token: str | None = None
    api_host: str | None = None
    tenant_id: str | None = None

    def __repr__(self) -> str:  # never print secrets
        return (
            f"DfoCredentials(issuer_url={self.issuer_url!r}, access_key_id={self.access_key_id!r}, "
            f"api_host={self.api_host!r}, tenant_id={self.tenant_id!r}, "
            f"bearer_token={'set' if self.bearer_token else None})"
        )


@dataclass
class _Token:
    value: str
    refresh_at: float


class DfoClient:
    """One per CXone tenant; safe to share between concurrent tasks."""

    def __init__(
        self,
        credentials: DfoCredentials,
        *,
        http: httpx.AsyncClient,
        refresh_margin: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if credentials.bearer_token is None and not (
            credentials.access_key_id and credentials.access_key_secret
        ):
            raise ValueError("DfoCredentials need access_key_id and access_key_secret, or a bearer_token")
        self._creds = credentials
        self._http = http
        self._refresh_margin = refresh_margin
        self._clock = clock
        self._issuer = credentials.issuer_url.rstrip("/")
        self._tenant_id = credentials.tenant_id
        if self._tenant_id is None and credentials.bearer_token is not None:
            self._tenant_id = _opt_str(decode_jwt_claims(credentials.bearer_token).get("tenantId"))
        self._token: _Token | None = None
        self._token_endpoint: str | None = None
        self._dfo_base: str | None = (
            credentials.api_host.rstrip("/") + DFO_PREFIX if credentials.api_host else None
        )
        self._token_lock = asyncio.Lock()
        self._discovery_lock = asyncio.Lock()

    @property
    def tenant_id(self) -> str | None:
        """Known once given, or once the first token has been fetched."""
        return self._tenant_id

    # ----------------------------------------------------------------- auth & discovery

    async def access_token(self) -> str:
        """A bearer valid for at least ``refresh_margin`` seconds; one token request however many callers."""
        if self._creds.bearer_token is not None:
            return self._creds.bearer_token
        token = self._token
        if token is not None and self._clock() < token.refresh_at:
            return token.value
        async with self._token_lock:
            token = self._token
            if token is not None and self._clock() < token.refresh_at:
                return token.value
            token = await self._fetch_token()
            self._token = token
            return token.value

    def _drop_token(self, used: str) -> None:
        # Only drop the token that was refused: a concurrent caller may already have replaced it.
        if self._token is not None and self._token.value == used:
            self._token = None

    async def _discover_token_endpoint(self) -> str:
        if self._token_endpoint is None:
            url = f"{self._issuer}/.well-known/openid-configuration"
            response = await self._send("GET", url, op="openid-configuration")
            if not response.is_success:
                raise error_from_response(response.status_code, response.content, response.headers)
            endpoint = _dict(_json(response)).get("token_endpoint")
            if not isinstance(endpoint, str) or not endpoint:
                raise DfoAuthError("CXone openid-configuration has no token_endpoint")
            self._token_endpoint = endpoint
        return self._token_endpoint

    async def _fetch_token(self) -> _Token:
        endpoint = await self._discover_token_endpoint()
        creds = self._creds
        auth = httpx.BasicAuth(creds.client_id, creds.client_secret or "") if creds.client_id else None
        form = {
            "grant_type": "password",
            "username": creds.access_key_id or "",
            "password": creds.access_key_secret or "",
        }
        started = self._clock()
        response = await self._send("POST", endpoint, op="token", data=form, auth=auth)
        if not response.is_success:
            raise error_from_response(
                response.status_code, response.content, response.headers, token_endpoint=True
            )
        body = _dict(_json(response))
        access_token = body.get("access_token")
        if not isinstance(access_token, str) or not access_token:
            raise DfoAuthError("CXone token response has no access_token", status_code=response.status_code)
        try:
            expires_in = float(body.get("expires_in", 3600))
        except (TypeError, ValueError):
            expires_in = 3600.0
        expires_in = max(expires_in, 0.0)
        if self._creds.tenant_id is None:
            tenant = _opt_str(decode_jwt_claims(_opt_str(body.get("id_token"))).get("tenantId"))
            if tenant is None:
                tenant = _opt_str(decode_jwt_claims(access_token).get("tenantId"))
            if tenant is not None:
                self._tenant_id = tenant
        # A token shorter-lived than twice the margin would otherwise be refreshed on every call.
        margin = min(self._refresh_margin, expires_in / 2)
        logger.info("CXone token obtained (expires_in=%ss)", int(expires_in))
        return _Token(value=access_token, refresh_at=started + expires_in - margin)

    async def dfo_base_url(self) -> str:
        """``{api_endpoint}/dfo/3.0``, discovered from the tenant unless ``api_host`` was given."""
        if self._dfo_base is not None:
            return self._dfo_base
        async with self._discovery_lock:
            if self._dfo_base is not None:
                return self._dfo_base
            if self._tenant_id is None:
                await self.access_token()  # the id_token carries tenantId
            if self._tenant_id is None:
                raise DfoAuthError("cannot discover the CXone API host: tenantId unknown (set tenant_id)")
            url = f"{self._issuer}/.well-known/cxone-configuration"
            response = await self._send(
                "GET", url, op="cxone-configuration", params={"tenantId": self._tenant_id}
            )
            if not response.is_success:
                raise error_from_response(response.status_code, response.content, response.headers)
            api_endpoint = _dict(_json(response)).get("api_endpoint")
            if not isinstance(api_endpoint, str) or not api_endpoint:
                raise DfoError(
                    "CXone cxone-configuration has no api_endpoint", status_code=response.status_code
                )
            self._dfo_base = api_endpoint.rstrip("/") + DFO_PREFIX
            return self._dfo_base

    # ----------------------------------------------------------------- transport

    async def _send(
        self,
        method: str,
        url: str,
        *,
        op: str,
        json_body: Any = None,
        data: Mapping[str, str] | None = None,
        params: Mapping[str, str | int] | None = None,
        headers: Mapping[str, str] | None = None,
        auth: httpx.Auth | None = None,
    ) -> httpx.Response:
        try:
            response = await self._http.request(
                method,
                url,
                json=json_body,
                data=data,
                params=params,
                headers=headers,
                auth=auth if auth is not None else httpx.USE_CLIENT_DEFAULT,
            )
        except httpx.TransportError as exc:
            logger.warning("CXone %s: transport error %s", op, type(exc).__name__)
            raise DfoTransportError(f"CXone {op} failed: {type(exc).__name__}") from exc
        logger.debug("CXone %s -> %s", op, response.status_code)
        return response

    async def _call(
        self,
        method: str,
        path: str,
        *,
        op: str,
        json_body: Any = None,
        params: Mapping[str, str | int] | None = None,
    ) -> Any:
        """One DFO call with a single token refresh + retry on 401; returns the decoded JSON (or None)."""
        url = await self.dfo_base_url() + path
        token = await self.access_token()
        response = await self._send(
            method, url, op=op, json_body=json_body, params=params, headers=_bearer(token)
        )
        if response.status_code == 401 and self._creds.bearer_token is None:
            logger.info("CXone %s: 401, refreshing the token and retrying once", op)
            self._drop_token(token)
            token = await self.access_token()
            response = await self._send(
                method, url, op=op, json_body=json_body, params=params, headers=_bearer(token)
            )
        if not response.is_success:
            exc = error_from_response(response.status_code, response.content, response.headers)
            logger.warning("CXone %s failed: HTTP %s %s", op, response.status_code, type(exc).__name__)
            raise exc
        return _json(response)

    # ----------------------------------------------------------------- channels

    async def create_channel(self, spec: ChannelSpec) -> DfoChannel:
        """Create or update (DFO keys it by ``id``) a BYOC point of contact."""
        body = await self._call("POST", "/channels", op="create_channel", json_body=spec.to_wire())
        data = _dict(body)
        if "id" not in data and isinstance(data.get("channel"), dict):
            data = data["channel"]
        merged = {**spec.to_wire(), **data}  # DFO may answer with a subset; never lose what we set
        return _parse(DfoChannel, merged, "create_channel")

    async def list_channels(self, *, page: int | None = None, size: int | None = None) -> list[DfoChannel]:
        params: dict[str, str | int] = {}
        if page is not None:
            params["page"] = page
        if size is not None:
            params["size"] = size
        body = await self._call("GET", "/channels", op="list_channels", params=params or None)
        return [DfoChannel.model_validate(item) for item in _items(body) if "id" in item]

    async def delete_channel(self, channel_id: str) -> None:
        await self._call("DELETE", f"/channels/{_seg(channel_id)}", op="delete_channel")

    # ----------------------------------------------------------------- messages & threads

    async def create_message(self, channel_id: str, message: NewMessage) -> CreatedMessage:
        """Post an end-user message into DFO; DFO creates customer, thread and contact as needed."""
        body = await self._call(
            "POST", f"/channels/{_seg(channel_id)}/messages", op="create_message", json_body=message.to_wire()
        )
        return CreatedMessage.from_response(body)

    async def update_message_status(
        self,
        channel_id: str,
        message_id_on_external_platform: str,
        status: MessageStatus,
        updated_at: datetime,
        reason: str | None = None,
    ) -> None:
        payload: dict[str, Any] = {"status": status, "updatedAt": iso_ms(updated_at)}
        if reason is not None:
            payload["reason"] = reason
        path = f"/channels/{_seg(channel_id)}/messages/{_seg(message_id_on_external_platform)}/status"
        await self._call("PUT", path, op="update_message_status", json_body=payload)

    async def send_sender_action(
        self, channel_id: str, thread_id_on_external_platform: str, action: SenderAction
    ) -> None:
        path = f"/channels/{_seg(channel_id)}/threads/{_seg(thread_id_on_external_platform)}/sender-actions"
        await self._call("POST", path, op="send_sender_action", json_body={"action": action})

    async def update_thread(
        self, channel_id: str, thread_id_on_external_platform: str, *, can_add_more_messages: bool
    ) -> None:
        path = f"/channels/{_seg(channel_id)}/threads/{_seg(thread_id_on_external_platform)}"
        await self._call(
            "PUT", path, op="update_thread", json_body={"canAddMoreMessages": can_add_more_messages}
        )

    async def update_contact_status(
        self, contact_number: str | int, status: ContactStatus, *, updated_by_user_id: int | None = None
    ) -> None:
        payload: dict[str, Any] = {"status": status}
        if updated_by_user_id is not None:
            payload["updatedByUserId"] = updated_by_user_id
        await self._call(
            "PUT", f"/contacts/{_seg(contact_number)}/status", op="update_contact_status", json_body=payload
        )

    # ----------------------------------------------------------------- attachments & admin UI

    async def create_temporary_attachment(self, content: bytes, mime_type: str) -> TemporaryAttachment:
        payload = {"content": base64.b64encode(content).decode("ascii"), "mimeType": mime_type}
        body = await self._call(
            "POST", "/attachments/temporary", op="create_temporary_attachment", json_body=payload
        )
        return _parse(TemporaryAttachment, _dict(body), "create_temporary_attachment")

    async def verify_one_time_token(
        self, *, brand_id: int, user_id: int, token: str, purpose: str = "channel-integration"
    ) -> OneTimeTokenInfo:
        """Check the token CXone put in an action-URL query string.

        Always sent to OUR configured/discovered API host, never to a query-supplied ``apiHost``: a forged
        host could otherwise vouch for any caller.
        """
        payload = {"brandId": brand_id, "userId": user_id, "purpose": purpose, "token": token}
        body = await self._call(
            "POST", "/one-time-token/verification", op="verify_one_time_token", json_body=payload
        )
        return _parse(OneTimeTokenInfo, _dict(body), "verify_one_time_token")


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
