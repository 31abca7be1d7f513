"""FastAPI dependencies: the runtime, a request-owned session, and the two kinds of caller auth."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, TypeVar

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import session_scope
from app.errors import ApiError
from app.models import ApiKey, Integration
from app.runtime import Runtime
from app.services import idempotency
from app.services.api_keys import Role, authenticate_api_key
from app.services.idempotency import IdempotentRequest

M = TypeVar("M", bound=BaseModel)


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_session(runtime: RuntimeDep) -> AsyncIterator[AsyncSession]:
    """The request owns the transaction: committed when the endpoint returns, before the response."""
    async with session_scope(runtime.sessions) as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def require_role(role: Role) -> Callable[[Request, Runtime], AsyncIterator[ApiKey]]:
    """Admin API auth: `Authorization: Bearer <key>` or `X-API-Key: <key>`, with at least `role`.
    A call that may change channels or integrations clears the process's config cache, before and after."""

    async def dependency(request: Request, runtime: RuntimeDep) -> AsyncIterator[ApiKey]:
        presented = request.headers.get("x-api-key") or _bearer(request)
        if not presented:
            raise ApiError(
                401,
                "api_key_missing",
                "Send an API key as 'Authorization: Bearer <key>' (create one with: byoc apikey create).",
                headers={"WWW-Authenticate": "Bearer"},
            )
        async with runtime.reads() as session:  # short: the endpoint's own transaction starts later
            key = await authenticate_api_key(session, presented)
        if key is None:
            raise ApiError(
                401,
                "api_key_invalid",
                "This API key is unknown or revoked.",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if Role[key.role] < role:
            raise ApiError(
                403, "forbidden", f"This API key has the role {key.role!r}; this call needs {role.name!r}."
            )
        changes = request.method not in ("GET", "HEAD")
        if changes:
            runtime.config.clear()
        yield key
        if changes:
            runtime.config.clear()

    return dependency


Viewer = Annotated[ApiKey, Depends(require_role(Role.viewer))]
Operator = Annotated[ApiKey, Depends(require_role(Role.operator))]
Admin = Annotated[ApiKey, Depends(require_role(Role.admin))]


async def box_integration(request: Request, runtime: RuntimeDep) -> Integration:
    """CXone's bearer token. A 401 with `WWW-Authenticate: Bearer` is what makes CXone fetch a new token."""
    token = _bearer(request)
    if token is None:
        raise ApiError(
            401,
            "token_missing",
            "A bearer token from the box token endpoint is required.",
            headers={"WWW-Authenticate": 'Bearer realm="byoc-box"'},
        )
    integration = await runtime.config.integration_for_bearer(token)
    if integration is None:
        raise ApiError(
            401,
            "invalid_token",
            "The bearer token is unknown or expired.",
            headers={"WWW-Authenticate": 'Bearer realm="byoc-box", error="invalid_token"'},
        )
    return integration


BoxIntegration = Annotated[Integration, Depends(box_integration)]


def box_body(model: type[M]) -> Callable[..., Awaitable[M]]:
    """Parse the body only after the bearer is checked, so an unauthenticated call always gets 401."""

    async def dependency(request: Request, _: BoxIntegration) -> M:
        raw = await request.body()
        try:
            return model.model_validate_json(raw or b"null")
        except ValidationError as exc:
            errors = [{**err, "loc": ("body", *err["loc"])} for err in exc.errors(include_url=False)]
            raise RequestValidationError(errors) from None

    return dependency


async def idempotent_request(request: Request, session: SessionDep, runtime: RuntimeDep) -> IdempotentRequest:
    """Admin POSTs honour `Idempotency-Key` (Stripe's semantics); see app/services/idempotency.py."""
    body = await request.body()
    return await idempotency.begin(
        session,
        key=request.headers.get("idempotency-key"),
        fingerprint=idempotency.request_hash(request.method, request.url.path, body),
        credential_box=runtime.credential_box,
    )


Idempotent = Annotated[IdempotentRequest, Depends(idempotent_request)]
