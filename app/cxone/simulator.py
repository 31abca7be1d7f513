"""An in-memory CXone (auth + discovery + DFO 3.0) for tests and the local demo.

It plays both sides of contract sections 2, 3 and 5: it answers the DFO calls our box makes (validating
them the way DFO does, with ``ApiErrorCollection`` errors) and it calls our box the way DFO does when an
agent replies (first without a token, 401, JSON client-credentials token call, one retry with ``Bearer``).
Everything it receives or sends is kept in ``calls`` with secrets redacted, so tests can assert on the exact
wire traffic.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic.alias_generators import to_camel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.cxone.client import iso_ms

__all__ = [
    "AgentReplyResult",
    "BoxCallResult",
    "CxoneSimulator",
    "RecordedCall",
    "SimContact",
    "SimIntegration",
    "SimMessage",
    "SimThread",
    "SimulatorError",
]

DFO = "/dfo/3.0"
REDACTED = "[redacted]"
DEFAULT_ACCESS_KEYS = {"demo-access-key": "demo-access-secret"}
# Keys whose values are credentials: never kept in `calls`, which /_sim/calls shows to anyone.
_SECRET_KEYS = frozenset(
    {
        "client_secret",
        "clientSecret",
        "password",
        "access_token",
        "accessToken",
        "id_token",
        "refresh_token",
        "token",
    }
)
_SENSITIVE_HEADERS = frozenset({"authorization", "cookie", "set-cookie"})
_CLOSED_CONTACT_STATES = frozenset({"closed", "resolved", "trashed"})
_CONTACT_STATES = ("closed", "escalated", "new", "open", "pending", "resolved", "trashed")
_CONTENT_TYPES = ("TEXT", "PLUGIN", "QUICK_REPLIES", "LIST_PICKER", "RICH_LINK", "ADAPTIVE_CARD")
_OTT_PURPOSES = ("login", "channel-integration", "custom-component-login")
_OTT_LIFETIME = 300.0
_ATTACHMENT_LIFETIME = 3600.0
_CHANNEL_REQUIRED_STR = (
    "id",
    "idOnExternalPlatform",
    "channelIntegrationId",
    "realExternalPlatformId",
    "name",
)
_CHANNEL_REQUIRED_BOOL = ("isPrivate", "hasTreeStructure")


class SimulatorError(Exception):
    """A control call (agent reply, typing...) that CXone itself would refuse; ``status`` is the HTTP code."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class RecordedCall:
    """One HTTP exchange: ``direction`` "in" = received by the simulator, "out" = made by it to a box."""

    direction: Literal["in", "out"]
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    json: Any = None
    form: dict[str, str] | None = None
    status: int | None = None
    url: str | None = None
    authorization_present: bool = False
    at: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SimMessage:
    id: str
    channel_id: str
    thread_id: str
    thread_id_on_external_platform: str
    direction: Literal["inbound", "outbound"]
    text: str | None
    id_on_external_platform: str | None
    author_end_user_id: str | None = None
    recipient_end_user_id: str | None = None
    contact_number: str | None = None
    created_at: str = ""
    message_content: dict[str, Any] = field(default_factory=dict)
    attachments: list[dict[str, Any]] = field(default_factory=list)
    status: str | None = None
    status_history: list[dict[str, Any]] = field(default_factory=list)

    def to_wire(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "idOnExternalPlatform": self.id_on_external_platform,
            "threadId": self.thread_id,
            "postId": self.thread_id,
            "threadIdOnExternalPlatform": self.thread_id_on_external_platform,
            "channelId": self.channel_id,
            "direction": self.direction,
            "messageContent": self.message_content,
            "attachments": self.attachments,
            "createdAt": self.created_at,
            "authorEndUserIdentity": (
                {"idOnExternalPlatform": self.author_end_user_id} if self.author_end_user_id else None
            ),
            "deliveryStatus": self.status,
        }


@dataclass
class SimContact:
    id: str
    contact_id: str
    interaction_id: str
    channel_id: str
    thread_id: str
    thread_id_on_external_platform: str
    status: str
    direction: Literal["inbound", "outbound"]
    created_at: str
    status_updated_at: str

    def to_wire(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "contactId": self.contact_id,
            "interactionId": self.interaction_id,
            "threadId": self.thread_id,
            "threadIdOnExternalPlatform": self.thread_id_on_external_platform,
            "channelId": self.channel_id,
            "status": self.status,
            "direction": self.direction,
            "routingQueueId": "sim-routing-queue",
            "createdAt": self.created_at,
            "statusUpdatedAt": self.status_updated_at,
        }


@dataclass
class SimThread:
    id: str
    channel_id: str
    id_on_external_platform: str
    thread_name: str | None = None
    can_add_more_messages: bool = True
    end_user: dict[str, Any] | None = None
    contact_number: str | None = None
    messages: list[SimMessage] = field(default_factory=list)
    sender_actions: list[str] = field(default_factory=list)

    def to_wire(self, *, with_messages: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "idOnExternalPlatform": self.id_on_external_platform,
            "channelId": self.channel_id,
            "threadName": self.thread_name,
            "canAddMoreMessages": self.can_add_more_messages,
            "contactNumber": self.contact_number,
        }
        if with_messages:
            data["messages"] = [m.to_wire() for m in self.messages]
        return data


@dataclass
class SimIntegration:
    id: str
    name: str
    box_url: str
    authorization_url: str
    client_id: str
    client_secret: str
    use_outbound_api: bool = True
    action_url: str | None = None
    reconnect_url: str | None = None
    remove_url: str | None = None
    cached_token: str | None = field(default=None, repr=False)
    cached_token_expires_at: float = 0.0

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "boxUrl": self.box_url,
            "authorizationUrl": self.authorization_url,
            "clientId": self.client_id,
            "useOutboundApi": self.use_outbound_api,
            "actionUrl": self.action_url,
            "reconnectUrl": self.reconnect_url,
            "removeUrl": self.remove_url,
        }


@dataclass
class BoxCallResult:
    """What the box answered (``status`` None: it could not be reached, see ``error``)."""

    status: int | None
    body: Any = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "body": self.body, "error": self.error}


@dataclass
class AgentReplyResult(BoxCallResult):
    message: SimMessage | None = None

    @property
    def ok(self) -> bool:
        return self.message is not None

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data["message"] = self.message.to_wire() if self.message else None
        return data


@dataclass
class _OneTimeToken:
    brand_id: int
    user_id: int
    purpose: str
    expires_at: float
    used: bool = False


@dataclass
class _Fault:
    method: str
    pattern: re.Pattern[str]
    status: int
    remaining: int
    headers: dict[str, str]
    body: dict[str, Any] | None


# --------------------------------------------------------------------------- helpers


def _redact(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: (REDACTED if k in _SECRET_KEYS else _redact(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(v) for v in value]
    return value


def _redact_headers(headers: list[tuple[str, str]]) -> tuple[dict[str, str], bool]:
    out: dict[str, str] = {}
    has_auth = False
    for name, value in headers:
        key = name.lower()
        if key == "authorization":
            has_auth = True
            scheme = value.split(" ", 1)[0] if " " in value else ""
            out[key] = f"{scheme} {REDACTED}".strip()
        elif key in _SENSITIVE_HEADERS:
            out[key] = REDACTED
        else:
            out[key] = value
    return out, has_auth


def _as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _api_error(
    status: int, message: str, *, field_name: str | None = None, code: str = "InvalidRequest"
) -> JSONResponse:
    return _api_errors(status, [(field_name, message, code)])


def _api_errors(status: int, errors: list[tuple[str | None, str, str]]) -> JSONResponse:
    items: list[dict[str, Any]] = []
    for field_name, message, code in errors:
        item: dict[str, Any] = {"message": message, "errorCode": code}
        if field_name is not None:
            item = {"field": field_name, **item}
        items.append(item)
    headers = {"WWW-Authenticate": 'Bearer error="invalid_token"'} if status == 401 else None
    return JSONResponse({"errors": items, "uid": str(uuid.uuid4())}, status_code=status, headers=headers)


def _parse_iso(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _display_name(identity: dict[str, Any]) -> str:
    parts = [identity.get("firstName"), identity.get("lastName")]
    name = " ".join(p for p in parts if isinstance(p, str) and p)
    nickname = identity.get("nickname")
    return (
        name or (nickname if isinstance(nickname, str) else "") or str(identity.get("idOnExternalPlatform"))
    )


def _text_of(content: dict[str, Any]) -> str | None:
    payload = content.get("payload")
    if isinstance(payload, dict) and isinstance(payload.get("text"), str):
        return str(payload["text"])
    fallback = content.get("fallbackText")
    return fallback if isinstance(fallback, str) else None


def _body_json(response: httpx.Response) -> Any:
    if not response.content:
        return None
    try:
        return response.json()
    except (ValueError, UnicodeDecodeError):
        return response.text[:2000]


class _Check:
    """Collects DFO-style validation errors (``field`` is the JSON path)."""

    def __init__(self) -> None:
        self.errors: list[tuple[str | None, str, str]] = []

    def add(self, field_name: str, message: str) -> None:
        self.errors.append((field_name, message, "InvalidArgument"))

    def obj(self, parent: dict[str, Any], key: str, path: str, *, required: bool = True) -> dict[str, Any]:
        value = parent.get(key)
        if value is None:
            if required:
                self.add(path, "This value should not be blank.")
            return {}
        if not isinstance(value, dict):
            self.add(path, "This value should be of type object.")
            return {}
        return value

    def string(self, parent: dict[str, Any], key: str, path: str, *, required: bool = True) -> str | None:
        value = parent.get(key)
        if value is None or value == "":
            if required:
                self.add(path, "This value should not be blank.")
            return None
        if not isinstance(value, str):
            self.add(path, "This value should be of type string.")
            return None
        return value

    def boolean(self, parent: dict[str, Any], key: str, path: str, *, required: bool = True) -> bool | None:
        value = parent.get(key)
        if value is None:
            if required:
                self.add(path, "This value should not be null.")
            return None
        if not isinstance(value, bool):
            self.add(path, "This value should be of type bool.")
            return None
        return value

    def choice(
        self, parent: dict[str, Any], key: str, path: str, choices: tuple[str, ...], *, required: bool = True
    ) -> str | None:
        value = self.string(parent, key, path, required=required)
        if value is not None and value not in choices:
            self.add(path, f"The value you selected is not a valid choice ({', '.join(choices)}).")
            return None
        return value

    def list_of_objects(
        self, parent: dict[str, Any], key: str, path: str, required_keys: tuple[str, ...]
    ) -> list[dict[str, Any]]:
        value = parent.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.add(path, "This value should be of type array.")
            return []
        items: list[dict[str, Any]] = []
        for index, item in enumerate(value):
            if not isinstance(item, dict):
                self.add(f"{path}[{index}]", "This value should be of type object.")
                continue
            for required in required_keys:
                self.string(item, required, f"{path}[{index}].{required}")
            items.append(item)
        return items


def _arg(data: dict[str, Any], name: str) -> Any:
    """Control endpoints take snake_case (Python kwarg names) or camelCase."""
    return data[name] if name in data else data.get(to_camel(name))


# --------------------------------------------------------------------------- the simulator


class CxoneSimulator:
    """A faithful in-memory CXone; mount ``app`` or wire it to a client with ``httpx.ASGITransport``."""

    def __init__(
        self,
        *,
        public_url: str,
        tenant_id: str = "11111111-2222-3333-4444-555555555555",
        access_keys: dict[str, str] | None = None,
        token_lifetime: int = 3600,
        box_http: httpx.AsyncClient | None = None,
        brand_id: int = 1234,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.public_url = public_url.rstrip("/")
        self.tenant_id = tenant_id
        self.access_keys = dict(access_keys) if access_keys is not None else dict(DEFAULT_ACCESS_KEYS)
        self.token_lifetime = token_lifetime
        self.brand_id = brand_id
        self._clock = clock
        self._box_http = box_http
        self._owns_box_http = False
        self._signing_key = secrets.token_bytes(32)

        self.calls: list[RecordedCall] = []
        self.channels: dict[str, dict[str, Any]] = {}
        self.integrations: dict[str, SimIntegration] = {}
        self.threads: dict[tuple[str, str], SimThread] = {}
        self.contacts: dict[str, SimContact] = {}
        self.attachments: dict[str, tuple[bytes, str, float]] = {}
        self.attachment_downloads = 0
        self._messages: dict[tuple[str, str], SimMessage] = {}  # (channel id, idOnExternalPlatform)
        self._tokens: dict[str, float] = {}  # live bearer -> expiry (clock)
        self._ott: dict[str, _OneTimeToken] = {}
        self._faults: list[_Fault] = []
        self._contact_seq = 1_000_000

        self.fastapi = self._build_app()
        self.app: ASGIApp = self._asgi

    # ----------------------------------------------------------------- test hooks

    def fail_next(
        self,
        method: str,
        path_regex: str,
        status: int,
        *,
        times: int = 1,
        headers: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
    ) -> None:
        """Answer the next ``times`` matching requests with ``status`` (``re.search`` on the decoded path).

        Applies before authentication and routing, like a gateway in front of CXone. ``method`` "*" = any.
        """
        self._faults.append(
            _Fault(method.upper(), re.compile(path_regex), status, times, dict(headers or {}), body)
        )

    def expire_tokens(self) -> None:
        """Invalidate every issued bearer, so the next DFO call gets a 401."""
        self._tokens.clear()

    def issue_access_token(self) -> str:
        """A live DFO bearer, as handed out by the token endpoint (for fixed-bearer tests)."""
        token = secrets.token_urlsafe(32)
        self._tokens[token] = self._clock() + self.token_lifetime
        return token

    def calls_to(
        self, path_regex: str, *, method: str | None = None, direction: Literal["in", "out"] | None = None
    ) -> list[RecordedCall]:
        pattern = re.compile(path_regex)
        return [
            c
            for c in self.calls
            if pattern.search(c.path)
            and (method is None or c.method == method.upper())
            and (direction is None or c.direction == direction)
        ]

    def thread(self, channel_id: str, thread_id_on_external_platform: str) -> SimThread | None:
        return self.threads.get((channel_id, thread_id_on_external_platform))

    def thread_messages(self, channel_id: str, thread_id_on_external_platform: str) -> list[SimMessage]:
        thread = self.threads.get((channel_id, thread_id_on_external_platform))
        return list(thread.messages) if thread else []

    async def aclose(self) -> None:
        """Close the box client if the simulator created it."""
        if self._owns_box_http and self._box_http is not None:
            await self._box_http.aclose()
            self._box_http = None
            self._owns_box_http = False

    # ----------------------------------------------------------------- ASGI wrapper: record + faults

    async def _asgi(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.fastapi(scope, receive, send)
            return
        scope = self._keep_encoded_path(scope)
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        raw_body = b"".join(chunks)
        root = scope.get("root_path", "")
        route = scope["path"][len(root) :] if root and scope["path"].startswith(root) else scope["path"]
        path = unquote(route)
        method = scope["method"].upper()

        call: RecordedCall | None = None
        if not (path.startswith("/_sim/") and method == "GET"):  # read-only views would drown the log
            call = self._record_incoming(scope, method, path, raw_body)
            self.calls.append(call)

        fault = self._take_fault(method, path)
        if fault is not None:
            body = fault.body or {
                "errors": [
                    {"message": f"Simulated failure (HTTP {fault.status})", "errorCode": "SimulatedFault"}
                ],
                "uid": str(uuid.uuid4()),
            }
            if call is not None:
                call.status = fault.status
            await JSONResponse(body, status_code=fault.status, headers=fault.headers)(scope, receive, send)
            return

        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": raw_body, "more_body": False}
            return await receive()

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start" and call is not None:
                call.status = int(message["status"])
            await send(message)

        await self.fastapi(scope, replay, capture)

    @staticmethod
    def _keep_encoded_path(scope: Scope) -> Scope:
        """Route on the raw path so a percent-encoded '/' inside an id stays inside its segment."""
        raw = scope.get("raw_path")
        if not raw:
            return scope
        encoded = raw.decode("utf-8", errors="replace")
        root = scope.get("root_path", "")
        if root and not encoded.startswith(root):
            return scope
        return {**scope, "path": encoded}

    def _record_incoming(self, scope: Scope, method: str, path: str, raw_body: bytes) -> RecordedCall:
        headers, has_auth = _redact_headers(
            [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope.get("headers", [])]
        )
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True))
        json_body: Any = None
        form: dict[str, str] | None = None
        content_type = headers.get("content-type", "")
        if raw_body:
            if "application/x-www-form-urlencoded" in content_type:
                parsed = dict(parse_qsl(raw_body.decode("utf-8", errors="replace"), keep_blank_values=True))
                form = {k: (REDACTED if k in _SECRET_KEYS else v) for k, v in parsed.items()}
            else:
                try:
                    json_body = _redact(json.loads(raw_body))
                except (ValueError, UnicodeDecodeError, RecursionError):
                    json_body = None
        return RecordedCall(
            direction="in",
            method=method,
            path=path,
            query=query,
            headers=headers,
            json=json_body,
            form=form,
            authorization_present=has_auth,
            at=self._clock(),
        )

    def _take_fault(self, method: str, path: str) -> _Fault | None:
        for fault in self._faults:
            if fault.remaining > 0 and fault.method in ("*", method) and fault.pattern.search(path):
                fault.remaining -= 1
                if fault.remaining == 0:
                    self._faults.remove(fault)
                return fault
        return None

    # ----------------------------------------------------------------- app

    def _build_app(self) -> FastAPI:
        app = FastAPI(title="CXone simulator", docs_url=None, redoc_url=None, openapi_url=None)

        async def http_error(request: Request, exc: Exception) -> Response:
            status = exc.status_code if isinstance(exc, StarletteHTTPException) else 500
            detail = exc.detail if isinstance(exc, StarletteHTTPException) else "Internal error"
            return _api_error(status, str(detail), code="NotFound" if status == 404 else "HttpError")

        app.add_exception_handler(StarletteHTTPException, http_error)
        r = app.add_api_route
        r("/.well-known/openid-configuration", self._openid_configuration, methods=["GET"])
        r("/.well-known/cxone-configuration", self._cxone_configuration, methods=["GET"])
        r("/auth/token", self._auth_token, methods=["POST"])
        r(f"{DFO}/channels", self._create_channel, methods=["POST"])
        r(f"{DFO}/channels", self._list_channels, methods=["GET"])
        r(f"{DFO}/channels/{{channel_id}}", self._delete_channel, methods=["DELETE"])
        r(f"{DFO}/channels/{{channel_id}}/messages", self._create_message, methods=["POST"])
        r(
            f"{DFO}/channels/{{channel_id}}/messages/{{message_id}}/status",
            self._message_status,
            methods=["PUT"],
        )
        r(f"{DFO}/channels/{{channel_id}}/threads/{{thread_id}}", self._update_thread, methods=["PUT"])
        r(
            f"{DFO}/channels/{{channel_id}}/threads/{{thread_id}}/sender-actions",
            self._sender_action,
            methods=["POST"],
        )
        r(f"{DFO}/contacts/{{contact_number}}/status", self._contact_status, methods=["PUT"])
        r(f"{DFO}/attachments/temporary", self._temporary_attachment, methods=["POST"])
        r(f"{DFO}/one-time-token/verification", self._verify_ott, methods=["POST"])
        r("/_sim/byoc-integrations", self._http_register_integration, methods=["POST"])
        r("/_sim/byoc-integrations", self._http_list_integrations, methods=["GET"])
        r("/_sim/agent-replies", self._http_agent_reply, methods=["POST"])
        r("/_sim/sender-actions", self._http_typing, methods=["POST"])
        r("/_sim/recipient-validations", self._http_validate_recipients, methods=["POST"])
        r("/_sim/one-time-tokens", self._http_issue_ott, methods=["POST"])
        r("/_sim/expire-tokens", self._http_expire_tokens, methods=["POST"])
        r("/_sim/calls", self._http_calls, methods=["GET"])
        r("/_sim/channels", self._http_channels, methods=["GET"])
        r("/_sim/threads", self._http_threads, methods=["GET"])
        r("/_sim/attachments/{attachment_id}", self._http_attachment, methods=["GET"])
        return app

    # ----------------------------------------------------------------- auth & discovery

    async def _openid_configuration(self) -> Response:
        base = self.public_url
        return JSONResponse(
            {
                "issuer": base,
                "authorization_endpoint": f"{base}/auth/authorize",
                "token_endpoint": f"{base}/auth/token",
                "jwks_uri": f"{base}/.well-known/jwks",
                "grant_types_supported": ["password", "client_credentials", "authorization_code"],
                "response_types_supported": ["code", "id_token", "token"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
                "id_token_signing_alg_values_supported": ["HS256"],
                "subject_types_supported": ["public"],
            }
        )

    async def _cxone_configuration(self, request: Request) -> Response:
        tenant = request.query_params.get("tenantId")
        if not tenant:
            return _api_error(400, "tenantId is required", field_name="tenantId")
        if tenant != self.tenant_id:
            return _api_error(404, "Tenant not found", field_name="tenantId", code="NotFound")
        base = self.public_url
        return JSONResponse(
            {
                "private": False,
                "area": "sim",
                "cluster": "sim1",
                "domain": urlsplit(base).netloc,
                "acdDomain": urlsplit(base).netloc,
                "uhDomain": urlsplit(base).netloc,
                "ui_endpoint": base,
                "auth_endpoint": base,
                "api_endpoint": base,
                "tenantId": self.tenant_id,
            }
        )

    async def _auth_token(self, request: Request) -> Response:
        raw = (await request.body()).decode("utf-8", errors="replace")
        form = dict(parse_qsl(raw, keep_blank_values=True))
        grant = form.get("grant_type")
        if grant != "password":
            return JSONResponse(
                {
                    "error": "unsupported_grant_type",
                    "error_description": "Only the password grant is supported",
                },
                status_code=400,
            )
        username, password = form.get("username"), form.get("password")
        if not username or not password:
            return JSONResponse(
                {"error": "invalid_request", "error_description": "username and password are required"},
                status_code=400,
            )
        expected = self.access_keys.get(username)
        if expected is None or not hmac.compare_digest(expected.encode(), password.encode()):
            return JSONResponse(
                {"error": "invalid_grant", "error_description": "Invalid access key or secret"},
                status_code=401,
            )
        now = self._clock()
        access_token = self.issue_access_token()
        claims = {
            "iss": self.public_url,
            "sub": "user:" + hashlib.sha256(username.encode()).hexdigest()[:16],
            "aud": "byoc-relay",
            "iat": int(now),
            "exp": int(now + self.token_lifetime),
            "tenantId": self.tenant_id,
            "name": "API user",
        }
        return JSONResponse(
            {
                "access_token": access_token,
                "token_type": "Bearer",
                "expires_in": self.token_lifetime,
                "id_token": self._jwt(claims),
                "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
            },
            headers={"Cache-Control": "no-store"},
        )

    def _jwt(self, claims: dict[str, Any]) -> str:
        header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
        payload = _b64url(json.dumps(claims, separators=(",", ":")).encode())
        signature = hmac.new(self._signing_key, f"{header}.{payload}".encode(), hashlib.sha256).digest()
        return f"{header}.{payload}.{_b64url(signature)}"

    def _authorized(self, request: Request) -> bool:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            return False
        expires_at = self._tokens.get(value.strip())
        return expires_at is not None and self._clock() < expires_at

    @staticmethod
    def _unauthorized() -> JSONResponse:
        return _api_error(401, "Unauthorized: missing, invalid or expired bearer token", code="Unauthorized")

    @staticmethod
    async def _json_object(request: Request) -> dict[str, Any] | JSONResponse:
        raw = await request.body()
        try:
            data = json.loads(raw) if raw else None
        except (ValueError, UnicodeDecodeError, RecursionError):
            return _api_error(400, "Request body is not valid JSON", code="InvalidRequestBody")
        if not isinstance(data, dict):
            return _api_error(400, "Request body must be a JSON object", code="InvalidRequestBody")
        return data

    async def _guarded(self, request: Request) -> dict[str, Any] | JSONResponse:
        """Auth then JSON body, in DFO's order."""
        if not self._authorized(request):
            return self._unauthorized()
        return await self._json_object(request)

    # ----------------------------------------------------------------- channels

    async def _create_channel(self, request: Request) -> Response:
        data = await self._guarded(request)
        if isinstance(data, JSONResponse):
            return data
        check = _Check()
        for key in _CHANNEL_REQUIRED_STR:
            check.string(data, key, key)
        for key in _CHANNEL_REQUIRED_BOOL:
            check.boolean(data, key, key)
        for key, value in data.items():
            if (
                key.startswith(("has", "is", "can")) or key == "wysiwygEnabled"
            ) and key not in _CHANNEL_REQUIRED_BOOL:
                if value is not None and not isinstance(value, bool):
                    check.add(key, "This value should be of type bool.")
        check.choice(data, "contentFormat", "contentFormat", ("html", "plain"), required=False)
        if check.errors:
            return _api_errors(400, check.errors)
        integration_id = str(data["channelIntegrationId"])
        if integration_id not in self.integrations:
            return _api_error(
                400,
                "Channel integration not found",
                field_name="channelIntegrationId",
                code="ChannelIntegrationNotFound",
            )
        channel_id = str(data["id"])
        now = iso_ms(datetime.now(UTC))
        existing = self.channels.get(channel_id)
        channel = {
            **(existing or {}),
            **{k: v for k, v in data.items() if v is not None},
            "integrationBoxIdentifier": integration_id,
            "canSendSenderActions": True,
            "isActive": True,
            "createdAt": existing["createdAt"] if existing else now,
            "updatedAt": now,
        }
        self.channels[channel_id] = channel
        return JSONResponse(channel, status_code=200)

    async def _list_channels(self, request: Request) -> Response:
        if not self._authorized(request):
            return self._unauthorized()
        channels = list(self.channels.values())
        size_raw, page_raw = request.query_params.get("size"), request.query_params.get("page")
        if size_raw is not None or page_raw is not None:
            try:
                size = int(size_raw) if size_raw is not None else 25
                page = int(page_raw) if page_raw is not None else 1
            except ValueError:
                return _api_error(400, "page and size must be integers", field_name="page")
            if size < 1 or page < 1:
                return _api_error(400, "page and size must be positive", field_name="size")
            channels = channels[(page - 1) * size : page * size]
        return JSONResponse(channels)

    async def _delete_channel(self, request: Request, channel_id: str) -> Response:
        if not self._authorized(request):
            return self._unauthorized()
        if self.channels.pop(unquote(channel_id), None) is None:
            return _api_error(404, "Channel not found", field_name="channelId", code="NotFound")
        return Response(status_code=204)

    # ----------------------------------------------------------------- messages

    async def _create_message(self, request: Request, channel_id: str) -> Response:
        if not self._authorized(request):
            return self._unauthorized()
        channel_id = unquote(channel_id)
        if channel_id not in self.channels:
            return _api_error(404, "Channel not found", field_name="channelId", code="NotFound")
        data = await self._json_object(request)
        if isinstance(data, JSONResponse):
            return data
        check = _Check()
        message_id = check.string(data, "idOnExternalPlatform", "idOnExternalPlatform")
        direction = check.choice(data, "direction", "direction", ("inbound", "outbound"))
        created = check.string(data, "createdAtWithMilliseconds", "createdAtWithMilliseconds")
        if created is not None and _parse_iso(created) is None:
            check.add("createdAtWithMilliseconds", "This value is not a valid datetime.")
        thread_obj = check.obj(data, "thread", "thread")
        thread_ext = check.string(thread_obj, "idOnExternalPlatform", "thread.idOnExternalPlatform")
        if thread_obj:
            check.string(thread_obj, "threadName", "thread.threadName", required=False)
        content = check.obj(data, "messageContent", "messageContent")
        content_type = (
            check.choice(content, "type", "messageContent.type", _CONTENT_TYPES) if content else None
        )
        if content_type == "TEXT":
            payload = check.obj(content, "payload", "messageContent.payload")
            if payload:
                check.string(payload, "text", "messageContent.payload.text")
        author = check.obj(data, "authorEndUserIdentity", "authorEndUserIdentity")
        if author:
            check.string(author, "idOnExternalPlatform", "authorEndUserIdentity.idOnExternalPlatform")
        attachments = check.list_of_objects(data, "attachments", "attachments", ("friendlyName", "url"))
        recipients = check.list_of_objects(data, "recipients", "recipients", ("idOnExternalPlatform",))
        if check.errors or message_id is None or thread_ext is None or direction is None:
            return _api_errors(400, check.errors)

        duplicate = self._messages.get((channel_id, message_id))
        if duplicate is not None:
            contact = self.contacts.get(duplicate.contact_number or "")
            return JSONResponse(
                {"consumerContact": contact.to_wire() if contact else None, "message": duplicate.to_wire()}
            )

        thread = self._thread_for(channel_id, thread_ext, thread_obj.get("threadName"))
        if direction == "inbound":
            thread.end_user = dict(author)
        contact = self._open_contact(thread, "inbound" if direction == "inbound" else "outbound")
        message = SimMessage(
            id=str(uuid.uuid4()),
            channel_id=channel_id,
            thread_id=thread.id,
            thread_id_on_external_platform=thread_ext,
            direction="inbound" if direction == "inbound" else "outbound",
            text=_text_of(content),
            id_on_external_platform=message_id,
            author_end_user_id=str(author.get("idOnExternalPlatform")) if direction == "inbound" else None,
            recipient_end_user_id=(
                str(recipients[0].get("idOnExternalPlatform"))
                if direction == "outbound" and recipients
                else None
            ),
            contact_number=contact.id,
            created_at=str(created),
            message_content=content,
            attachments=attachments,
        )
        thread.messages.append(message)
        self._messages[(channel_id, message_id)] = message
        return JSONResponse({"consumerContact": contact.to_wire(), "message": message.to_wire()})

    def _thread_for(self, channel_id: str, thread_ext: str, thread_name: Any = None) -> SimThread:
        thread = self.threads.get((channel_id, thread_ext))
        if thread is None:
            thread = SimThread(
                id=str(uuid.uuid4()), channel_id=channel_id, id_on_external_platform=thread_ext
            )
            self.threads[(channel_id, thread_ext)] = thread
        if isinstance(thread_name, str) and thread_name:
            thread.thread_name = thread_name
        return thread

    def _open_contact(self, thread: SimThread, direction: Literal["inbound", "outbound"]) -> SimContact:
        """One contact per thread while it is open; a closed one is followed by a fresh contact."""
        current = self.contacts.get(thread.contact_number or "")
        if current is not None and current.status not in _CLOSED_CONTACT_STATES:
            return current
        self._contact_seq += 1
        now = iso_ms(datetime.now(UTC))
        contact = SimContact(
            id=str(self._contact_seq),
            contact_id=str(500_000_000 + self._contact_seq),
            interaction_id=str(uuid.uuid4()),
            channel_id=thread.channel_id,
            thread_id=thread.id,
            thread_id_on_external_platform=thread.id_on_external_platform,
            status="new",
            direction=direction,
            created_at=now,
            status_updated_at=now,
        )
        self.contacts[contact.id] = contact
        thread.contact_number = contact.id
        return contact

    async def _message_status(self, request: Request, channel_id: str, message_id: str) -> Response:
        if not self._authorized(request):
            return self._unauthorized()
        channel_id, message_id = unquote(channel_id), unquote(message_id)
        if channel_id not in self.channels:
            return _api_error(404, "Channel not found", field_name="channelId", code="NotFound")
        message = self._messages.get((channel_id, message_id))
        if message is None:
            return _api_error(
                404, "Message not found", field_name="messageIdOnExternalPlatform", code="NotFound"
            )
        data = await self._json_object(request)
        if isinstance(data, JSONResponse):
            return data
        check = _Check()
        status = check.choice(data, "status", "status", ("delivered", "seen", "failed"))
        updated_at = check.string(data, "updatedAt", "updatedAt")
        if updated_at is not None and _parse_iso(updated_at) is None:
            check.add("updatedAt", "This value is not a valid datetime.")
        reason = check.string(data, "reason", "reason", required=False)
        if check.errors or status is None:
            return _api_errors(400, check.errors)
        message.status = status
        entry: dict[str, Any] = {"status": status, "updatedAt": updated_at}
        if reason is not None:
            entry["reason"] = reason
        message.status_history.append(entry)
        return JSONResponse({"message": message.to_wire()})

    async def _update_thread(self, request: Request, channel_id: str, thread_id: str) -> Response:
        if not self._authorized(request):
            return self._unauthorized()
        thread = self.threads.get((unquote(channel_id), unquote(thread_id)))
        if unquote(channel_id) not in self.channels:
            return _api_error(404, "Channel not found", field_name="channelId", code="NotFound")
        if thread is None:
            return _api_error(
                404, "Thread not found", field_name="threadIdOnExternalPlatform", code="NotFound"
            )
        data = await self._json_object(request)
        if isinstance(data, JSONResponse):
            return data
        check = _Check()
        value = check.boolean(data, "canAddMoreMessages", "canAddMoreMessages")
        if check.errors or value is None:
            return _api_errors(400, check.errors)
        thread.can_add_more_messages = value
        return JSONResponse(thread.to_wire())

    async def _sender_action(self, request: Request, channel_id: str, thread_id: str) -> Response:
        if not self._authorized(request):
            return self._unauthorized()
        if unquote(channel_id) not in self.channels:
            return _api_error(404, "Channel not found", field_name="channelId", code="NotFound")
        thread = self.threads.get((unquote(channel_id), unquote(thread_id)))
        if thread is None:
            return _api_error(
                404, "Thread not found", field_name="threadIdOnExternalPlatform", code="NotFound"
            )
        data = await self._json_object(request)
        if isinstance(data, JSONResponse):
            return data
        check = _Check()
        action = check.choice(data, "action", "action", ("isTypingOn", "isTypingOff"))
        if check.errors or action is None:
            return _api_errors(400, check.errors)
        thread.sender_actions.append(action)
        return Response(status_code=204)

    async def _contact_status(self, request: Request, contact_number: str) -> Response:
        if not self._authorized(request):
            return self._unauthorized()
        contact = self.contacts.get(unquote(contact_number))
        if contact is None:
            return _api_error(404, "Contact not found", field_name="contactNumber", code="NotFound")
        data = await self._json_object(request)
        if isinstance(data, JSONResponse):
            return data
        check = _Check()
        status = check.choice(data, "status", "status", _CONTACT_STATES)
        user_id = data.get("updatedByUserId")
        if user_id is not None and (not isinstance(user_id, int) or isinstance(user_id, bool)):
            check.add("updatedByUserId", "This value should be of type int.")
        if check.errors or status is None:
            return _api_errors(400, check.errors)
        contact.status = status
        contact.status_updated_at = iso_ms(datetime.now(UTC))
        return JSONResponse(contact.to_wire())

    async def _temporary_attachment(self, request: Request) -> Response:
        data = await self._guarded(request)
        if isinstance(data, JSONResponse):
            return data
        check = _Check()
        content = check.string(data, "content", "content")
        mime_type = check.string(data, "mimeType", "mimeType")
        blob = b""
        if content is not None:
            try:
                blob = base64.b64decode(content, validate=True)
            except (binascii.Error, ValueError):
                check.add("content", "This value is not valid base64.")
        if check.errors or mime_type is None:
            return _api_errors(400, check.errors)
        attachment_id = str(uuid.uuid4())
        expires_at = self._clock() + _ATTACHMENT_LIFETIME
        self.attachments[attachment_id] = (blob, mime_type, expires_at)
        return JSONResponse(
            {
                "id": attachment_id,
                "url": f"{self.public_url}/_sim/attachments/{attachment_id}",
                "expireAt": iso_ms(datetime.now(UTC) + timedelta(seconds=_ATTACHMENT_LIFETIME)),
            }
        )

    def host_file(self, content: bytes, mime_type: str) -> str:
        """A file an agent attaches: CXone hands the middleware a short-lived link to it."""
        attachment_id = str(uuid.uuid4())
        self.attachments[attachment_id] = (content, mime_type, self._clock() + _ATTACHMENT_LIFETIME)
        return f"{self.public_url}/_sim/attachments/{attachment_id}"

    def attachment_at(self, url: str) -> tuple[bytes, str] | None:
        """The file behind one of this simulator's attachment links, as the agent would open it."""
        found = self.attachments.get(unquote(url.rsplit("/", 1)[-1]))
        return None if found is None else (found[0], found[1])

    # ----------------------------------------------------------------- one-time tokens

    def issue_one_time_token(self, *, brand_id: int, user_id: int) -> str:
        """What CXone puts in the action-URL query string; valid once, for ``channel-integration``."""
        token = secrets.token_urlsafe(24)
        self._ott[token] = _OneTimeToken(
            brand_id, user_id, "channel-integration", self._clock() + _OTT_LIFETIME
        )
        return token

    async def _verify_ott(self, request: Request) -> Response:
        # The public sample calls this without a bearer (the one-time token is the credential); a bearer, when
        # sent, must still be live.
        if request.headers.get("authorization") and not self._authorized(request):
            return self._unauthorized()
        data = await self._json_object(request)
        if isinstance(data, JSONResponse):
            return data
        check = _Check()
        for key in ("brandId", "userId"):
            value = data.get(key)
            if value is None:
                check.add(key, "This value should not be blank.")
            elif not isinstance(value, int) or isinstance(value, bool):
                check.add(key, "This value should be of type int.")
        token = check.string(data, "token", "token")
        purpose = check.choice(data, "purpose", "purpose", _OTT_PURPOSES)
        if check.errors or token is None:
            return _api_errors(400, check.errors)
        record = self._ott.get(token)
        if (
            record is None
            or record.used
            or self._clock() >= record.expires_at
            or record.brand_id != data["brandId"]
            or record.user_id != data["userId"]
            or record.purpose != purpose
        ):
            return _api_error(401, "One-time token is invalid, expired or already used", code="InvalidToken")
        record.used = True
        return JSONResponse(
            {
                "brand": self._brand(record.brand_id),
                "user": self._agent_user(record.user_id),
                "accessToken": self.issue_access_token(),
            }
        )

    def _brand(self, brand_id: int | None = None) -> dict[str, Any]:
        bid = self.brand_id if brand_id is None else brand_id
        return {
            "id": bid,
            "friendlyName": "Simulated Brand",
            "timezone": "UTC",
            "brandHash": hashlib.sha256(f"{self.tenant_id}:{bid}".encode()).hexdigest()[:12],
            "tenantId": self.tenant_id,
            "businessUnitId": 4_600_000 + bid,
        }

    @staticmethod
    def _agent_user(user_id: int = 2001) -> dict[str, Any]:
        return {
            "id": user_id,
            "incontactId": str(uuid.UUID(int=user_id)),
            "emailAddress": f"agent{user_id}@sim.invalid",
            "loginUsername": f"agent{user_id}@sim.invalid",
            "firstName": "Sim",
            "surname": "Agent",
            "nickname": "Sim Agent",
            "isBotUser": False,
            "isSurveyUser": False,
        }

    # ----------------------------------------------------------------- acting as CXone toward the box

    def register_byoc_integration(
        self,
        *,
        name: str,
        box_url: str,
        authorization_url: str,
        client_id: str,
        client_secret: str,
        use_outbound_api: bool = True,
        action_url: str | None = None,
        reconnect_url: str | None = None,
        remove_url: str | None = None,
    ) -> str:
        """The admin's "Add BYOC" form; returns the generated Integration ID."""
        integration_id = str(uuid.uuid4())
        self.integrations[integration_id] = SimIntegration(
            id=integration_id,
            name=name,
            box_url=box_url.rstrip("/"),
            authorization_url=authorization_url,
            client_id=client_id,
            client_secret=client_secret,
            use_outbound_api=use_outbound_api,
            action_url=action_url,
            reconnect_url=reconnect_url,
            remove_url=remove_url,
        )
        return integration_id

    def _integration_for(self, channel_id: str) -> tuple[dict[str, Any], SimIntegration]:
        channel = self.channels.get(channel_id)
        if channel is None:
            raise SimulatorError(404, "Channel not found")
        integration = self.integrations.get(str(channel.get("channelIntegrationId")))
        if integration is None:
            raise SimulatorError(409, "The channel's BYOC integration is not registered")
        return channel, integration

    def _box(self) -> httpx.AsyncClient:
        if self._box_http is None:
            self._box_http = httpx.AsyncClient(timeout=10.0)
            self._owns_box_http = True
        return self._box_http

    async def _post_to_box(self, url: str, body: dict[str, Any], bearer: str | None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
        split = urlsplit(url)
        recorded_headers, has_auth = _redact_headers([("content-type", "application/json"), *headers.items()])
        call = RecordedCall(
            direction="out",
            method="POST",
            path=unquote(split.path),
            query=dict(parse_qsl(split.query, keep_blank_values=True)),
            headers=recorded_headers,
            json=_redact(body),
            url=url,
            authorization_present=has_auth,
            at=self._clock(),
        )
        self.calls.append(call)
        response = await self._box().post(url, json=body, headers=headers)
        call.status = response.status_code
        return response

    async def _box_token(self, integration: SimIntegration) -> str | None:
        """Client-credentials call to the Authorization URL, JSON body, as CXone does (contract 2.1)."""
        body = {
            "grant_type": "client_credentials",
            "client_id": integration.client_id,
            "client_secret": integration.client_secret,
        }
        response = await self._post_to_box(integration.authorization_url, body, None)
        if not response.is_success:
            return None
        data = _body_json(response)
        token = data.get("access_token") if isinstance(data, dict) else None
        if not isinstance(token, str) or not token:
            return None
        try:
            lifetime = float(data.get("expires_in", 3600)) if isinstance(data, dict) else 3600.0
        except (TypeError, ValueError):
            lifetime = 3600.0
        integration.cached_token = token
        integration.cached_token_expires_at = self._clock() + lifetime
        return token

    async def _call_box(self, integration: SimIntegration, path: str, body: dict[str, Any]) -> BoxCallResult:
        """POST to the box with the cached bearer (none at first); on 401 fetch a token and retry once."""
        url = integration.box_url + path
        token = integration.cached_token
        if token is not None and self._clock() >= integration.cached_token_expires_at:
            token = None
        try:
            response = await self._post_to_box(url, body, token)
            if response.status_code == 401:
                integration.cached_token = None
                token = await self._box_token(integration)
                if token is None:
                    return BoxCallResult(401, _body_json(response), "the box's Authorization URL refused us")
                response = await self._post_to_box(url, body, token)
        except httpx.HTTPError as exc:
            return BoxCallResult(None, None, f"box unreachable: {type(exc).__name__}")
        return BoxCallResult(response.status_code, _body_json(response))

    async def send_agent_reply(
        self,
        *,
        channel_id: str,
        text: str,
        thread_id_on_external_platform: str | None = None,
        recipients: list[dict[str, Any]] | None = None,
        attachments: list[dict[str, Any]] | None = None,
    ) -> AgentReplyResult:
        """What DFO does when an agent replies: call the box's reply endpoint and keep what it answered."""
        _, integration = self._integration_for(channel_id)
        thread: SimThread | None = None
        if thread_id_on_external_platform is not None:
            thread = self.threads.get((channel_id, thread_id_on_external_platform))
            if thread is None:
                raise SimulatorError(404, "Thread not found")
        if recipients is None:
            if thread is None or thread.end_user is None:
                raise SimulatorError(400, "recipients are required to start a new conversation")
            recipients = [
                {
                    "idOnExternalPlatform": thread.end_user.get("idOnExternalPlatform"),
                    "name": _display_name(thread.end_user),
                }
            ]
        content = {"type": "TEXT", "payload": {"text": text}}
        attachment_list = list(attachments or [])
        thread_ref = {"idOnExternalPlatform": thread.id_on_external_platform} if thread else {}
        if integration.use_outbound_api:
            path = f"/2.0/channel/{quote(channel_id, safe='')}/outbound"
            body: dict[str, Any] = {
                "brand": self._brand(),
                "thread": thread_ref,
                "messageContent": content,
                "attachments": attachment_list,
                "endUserRecipients": recipients,
            }
        else:
            if thread is None:
                raise SimulatorError(400, "the legacy reply API can only answer in an existing thread")
            path = f"/1.0/posts/{quote(thread.id, safe='')}/messages"
            body = {
                "brand": self._brand(),
                "post": {"id": thread.id, "idOnExternalPlatform": thread.id_on_external_platform},
                "thread": thread_ref,
                "messageContent": content,
                "recipients": recipients,
                "endUserRecipients": recipients,
                "attachments": attachment_list,
            }
        answer = await self._call_box(integration, path, body)
        result = AgentReplyResult(answer.status, answer.body, answer.error)
        if answer.status is None or not 200 <= answer.status < 300:
            return result
        data = answer.body if isinstance(answer.body, dict) else {}
        nested = _as_dict(data.get("message"))
        top_id, nested_id = data.get("idOnExternalPlatform"), nested.get("idOnExternalPlatform")
        message_id = (nested_id or top_id) if integration.use_outbound_api else (top_id or nested_id)
        if not isinstance(message_id, str | int) or message_id == "":
            result.error = "the box answered 2xx without the message idOnExternalPlatform"
            return result
        if thread is None:
            answered = _as_dict(data.get("thread"))
            thread_ext = answered.get("idOnExternalPlatform")
            if not isinstance(thread_ext, str) or not thread_ext:
                result.error = "the box started a conversation without returning thread.idOnExternalPlatform"
                return result
            thread = self._thread_for(channel_id, thread_ext)
            if thread.end_user is None and recipients:
                thread.end_user = {"idOnExternalPlatform": recipients[0].get("idOnExternalPlatform")}
        contact = self._open_contact(thread, "outbound")
        message = SimMessage(
            id=str(uuid.uuid4()),
            channel_id=channel_id,
            thread_id=thread.id,
            thread_id_on_external_platform=thread.id_on_external_platform,
            direction="outbound",
            text=text,
            id_on_external_platform=str(message_id),
            recipient_end_user_id=str(recipients[0].get("idOnExternalPlatform")) if recipients else None,
            contact_number=contact.id,
            created_at=iso_ms(datetime.now(UTC)),
            message_content=content,
            attachments=attachment_list,
        )
        thread.messages.append(message)
        self._messages[(channel_id, str(message_id))] = message
        result.message = message
        return result

    async def send_typing(
        self, channel_id: str, thread_id_on_external_platform: str, on: bool
    ) -> BoxCallResult:
        """The agent's typing indicator, relayed to the box (contract 2.4)."""
        _, integration = self._integration_for(channel_id)
        if (channel_id, thread_id_on_external_platform) not in self.threads:
            raise SimulatorError(404, "Thread not found")
        path = (
            f"/1.0/channel/{quote(channel_id, safe='')}/thread/"
            f"{quote(thread_id_on_external_platform, safe='')}/sender-action"
        )
        body = {
            "brand": self._brand(),
            "senderAction": {"action": "isTypingOn" if on else "isTypingOff"},
            "authorUser": self._agent_user(),
        }
        return await self._call_box(integration, path, body)

    async def validate_recipients(
        self, channel_id: str, recipients: list[dict[str, Any]]
    ) -> tuple[int | None, Any]:
        """Manual-outbound recipient check (contract 2.5)."""
        _, integration = self._integration_for(channel_id)
        path = f"/1.0/channel/{quote(channel_id, safe='')}/recipients/validation"
        answer = await self._call_box(integration, path, {"endUserRecipients": recipients})
        return answer.status, answer.body

    # ----------------------------------------------------------------- /_sim HTTP control surface

    @staticmethod
    def _sim_error(exc: SimulatorError) -> JSONResponse:
        return _api_error(exc.status, exc.message, code="SimulatorError")

    async def _http_register_integration(self, request: Request) -> Response:
        data = await self._json_object(request)
        if isinstance(data, JSONResponse):
            return data
        values = {
            k: _arg(data, k) for k in ("name", "box_url", "authorization_url", "client_id", "client_secret")
        }
        missing = [
            (k, "This value should not be blank.", "InvalidArgument") for k, v in values.items() if not v
        ]
        if missing:
            return _api_errors(400, [(f, m, c) for f, m, c in missing])
        optional = {k: _arg(data, k) for k in ("action_url", "reconnect_url", "remove_url")}
        use_outbound = _arg(data, "use_outbound_api")
        integration_id = self.register_byoc_integration(
            name=str(values["name"]),
            box_url=str(values["box_url"]),
            authorization_url=str(values["authorization_url"]),
            client_id=str(values["client_id"]),
            client_secret=str(values["client_secret"]),
            use_outbound_api=True if use_outbound is None else bool(use_outbound),
            action_url=optional["action_url"],
            reconnect_url=optional["reconnect_url"],
            remove_url=optional["remove_url"],
        )
        return JSONResponse({"integrationId": integration_id, "id": integration_id}, status_code=201)

    async def _http_list_integrations(self) -> Response:
        return JSONResponse([i.public() for i in self.integrations.values()])

    async def _http_agent_reply(self, request: Request) -> Response:
        data = await self._json_object(request)
        if isinstance(data, JSONResponse):
            return data
        channel_id, text = _arg(data, "channel_id"), _arg(data, "text")
        if not isinstance(channel_id, str) or not isinstance(text, str):
            return _api_error(400, "channel_id and text are required strings", field_name="channel_id")
        try:
            result = await self.send_agent_reply(
                channel_id=channel_id,
                text=text,
                thread_id_on_external_platform=_arg(data, "thread_id_on_external_platform"),
                recipients=_arg(data, "recipients"),
                attachments=_arg(data, "attachments"),
            )
        except SimulatorError as exc:
            return self._sim_error(exc)
        return JSONResponse(result.to_dict(), status_code=200 if result.ok else 502)

    async def _http_typing(self, request: Request) -> Response:
        data = await self._json_object(request)
        if isinstance(data, JSONResponse):
            return data
        channel_id, thread_id = _arg(data, "channel_id"), _arg(data, "thread_id_on_external_platform")
        if not isinstance(channel_id, str) or not isinstance(thread_id, str):
            return _api_error(
                400, "channel_id and thread_id_on_external_platform are required", field_name="channel_id"
            )
        try:
            result = await self.send_typing(channel_id, thread_id, bool(_arg(data, "on")))
        except SimulatorError as exc:
            return self._sim_error(exc)
        return JSONResponse(result.to_dict())

    async def _http_validate_recipients(self, request: Request) -> Response:
        data = await self._json_object(request)
        if isinstance(data, JSONResponse):
            return data
        channel_id, recipients = _arg(data, "channel_id"), _arg(data, "recipients")
        if not isinstance(channel_id, str) or not isinstance(recipients, list):
            return _api_error(400, "channel_id and recipients are required", field_name="channel_id")
        try:
            status, body = await self.validate_recipients(channel_id, recipients)
        except SimulatorError as exc:
            return self._sim_error(exc)
        return JSONResponse({"status": status, "body": body})

    async def _http_issue_ott(self, request: Request) -> Response:
        data = await self._json_object(request)
        if isinstance(data, JSONResponse):
            return data
        brand_id, user_id = _arg(data, "brand_id"), _arg(data, "user_id")
        brand_id = self.brand_id if brand_id is None else brand_id
        user_id = 2001 if user_id is None else user_id
        if not isinstance(brand_id, int) or not isinstance(user_id, int):
            return _api_error(400, "brand_id and user_id must be integers", field_name="brand_id")
        token = self.issue_one_time_token(brand_id=brand_id, user_id=user_id)
        answer: dict[str, Any] = {"token": token, "brandId": brand_id, "userId": user_id}
        integration = self.integrations.get(str(_arg(data, "integration_id")))
        if integration is not None and integration.action_url:
            query = urlencode(
                {
                    "userId": user_id,
                    "brandId": brand_id,
                    "token": token,
                    "backUrl": f"{self.public_url}/_sim/channels",
                    "apiHost": self.public_url,
                }
            )
            separator = "&" if "?" in integration.action_url else "?"
            answer["actionUrl"] = f"{integration.action_url}{separator}{query}"
        return JSONResponse(answer, status_code=201)

    async def _http_expire_tokens(self) -> Response:
        self.expire_tokens()
        return Response(status_code=204)

    async def _http_calls(self) -> Response:
        return JSONResponse([c.to_dict() for c in self.calls])

    async def _http_channels(self) -> Response:
        return JSONResponse(list(self.channels.values()))

    async def _http_threads(self, request: Request) -> Response:
        channel_id = request.query_params.get("channel_id")
        threads = [t for t in self.threads.values() if channel_id is None or t.channel_id == channel_id]
        return JSONResponse([t.to_wire(with_messages=True) for t in threads])

    async def _http_attachment(self, attachment_id: str) -> Response:
        self.attachment_downloads += 1
        found = self.attachments.get(unquote(attachment_id))
        if found is None or self._clock() >= found[2]:
            return _api_error(404, "Attachment not found or expired", code="NotFound")
        return Response(content=found[0], media_type=found[1])
