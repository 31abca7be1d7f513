"""BYOC integrations: the record an admin creates in CXone, and the credentials on both sides of it."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.errors import ApiError, RawJSONError, not_found
from app.models import BoxToken, Integration
from app.models.base import utcnow
from app.schemas.admin import IntegrationCreate, IntegrationUpdate
from app.security import CredentialBox, generate_secret, hash_secret, secret_matches


@dataclass(frozen=True)
class BoxUrls:
    """The URLs CXone needs, derived from our public URL so they are never stored stale."""

    box: str
    authorization: str
    action: str
    reconnect: str
    remove: str


def box_urls(settings: Settings) -> BoxUrls:
    base = settings.public_url + "/integration"
    return BoxUrls(
        box=settings.box_url,
        authorization=settings.box_url + "/1.0/token",
        action=base + "/action",
        reconnect=base + "/reconnect",
        remove=base + "/remove",
    )


def cxone_form(integration: Integration, settings: Settings, client_secret: str | None) -> dict[str, str]:
    """The "Add BYOC" form, keyed by CXone's own labels, in the order the form shows them."""
    urls = box_urls(settings)
    return {
        "Name": integration.name,
        "Integration Box URL": urls.box,
        "Authorization URL": urls.authorization,
        "Client ID": integration.box_client_id,
        "Client Secret": client_secret
        if client_secret is not None
        else "(shown once, when created or rotated)",
        "Action URL": urls.action,
        "Reconnect URL": urls.reconnect,
        "Remove URL": urls.remove,
    }


async def create_integration(
    session: AsyncSession, data: IntegrationCreate, *, settings: Settings, credential_box: CredentialBox
) -> tuple[Integration, str]:
    client_secret = generate_secret(32)
    integration = Integration(
        name=data.name,
        cxone_integration_id=data.cxone_integration_id,
        cxone_issuer_url=data.cxone_issuer_url or settings.cxone_issuer_url,
        cxone_api_host=data.cxone_api_host,
        cxone_auth_kind=data.cxone.kind,
        cxone_credentials_encrypted=credential_box.seal(data.cxone.to_stored()),
        box_client_id=f"byoc-{secrets.token_hex(12)}",
        box_client_secret_hash=hash_secret(client_secret),
    )
    session.add(integration)
    await _flush_unique(session, data.cxone_integration_id)
    return integration, client_secret


async def update_integration(
    session: AsyncSession, integration_id: str, data: IntegrationUpdate, *, credential_box: CredentialBox
) -> Integration:
    integration = await get_integration(session, integration_id)
    fields = data.model_fields_set
    if "name" in fields and data.name is not None:
        integration.name = data.name
    if "cxone_integration_id" in fields:
        integration.cxone_integration_id = data.cxone_integration_id
    if "cxone_api_host" in fields:
        integration.cxone_api_host = data.cxone_api_host
    if "cxone_issuer_url" in fields and data.cxone_issuer_url is not None:
        integration.cxone_issuer_url = data.cxone_issuer_url
    if data.cxone is not None:
        integration.cxone_auth_kind = data.cxone.kind
        integration.cxone_credentials_encrypted = credential_box.seal(data.cxone.to_stored())
    integration.updated_at = utcnow()
    await _flush_unique(session, integration.cxone_integration_id)
    return integration


async def rotate_box_secret(session: AsyncSession, integration_id: str) -> tuple[Integration, str]:
    """New client secret; tokens issued with the old one stop working at once."""
    integration = await get_integration(session, integration_id)
    client_secret = generate_secret(32)
    integration.box_client_secret_hash = hash_secret(client_secret)
    integration.updated_at = utcnow()
    await session.execute(delete(BoxToken).where(BoxToken.integration_id == integration.id))
    await session.flush()
    return integration, client_secret


async def _flush_unique(session: AsyncSession, cxone_integration_id: str | None) -> None:
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError:
        raise ApiError(
            409,
            "cxone_integration_id_taken",
            f"Another integration already has the CXone Integration ID {cxone_integration_id!r}.",
        ) from None


async def get_integration(session: AsyncSession, integration_id: str) -> Integration:
    integration = await session.get(Integration, integration_id)
    if integration is None:
        raise not_found("integration", integration_id)
    return integration


async def list_integrations(session: AsyncSession) -> list[Integration]:
    return list(await session.scalars(select(Integration).order_by(Integration.created_at)))


# --- the box token endpoint (OAuth2 client credentials, RFC 6749 §4.4) -------------------------


def oauth_error(status_code: int, error: str, description: str) -> RawJSONError:
    headers = {"Cache-Control": "no-store", "Pragma": "no-cache"}
    if status_code == 401:
        headers["WWW-Authenticate"] = 'Basic realm="byoc-box"'
    return RawJSONError(status_code, {"error": error, "error_description": description}, headers)


async def issue_box_token(
    session: AsyncSession,
    *,
    grant_type: str | None,
    client_id: str | None,
    client_secret: str | None,
    ttl: int,
) -> tuple[str, int]:
    if not grant_type:
        raise oauth_error(400, "invalid_request", "grant_type is required")
    if grant_type != "client_credentials":
        raise oauth_error(400, "unsupported_grant_type", "only client_credentials is supported")
    if not client_id or not client_secret:
        raise oauth_error(401, "invalid_client", "client_id and client_secret are required")
    integration = await session.scalar(select(Integration).where(Integration.box_client_id == client_id))
    # Compare against a dummy hash when the client is unknown, so timing does not reveal which ids exist.
    stored_hash = integration.box_client_secret_hash if integration else hash_secret(secrets.token_hex(16))
    if not secret_matches(client_secret, stored_hash) or integration is None:
        raise oauth_error(401, "invalid_client", "unknown client or wrong secret")
    now = utcnow()
    await session.execute(
        delete(BoxToken).where(BoxToken.integration_id == integration.id, BoxToken.expires_at < now)
    )
    token = generate_secret(32)
    session.add(
        BoxToken(
            token_hash=hash_secret(token),
            integration_id=integration.id,
            expires_at=now + timedelta(seconds=ttl),
        )
    )
    await session.flush()
    return token, ttl


async def prune_box_tokens(session: AsyncSession) -> None:
    await session.execute(delete(BoxToken).where(BoxToken.expires_at < utcnow()))
